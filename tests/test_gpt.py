"""Rung 7, `gpt`: RMSNorm, RoPE, SwiGLU, no biases, tying, zero-init outputs, QK-norm, presets."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.models.gpt import GPT, GPTConfig, swiglu_hidden
from zoo.nn import RMSNorm, apply_rope, rope_cache, sdpa


def tiny(**kw) -> GPT:
    cfg = dict(vocab_size=13, block_size=16, n_layer=2, n_head=4, n_embd=32)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg)).eval()


def randomise(model: nn.Module) -> nn.Module:
    """Leave the zero-initialised output projections behind so every path carries signal."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3) if p.dim() >= 2 else p.uniform_(0.5, 1.5)
    return model


def test_rmsnorm_is_the_formula():
    torch.manual_seed(0)
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    x = torch.randn(3, 5, 8) * 4 + 1  # a non-zero mean: RMSNorm must not re-centre it
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), want)


def test_rope_scores_depend_only_on_the_offset():
    """⟨R(m)q, R(n)k⟩ is the same for (m, n) and (m + s, n + s), and rotations keep lengths."""
    torch.manual_seed(0)
    d, T = 16, 40
    cos, sin = rope_cache(T, d)
    q, k = torch.randn(d), torch.randn(d)
    at = lambda x, pos: apply_rope(x.expand(T, d), cos, sin)[pos]  # noqa: E731  x placed at position pos
    for m, n in [(3, 1), (10, 10), (7, 0)]:
        base = at(q, m) @ at(k, n)
        for s in (1, 5, 29):
            assert (at(q, m + s) @ at(k, n + s)).item() == pytest.approx(base.item(), abs=1e-4)
    assert not math.isclose((at(q, 5) @ at(k, 0)).item(), (at(q, 6) @ at(k, 0)).item(), abs_tol=1e-3)
    torch.testing.assert_close(at(q, 17).norm(), q.norm())


def test_rope_is_roformers_complex_rotation():
    """Pair (x_i, x_{i+d/2}) as the complex number x_i + i·x_{i+d/2}, multiplied by e^{i·pos·θ_i},
    θ_i = 10000^(−2i/d) (Su et al. 2021, eq. 34 up to the pair layout)."""
    torch.manual_seed(0)
    T, d = 9, 8
    x = torch.randn(T, d)
    cos, sin = rope_cache(T, d)
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.complex(x[:, : d // 2].double(), x[:, d // 2 :].double()) * torch.polar(
        torch.ones(T, d // 2, dtype=torch.float64), torch.arange(T, dtype=torch.float64)[:, None] * theta)
    torch.testing.assert_close(apply_rope(x, cos, sin), torch.cat([z.real, z.imag], -1).float(), rtol=1e-5, atol=1e-5)


def test_attention_is_causal_softmax_over_rotated_queries_and_keys():
    """The SDPA path equals attention written out: RoPE on q and k (not v), causal mask, 1/√d scale."""
    model = randomise(tiny())
    attn, h, d = model.blocks[0].attn, 4, 8
    B, T, C = 2, 11, 32
    x = torch.randn(B, T, C)
    cos, sin = rope_cache(T, d)
    q, k, v = (x @ attn.qkv.weight.t()).split(C, -1)
    q, k, v = (t.view(B, T, h, d).transpose(1, 2) for t in (q, k, v))
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    want = (F.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, C) @ attn.proj.weight.t()
    torch.testing.assert_close(attn(x, cos, sin), want, rtol=1e-4, atol=1e-4)


def test_sdpa_runs_attention_in_fp32_under_cpu_bf16_autocast():
    """Under CPU bf16 autocast zoo.nn.sdpa is fp32 SDPA on the same inputs (autocast alone would compute it in bf16,
    whose CPU kernel was ~2.5x slower); without autocast it is SDPA itself. Gradients reach all three inputs."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 8, requires_grad=True) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(sdpa(q, k, v, is_causal=True), want)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        got = sdpa(q, k, v, is_causal=True)
    assert bf16.dtype == torch.bfloat16 and got.dtype == torch.float32
    assert torch.equal(got, want)  # exactly the fp32 computation ...
    assert (bf16.float() - want).abs().max() > 1e-4  # ... which bf16 is not
    got.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


def test_swiglu_mlp_width_and_gate():
    assert swiglu_hidden(128) == 352 and swiglu_hidden(384) == 1024  # 8/3 · C rounded up to 32
    model = randomise(tiny(mlp_hidden=40))
    mlp = model.blocks[0].mlp
    assert mlp.gate_up.weight.shape == (80, 32) and mlp.down.weight.shape == (32, 40)
    x = torch.randn(3, 32)
    W_g, W_u = mlp.gate_up.weight[:40], mlp.gate_up.weight[40:]
    want = ((x @ W_g.t()) * torch.sigmoid(x @ W_g.t()) * (x @ W_u.t())) @ mlp.down.weight.t()
    torch.testing.assert_close(mlp(x), want, rtol=1e-5, atol=1e-5)
    assert tiny().blocks[0].mlp.down.weight.shape == (32, swiglu_hidden(32))


def test_no_biases_and_rmsnorm_everywhere():
    model = tiny(qk_norm=True)
    assert not [n for n, _ in model.named_parameters() if "bias" in n]
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())


def test_embeddings_tied_by_default_untied_on_request():
    tied, untied = tiny(), tiny(tie_embeddings=False)
    assert tied.lm_head.weight is tied.wte.weight
    assert untied.lm_head.weight is not untied.wte.weight
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(untied) - count(tied) == 13 * 32
    assert "lm_head.weight" in untied.state_dict()


def test_zero_initialised_outputs_make_every_block_the_identity_at_init():
    """modded-nanogpt's init: W_o and W_2 start at zero, so logits = RMSNorm(E[idx]) Eᵀ at step 0."""
    model = tiny()
    for block in model.blocks:
        assert block.attn.proj.weight.abs().sum() == 0 and block.mlp.down.weight.abs().sum() == 0
    idx = torch.randint(0, 13, (2, 10))
    torch.testing.assert_close(model(idx), model.norm_f(model.wte(idx)) @ model.wte.weight.t())


def test_qk_norm_makes_attention_blind_to_query_and_key_scale():
    """With QK-norm, scaling W_q and W_k changes nothing; without it, it sharpens attention."""
    x = torch.randn(2, 9, 32)
    cos, sin = rope_cache(9, 8)
    for qk_norm in (True, False):
        attn = randomise(tiny(qk_norm=qk_norm)).blocks[0].attn
        before = attn(x, cos, sin)
        with torch.no_grad():
            attn.qkv.weight[:64] *= 5.0  # the W_q and W_k rows
        same = torch.allclose(attn(x, cos, sin), before, rtol=1e-4, atol=1e-4)
        assert same == qk_norm


def test_causal_and_any_length_up_to_block_size():
    model = randomise(tiny())
    idx = torch.randint(0, 13, (2, 16))
    logits = model(idx)
    assert logits.shape == (2, 16, 13)
    changed = idx.clone()
    changed[:, 9:] = (changed[:, 9:] + 1) % 13
    torch.testing.assert_close(model(changed)[:, :9], logits[:, :9])
    assert not torch.allclose(model(changed)[:, 9:], logits[:, 9:])
    torch.testing.assert_close(model(idx[:, :4]), logits[:, :4], rtol=1e-5, atol=1e-5)
    assert model.context_length == 16
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_compile_option_keeps_parameter_names():
    assert tiny(compile=True).state_dict().keys() == tiny().state_dict().keys()


def test_presets():
    p = GPT.presets
    for name in ("quick", "book"):
        assert p[name]["optim"]["optimizer"] == "adamw" and p[name]["optim"]["betas"][1] == 0.95
        assert p[name]["optim"]["schedule"] == "cosine"
    cpu = p["nanogpt-cpu"]
    assert (cpu["model"]["n_layer"], cpu["model"]["n_head"], cpu["model"]["n_embd"], cpu["model"]["dropout"]) == (4, 4, 128, 0.0)
    assert (cpu["data"]["block_size"], cpu["data"]["batch_size"], cpu["trainer"]["max_steps"]) == (64, 12, 2000)
    gpu = p["nanogpt-gpu"]
    assert (gpu["model"]["n_layer"], gpu["model"]["n_head"], gpu["model"]["n_embd"], gpu["model"]["dropout"]) == (6, 6, 384, 0.2)
    assert (gpu["data"]["block_size"], gpu["data"]["batch_size"], gpu["trainer"]["max_steps"]) == (256, 64, 5000)
    assert gpu["trainer"]["accelerator"] == "gpu" and gpu["trainer"]["precision"] == "bf16-mixed"
    assert cpu["optim"]["lr"] == gpu["optim"]["lr"] == 1e-3


@pytest.mark.parametrize("bad", [dict(n_embd=30, n_head=4), dict(n_embd=36, n_head=12), dict(dropout=-0.1),
                                 dict(mlp_hidden=-1), dict(n_layer=-1), dict(rope_base=1.0)])
def test_impossible_hyperparameters_raise_valueerror(bad):
    with pytest.raises(ValueError):
        tiny(**bad)


def test_a_zero_layer_model_reads_the_embedding_straight_out():
    """n_layer 0: logits at t are a function of idx[t] alone, lm_head(RMSNorm(E[idx_t])) — a bigram table."""
    for tie in (True, False):
        model = randomise(tiny(n_layer=0, tie_embeddings=tie))
        idx = torch.randint(13, (2, 16))
        logits = model(idx)  # (2, 16, 13)
        assert torch.equal(logits, model.lm_head(model.norm_f(model.wte(idx))))
        table = model(torch.arange(13)[:, None])[:, 0]  # (13, 13): row a = the logits after character a
        assert torch.allclose(logits, table[idx], atol=1e-6)


def test_a_tied_zero_layer_model_is_symmetric_up_to_each_rows_scale():
    """Tied, logit(a -> b) = Σ_i g_i E_ai E_bi / rms(E_a): scaled by rms(E_a) the table is symmetric, so a tied
    zero-layer model cannot hold a bigram table (which is not); untied, nothing forces it."""
    tied, untied = randomise(tiny(n_layer=0, tie_embeddings=True)), randomise(tiny(n_layer=0, tie_embeddings=False))
    for model, symmetric in ((tied, True), (untied, False)):
        with torch.no_grad():
            E = model.wte.weight  # (13, C)
            table = model(torch.arange(13)[:, None])[:, 0]  # (13, 13)
            scaled = table * E.pow(2).mean(-1, keepdim=True).add(model.norm_f.eps).sqrt()  # row a times rms(E_a)
        assert torch.allclose(scaled, scaled.T, atol=1e-5) == symmetric


# ------------------------------------------------------------------ ablation switches (chapter 7's recipe apart)
ABLATIONS = [dict(norm="layernorm"), dict(prenorm=False), dict(positions="sinusoidal"), dict(mlp="relu"),
             dict(bias=True), dict(zero_init=False)]


@pytest.mark.parametrize("switch", ABLATIONS, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_every_ablation_is_an_exactly_causal_model(switch):
    model = tiny(**switch)
    idx = torch.randint(0, 13, (2, 16), generator=torch.Generator().manual_seed(1))
    logits = model(idx)
    changed = idx.clone()
    changed[:, 9:] = (changed[:, 9:] + 1) % 13
    assert logits.shape == (2, 16, 13)
    assert torch.equal(model(changed)[:, :9], logits[:, :9])


def test_post_norm_block_normalises_the_stream_after_each_add():
    model = tiny(prenorm=False, zero_init=False)
    block, x = model.blocks[0], torch.randn(2, 16, 32)
    cos, sin = model.rope_cos[:16], model.rope_sin[:16]
    h = block.norm_1(x + block.attn(x, cos, sin))
    assert torch.allclose(block(x, cos, sin), block.norm_2(h + block.mlp(h)), atol=1e-6)
    assert isinstance(model.norm_f, nn.Identity)  # the stream leaves the last block normalised already


def test_sinusoidal_ablation_adds_vaswanis_positions_at_the_input():
    from zoo.nn import sinusoidal_positions

    model = tiny(positions="sinusoidal")  # zero-init: every block is the identity, so logits = norm_f(x_0) Eᵀ
    assert not hasattr(model, "rope_cos")
    idx = torch.randint(0, 13, (1, 16), generator=torch.Generator().manual_seed(2))
    x0 = model.wte(idx) * math.sqrt(32) + sinusoidal_positions(16, 32)
    assert torch.allclose(model(idx), model.norm_f(x0) @ model.wte.weight.T, atol=1e-5)


def test_relu_mlp_and_layernorm_ablations_are_vaswanis_layers():
    model = tiny(mlp="relu", norm="layernorm", bias=True)
    mlp, x = model.blocks[0].mlp, torch.randn(3, 32)
    assert mlp.up.weight.shape == (4 * 32, 32)
    assert torch.allclose(mlp(x), F.relu(x @ mlp.up.weight.T + mlp.up.bias) @ mlp.down.weight.T + mlp.down.bias)
    norm = model.blocks[0].norm_1
    assert isinstance(norm, nn.LayerNorm) and norm.bias is not None


def test_bias_and_zero_init_switches():
    biased = tiny(bias=True)
    linears = [m for m in biased.modules() if isinstance(m, nn.Linear) and m is not biased.lm_head]
    assert linears and all(m.bias is not None and torch.all(m.bias == 0) for m in linears)  # zeros, like nanoGPT
    assert all(m.bias is None for m in tiny().modules() if isinstance(m, nn.Linear))
    assert torch.all(tiny().blocks[0].attn.proj.weight == 0)
    assert tiny(zero_init=False).blocks[0].attn.proj.weight.abs().sum() > 0


@pytest.mark.parametrize("bad", [dict(norm="batchnorm"), dict(positions="learned"), dict(mlp="gelu")])
def test_unknown_ablation_values_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        tiny(**bad)
