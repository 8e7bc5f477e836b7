"""memory-gpt: what makes it a Memorizing Transformer on the gpt rung.

Pinned here: with no memory it is gpt (same weights, same logits, bit for bit); its logits equal a
direct, whole-sequence implementation of its equations (sliding window in every block, top-k attention
over the M positions before the window in one block, gated); feeding a stream in pieces of any size gives
the same logits; a planted key is retrieved; no gradient reaches a stored key or value; and its config's
bad values get one line and exit code 2.
"""

import math

import pytest
import torch
from conftest import cli, one_line
from torch.nn import functional as F

import zoo
from zoo.nn import apply_rope, rope_cache

V, W = 11, 16
CONFIG = dict(vocab_size=V, block_size=W, n_layer=3, n_head=2, n_embd=16, memory_size=40, memory_topk=4)


def jittered(**overrides):
    """A memory-gpt whose zero-initialised projections and gates are not zero (so every path is live)."""
    torch.manual_seed(0)
    model = zoo.build("memory-gpt", **{**CONFIG, **overrides}).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def tokens(n, seed=0, b=2):
    return torch.randint(0, V, (b, n), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def reference_logits(model, idx):
    """The docstring's equations over the whole sequence at once, with absolute positions: a query at t
    sees keys t−W+1 .. t in every block (RoPE), and in the memory block also the top-k by q·k of the
    positions t−W−M+1 .. t−W (un-rotated), mixed by σ(b_h)."""
    cfg = model.config
    B, N = idx.shape
    h, d = cfg.n_head, cfg.n_embd // cfg.n_head
    cos, sin = rope_cache(N, d, cfg.rope_base)
    offset = torch.arange(N)[:, None] - torch.arange(N)[None, :]  # (N, N): t − s
    local_mask = (offset >= 0) & (offset < W)
    memory_mask = (offset >= W) & (offset < W + cfg.memory_size)
    x = model.wte(idx)
    for i, block in enumerate(model.blocks):
        attn = block.attn
        q, k, v = attn.qkv(block.norm_1(x)).view(B, N, 3, h, d).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, h, N, d)
        scores = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2) / math.sqrt(d)
        local = scores.masked_fill(~local_mask, float("-inf")).softmax(-1) @ v  # (B, h, N, d)
        y = local
        if i == model.memory_index and cfg.memory_size > 0:
            raw = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, h, N, N): content only
            g = torch.sigmoid(attn.gate)
            y = local.clone()
            for t in range(N):
                candidates = memory_mask[t].nonzero()[:, 0]
                if len(candidates) == 0:
                    continue
                top, where = raw[:, :, t, candidates].topk(min(cfg.memory_topk, len(candidates)), dim=-1)  # (B, h, k)
                chosen = v[:, :, candidates][torch.arange(B)[:, None, None], torch.arange(h)[None, :, None], where]  # (B, h, k, d)
                from_memory = (top.softmax(-1)[..., None] * chosen).sum(-2)  # (B, h, d)
                y[:, :, t] = g[:, None] * from_memory + (1 - g[:, None]) * local[:, :, t]
        x = x + attn.proj(y.transpose(1, 2).reshape(B, N, cfg.n_embd))
        x = x + block.mlp(block.norm_2(x))
    return model.lm_head(model.norm_f(x))


def stream(model, idx, sizes):
    state, out, lo = None, [], 0
    for n in sizes:
        logits, state = model(idx[:, lo:lo + n], state)
        out.append(logits)
        lo += n
    assert lo == idx.shape[1]
    return torch.cat(out, dim=1), state


@torch.no_grad()
def test_without_memory_it_is_gpt_on_the_same_weights():
    model, gpt = jittered(), zoo.build("gpt", vocab_size=V, block_size=W, n_layer=3, n_head=2, n_embd=16).eval()
    gpt.load_state_dict({k: v for k, v in model.state_dict().items() if not k.endswith("attn.gate")})
    no_memory = jittered(memory_size=0)
    no_memory.load_state_dict(model.state_dict())
    idx = tokens(W)
    assert torch.equal(model(idx)[0], gpt(idx)), "one window from an empty state: the memory is empty, so gpt"
    assert torch.equal(no_memory(idx)[0], gpt(idx))
    # beyond one window, without memory it is a sliding-window gpt: the reference with M = 0
    long = tokens(70, seed=1)
    assert torch.allclose(no_memory(long)[0], reference_logits(no_memory, long), atol=1e-5)


@torch.no_grad()
def test_logits_equal_the_equations_over_a_long_stream():
    model, idx = jittered(), tokens(120, seed=2)  # 120 > W + M: the memory fills and its oldest entries leave
    logits, _ = stream(model, idx, [W] * 7 + [8])
    reference = reference_logits(model, idx)
    assert torch.allclose(logits, reference, atol=1e-5), (logits - reference).abs().max()
    # and the test can fail: a memory that forgets nothing (M large) computes something else
    assert not torch.allclose(stream(jittered(memory_size=400), idx, [W] * 7 + [8])[0], reference, atol=1e-3)


@torch.no_grad()
def test_pieces_of_any_size_give_the_same_logits():
    model, idx = jittered(), tokens(100, seed=3)
    whole, _ = model(idx)
    for sizes in ([1] * 100, [7, 13, 16, 30, 34], [50, 50], [3, 97]):
        assert torch.allclose(stream(model, idx, sizes)[0], whole, atol=1e-5), sizes


@torch.no_grad()
def test_memory_holds_the_newest_m_positions_beyond_the_window():
    model = jittered()
    _, (caches, memory) = model(tokens(100, seed=4))
    assert all(k.shape[2] == W - 1 for k, _ in caches), "each block keeps the last W−1 keys for the next chunk"
    assert memory[0].shape == (2, 2, CONFIG["memory_size"], 8) and memory[1].shape == memory[0].shape
    _, (_, short) = model(tokens(20, seed=4))
    assert short[0].shape[2] == 20 - (W - 1), "only what has left the window is in memory"


@torch.no_grad()
def test_a_planted_key_is_retrieved():
    """A memory entry whose key matches the query is the one attended to: with k = 1 and the gate open,
    the memory block's output is the planted value."""
    from zoo.models.memory_gpt import MemoryAttention

    model = jittered(memory_topk=1)
    attn = model.blocks[model.memory_index].attn
    assert isinstance(attn, MemoryAttention)
    x = torch.randn(1, 1, 16)  # one query
    q, _, _ = attn.project(x)  # (1, h, 1, d)
    memory_k = torch.randn(1, 2, 30, 8)
    memory_v = torch.randn(1, 2, 30, 8)
    memory_k[:, :, 17] = 10 * q[:, :, 0]  # the planted key: by far the largest q·k
    cache = (torch.randn(1, 2, W - 1, 8), torch.randn(1, 2, W - 1, 8))  # a full window before the query, as in a stream
    with torch.no_grad():
        attn.gate.fill_(30.0)  # σ(30) = 1 to float precision: the memory alone
        attn.proj.weight.copy_(torch.eye(16))
    out, _, _ = attn(x, cache, (memory_k, memory_v), model.rope_cos, model.rope_sin)
    assert torch.allclose(out[0, 0], memory_v[0, :, 17].reshape(16), atol=1e-5)
    memory_k[:, :, 17] = -10 * q[:, :, 0]  # the same entry, now the farthest: not retrieved
    out, _, _ = attn(x, cache, (memory_k, memory_v), model.rope_cos, model.rope_sin)
    assert not torch.allclose(out[0, 0], memory_v[0, :, 17].reshape(16), atol=1e-2)


def test_no_gradient_reaches_a_stored_key_or_value():
    """Tokens seen only in the first chunk influence the second only through what was stored; with the
    stored keys and values cut from the graph, the second chunk's loss sends them no gradient."""
    model = jittered(tie_embeddings=False).train()
    first = torch.randint(0, 5, (2, W), generator=torch.Generator().manual_seed(5))  # tokens 0..4
    second = torch.randint(5, V, (2, W), generator=torch.Generator().manual_seed(6))  # tokens 5..10
    logits, (caches, memory) = model(torch.cat([first, second], dim=1))
    assert not any(t.requires_grad for t in (*memory, *[x for c in caches for x in c])), "stored tensors carry a graph"
    F.cross_entropy(logits[:, W:].flatten(0, 1), torch.randint(0, V, (2 * W,))).backward()
    assert torch.count_nonzero(model.wte.weight.grad[:5]) == 0, "a gradient reached the first chunk's tokens"
    # the check can fail: the first chunk's own loss does reach them
    model.zero_grad()
    logits, _ = model(torch.cat([first, second], dim=1))
    F.cross_entropy(logits[:, :W].flatten(0, 1), torch.randint(0, V, (2 * W,))).backward()
    assert torch.count_nonzero(model.wte.weight.grad[:5]) > 0


@torch.no_grad()
def test_causal_over_a_long_stream():
    model, idx = jittered(), tokens(90, seed=7)
    base, _ = stream(model, idx, [W] * 5 + [10])
    for p in (5, 31, 47, 80):
        changed = idx.clone()
        changed[:, p:] = (changed[:, p:] + 1) % V
        assert torch.equal(stream(model, changed, [W] * 5 + [10])[0][:, :p], base[:, :p]), p


@pytest.mark.parametrize("flag, value, words", [
    ("memory_size", "-1", "memory_size"), ("memory_topk", "0", "memory_topk"), ("memory_layer", "4", "memory_layer"),
    ("n_head", "3", "n_embd"),
])
def test_bad_memory_settings_get_one_line(tmp_path, capsys, flag, value, words):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "memory-gpt", "--preset", "quick", "--data", "copy:8", f"--model.{flag}", value,
                       "--trainer.max_steps", "1", "--out", out)
    one_line(code, err, words)
    assert not out.exists()


def test_the_gate_starts_where_the_config_says():
    from zoo.models.memory_gpt import MemoryAttention

    for b in (0.0, -4.0):
        model = zoo.build("memory-gpt", **{**CONFIG, "memory_gate": b})
        attn = model.blocks[model.memory_index].attn
        assert isinstance(attn, MemoryAttention) and torch.equal(attn.gate, torch.full((2,), b))
