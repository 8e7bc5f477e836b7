"""Rung 6, `vaswani`: the pieces that make it Vaswani et al. 2017 and not some other transformer."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.models.vaswani import Vaswani, VaswaniConfig
from zoo.nn import MultiHeadAttention, causal_mask, sinusoidal_positions
from zoo.runs import make_config


def tiny(**kw) -> Vaswani:
    cfg = dict(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    cfg.update(kw)
    torch.manual_seed(0)
    return Vaswani(VaswaniConfig(**cfg)).eval()


def test_written_out_attention_equals_torch_multiheadattention():
    """zoo.nn.MultiHeadAttention with torch's weights gives torch's outputs, causal and not."""
    torch.manual_seed(0)
    B, T, C, h = 3, 7, 32, 4
    ours = MultiHeadAttention(C, h, bias=True).eval()
    for p in ours.parameters():  # biases default to zero in torch; randomise so they are compared too
        nn.init.normal_(p, std=0.3)
    ref = nn.MultiheadAttention(C, h, bias=True, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(B, T, C)
    y = torch.randn(B, T, C)
    with torch.no_grad():
        want_causal, _ = ref(x, x, x, attn_mask=~causal_mask(T), need_weights=False)  # torch: True = masked out
        want_cross, _ = ref(x, y, y, need_weights=False)
        got_causal = ours(x, causal=True)
        got_cross = ours(x, y, causal=False)
    torch.testing.assert_close(got_causal, want_causal, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_cross, want_cross, rtol=1e-5, atol=1e-5)
    # and the fused kernel agrees on the per-head computation too
    q = ours.q_proj(x).view(B, T, h, C // h).transpose(1, 2)
    k = ours.k_proj(x).view(B, T, h, C // h).transpose(1, 2)
    v = ours.v_proj(x).view(B, T, h, C // h).transpose(1, 2)
    sdpa = ours.out_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C))
    torch.testing.assert_close(got_causal, sdpa, rtol=1e-5, atol=1e-5)


def test_sinusoidal_positions_follow_the_paper_formula():
    T, d = 50, 16
    pe = sinusoidal_positions(T, d)
    assert pe.shape == (T, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_block_input_is_scaled_embedding_plus_positions():
    """x_0 = √d_model · E[idx] + PE (§3.4–3.5), fed to the first block."""
    model = tiny()
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    idx = torch.randint(0, 11, (2, 9))
    model(idx)
    want = model.wte(idx) * math.sqrt(32) + sinusoidal_positions(9, 32)
    torch.testing.assert_close(seen["x"], want)


def test_embedding_and_output_projection_are_one_tied_matrix():
    model = tiny()
    idx = torch.randint(0, 11, (2, 9))
    captured = {}
    model.blocks[-1].register_forward_hook(lambda mod, args, out: captured.setdefault("h", out))
    logits = model(idx)
    torch.testing.assert_close(logits, captured["h"] @ model.wte.weight.t())
    # no separate output matrix: the only V×C parameter is the embedding
    vxc = [n for n, p in model.named_parameters() if p.shape == (11, 32)]
    assert vxc == ["wte.weight"]
    # and the parameter count is exactly the paper's architecture (with biases, two LayerNorms a block)
    C, d_ff, V, N = 32, 128, 11, 2
    per_block = 4 * (C * C + C) + (C * d_ff + d_ff) + (d_ff * C + C) + 2 * 2 * C
    assert sum(p.numel() for p in model.parameters()) == V * C + N * per_block


def test_blocks_are_post_layernorm():
    """Post-LN: LayerNorm comes after each residual add, so every block's output is normalised
    (at initialisation the LayerNorm gain is 1 and bias 0: zero mean, unit variance per position).
    A pre-LN block would leave the residual stream un-normalised."""
    model = tiny()
    outs = []
    for block in model.blocks:
        block.register_forward_hook(lambda mod, args, out: outs.append(out))
    model(torch.randint(0, 11, (2, 9)))
    for out in outs:
        torch.testing.assert_close(out.mean(-1), torch.zeros(2, 9), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 9), atol=1e-3, rtol=0)


def test_ffn_is_relu_mlp_of_width_d_ff():
    model = tiny(d_ff=48)
    ffn = model.blocks[0].ffn
    assert [type(m) for m in ffn] == [nn.Linear, nn.ReLU, nn.Linear]
    assert ffn[0].weight.shape == (48, 32) and ffn[2].weight.shape == (32, 48)
    assert tiny().blocks[0].ffn[0].weight.shape == (128, 32)  # default 4 · d_model


def test_causal_and_any_length_up_to_block_size():
    model = tiny()
    idx = torch.randint(0, 11, (2, 16))
    logits = model(idx)
    assert logits.shape == (2, 16, 11)
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 11
    torch.testing.assert_close(model(changed)[:, :10], logits[:, :10])
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:])
    torch.testing.assert_close(model(idx[:, :5]), logits[:, :5], rtol=1e-5, atol=1e-5)  # shorter T
    assert model.context_length == 16
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_presets_use_the_papers_optimiser_and_schedule():
    for name, preset in Vaswani.presets.items():
        optim = preset["optim"]
        assert optim["optimizer"] == "adam" and optim["betas"] == [0.9, 0.98] and optim["eps"] == 1e-9, name
        assert optim["schedule"] == "inverse_sqrt" and optim["weight_decay"] == 0.0, name
        d_model = preset["model"]["n_embd"]
        lr = make_config("vaswani", name).optim.lr  # the preset leaves lr to the rung's rule (peak_lr)
        assert lr == pytest.approx(d_model**-0.5 * optim["warmup_steps"] ** -0.5), name
        assert optim.get("label_smoothing", 0.0) == 0.0, name


@pytest.mark.parametrize("bad", [dict(n_embd=30, n_head=4), dict(n_embd=9, n_head=3),
                                 dict(dropout=1.0), dict(d_ff=-1), dict(n_layer=0)])
def test_impossible_hyperparameters_raise_valueerror(bad):
    with pytest.raises(ValueError):
        tiny(**bad)
