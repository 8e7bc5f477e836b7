"""Attention maps are the weights the forward pass used: rows are distributions, causal, and equal to a
by-hand computation of the first layer; reading them changes nothing."""

import math

import pytest

import torch

from zoo.attention import attention_maps
from zoo.registry import build


def tiny(name):
    torch.manual_seed(0)
    return build(name, vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0).eval()


def test_maps_are_causal_distributions_one_per_layer():
    for name in ("vaswani", "set-transformer"):
        model = tiny(name)
        idx = torch.randint(0, 11, (3, 16), generator=torch.Generator().manual_seed(1))
        before = model(idx)
        maps = attention_maps(model, idx)
        assert len(maps) == 2 and all(m.shape == (3, 2, 16, 16) for m in maps), name
        for m in maps:
            assert torch.allclose(m.sum(-1), torch.ones(3, 2, 16), atol=1e-6)
            assert torch.all(m.triu(1) == 0)  # nothing from the future
        assert torch.equal(model(idx), before)  # the hooks are gone
        assert all(not m._forward_hooks for m in model.modules())


def test_first_layer_map_equals_the_formula():
    model = tiny("vaswani")
    idx = torch.randint(0, 11, (1, 16), generator=torch.Generator().manual_seed(2))
    x = model.wte(idx) * math.sqrt(16) + model.pe[:16]  # the first block's input
    attn = model.blocks[0].attn
    q = attn.q_proj(x).view(1, 16, 2, 8).transpose(1, 2)
    k = attn.k_proj(x).view(1, 16, 2, 8).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~torch.ones(16, 16, dtype=torch.bool).tril(), float("-inf"))
    assert torch.allclose(attention_maps(model, idx)[0], scores.softmax(-1), atol=1e-6)


def test_a_model_without_attention_is_a_clear_error():


    with pytest.raises(ValueError, match="no zoo.nn.MultiHeadAttention"):
        attention_maps(build("bigram", vocab_size=5), torch.zeros(1, 3, dtype=torch.long))


def test_map_summary_on_a_known_map():
    from zoo.attention import summarise_map

    T = 12
    diagonal = torch.eye(T)  # every row on itself: all weight is near, every key gets 1 / (T - T//2) from the later half
    s = summarise_map(diagonal, "abcdefghijkl", near=3, skip=8)
    assert s["near_share"] == 1.0 and s["top_key"]["weight"] == pytest.approx(1 / 6)
    uniform = torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]  # every row the average of its prefix
    s = summarise_map(uniform, "abcdefghijkl", near=3, skip=8)
    assert s["near_share"] == pytest.approx(sum(4 / (t + 1) for t in range(8, T)) / 4)
    assert s["top_key"]["position"] == 0 and s["top_key"]["char"] == "a"  # every later row reaches back to it
