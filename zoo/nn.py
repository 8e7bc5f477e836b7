"""Blocks shared by two or more rungs. Models import torch and this module only."""

import math

import torch
from torch import nn
from torch.nn import functional as F


def require_positive(config, *fields: str) -> None:
    """Every named size of a rung's config must be >= 1 (vocab_size included: a model built by hand
    gets no vocabulary from the data). A ValueError, which zoo reports in one line."""
    bad = [f"{name} = {getattr(config, name)}" for name in fields if getattr(config, name) < 1]
    if bad:
        raise ValueError(f"{', '.join(fields)} must all be >= 1, got {', '.join(bad)}")


def require_dropout(config) -> None:
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")


def check_transformer_sizes(config, min_layers: int = 1) -> None:
    """The size checks every attention rung's config shares (ValueError, which zoo reports in one line).
    ``min_layers=0`` admits a zero-layer model (embedding straight into the read-out)."""
    require_positive(config, "vocab_size", "block_size", "n_head", "n_embd")
    if config.n_layer < min_layers:
        raise ValueError(f"n_layer must be >= {min_layers}, got {config.n_layer}")
    if config.n_embd % config.n_head != 0:
        raise ValueError(f"n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head})")
    require_dropout(config)


# --8<-- [start:causal_mask]
def causal_mask(T: int, device=None) -> torch.Tensor:
    """Bool[T, T], True where query t may attend to key s (s <= t)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)
# --8<-- [end:causal_mask]


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
         dropout_p: float = 0.0, is_causal: bool = False) -> torch.Tensor:
    """F.scaled_dot_product_attention(q, k, v, ...), computed in fp32 on a CPU under autocast.

    bf16 autocast would hand SDPA bf16 inputs, and PyTorch's CPU flash-attention kernel is slow in bf16: at the
    book size (B 16, 4 heads of 32, T 128, one thread) one layer's forward and backward took 2.5x as long as
    in fp32 (benchmarks/results/attention_precision_cpu.json); torch.profiler put it at over half of a
    compiled bf16 gpt step. So there it runs in fp32 (the projections around it stay bf16) and returns fp32;
    anywhere else this is SDPA unchanged.
    """
    if q.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal)


# --8<-- [start:attention]
class MultiHeadAttention(nn.Module):
    """Multi-head attention, written out (Vaswani et al. 2017, §3.2).

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + M) V, with M = −∞ where a query may not look;
    MultiHead(X, Y) = Concat(head_1, …, head_h) W^O,  head_i = Attention(X W_i^Q, Y W_i^K, Y W_i^V).
    Queries come from X, keys and values from Y (Y = X is self-attention).
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head, self.d_k = n_head, n_embd // n_head
        self.q_proj = nn.Linear(n_embd, n_embd, bias=bias)  # the h matrices W_i^Q side by side
        self.k_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.v_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.out_proj = nn.Linear(n_embd, n_embd, bias=bias)  # W^O
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, causal: bool = True) -> torch.Tensor:
        y = x if y is None else y
        B, T, C = x.shape
        S = y.shape[1]
        weights = self.attn_dropout(self.attention_weights(x, y, causal))  # (B, h, T, S)
        v = self.v_proj(y).view(B, S, self.n_head, self.d_k).transpose(1, 2)  # (B, h, S, d_k)
        heads = weights @ v  # (B, h, T, d_k)
        return self.out_proj(heads.transpose(1, 2).reshape(B, T, C))  # (B, T, C)

    def attention_weights(self, x: torch.Tensor, y: torch.Tensor | None = None, causal: bool = True) -> torch.Tensor:
        """softmax(Q Kᵀ / √d_k + M) for every head: Float[B, h, T, S], each row a distribution over the keys."""
        y = x if y is None else y
        B, T, _ = x.shape
        S = y.shape[1]
        q = self.q_proj(x).view(B, T, self.n_head, self.d_k).transpose(1, 2)  # (B, h, T, d_k)
        k = self.k_proj(y).view(B, S, self.n_head, self.d_k).transpose(1, 2)  # (B, h, S, d_k)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # (B, h, T, S)
        if causal:
            scores = scores.masked_fill(~causal_mask(T, x.device)[:, :S], float("-inf"))
        return F.softmax(scores, dim=-1)  # (B, h, T, S)
# --8<-- [end:attention]


# ------------------------------------------------------------------------------- positions and norms
# --8<-- [start:positions]
def sinusoidal_positions(T: int, d_model: int) -> torch.Tensor:
    """Float[T, d_model]: Vaswani et al. 2017, §3.5, the fixed positional encoding

        PE[pos, 2i] = sin(pos / 10000^(2i/d_model)),   PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model)).

    Each pair of dimensions is a clock of its own frequency, so PE[pos + k] is a fixed rotation of
    PE[pos] for every k: relative offsets are linear functions of the encoding.
    """
    if d_model % 2 != 0:
        raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
    pos = torch.arange(T, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d_model/2,)
    angles = pos * inv_freq  # (T, d_model/2)
    pe = torch.empty(T, d_model, dtype=torch.float64)  # (T, d_model)
    pe[:, 0::2] = angles.sin()  # even dimensions: sine
    pe[:, 1::2] = angles.cos()  # odd dimensions: cosine
    return pe.float()
# --8<-- [end:positions]


# --8<-- [start:rmsnorm]
class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): LayerNorm without re-centring and without a bias,

        RMSNorm(x) = x / sqrt(mean_j x_j² + ε) ⊙ g,

    one learned gain g per channel. Cheaper than LayerNorm and, in Llama-style models, as good.
    Computed by ``F.rms_norm`` (one fused kernel where the platform has one); the formula above is
    what a test checks it against.
    """

    def __init__(self, n_embd: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))  # g, the per-channel gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # same shape as x
# --8<-- [end:rmsnorm]


# --8<-- [start:rope]
def rope_cache(T: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: Float[T, head_dim] tables for rotary position embeddings (Su et al. 2021, RoFormer).

    Dimension pair i of a head rotates by the angle pos·θ_i with θ_i = base^(−2i/head_dim) — the
    sinusoidal frequencies of Vaswani et al., now used to rotate queries and keys instead of being
    added to the input. Pairs are (i, i + head_dim/2) ("rotate-half", GPT-NeoX/Llama layout), a fixed
    permutation of RoFormer's adjacent pairs that leaves every q·k unchanged.
    """
    if head_dim % 2 != 0:
        raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (head_dim/2,)
    angles = torch.arange(T, dtype=torch.float64).unsqueeze(1) * inv_freq  # (T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, head_dim): pair i and i + head_dim/2 share an angle
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x: Float[..., T, head_dim] by position, with cos, sin: Float[T, head_dim] from ``rope_cache``.

    For each pair (a, b) = (x_i, x_{i+d/2}):  (a, b) -> (a cos φ − b sin φ,  b cos φ + a sin φ),  φ = pos·θ_i.
    Rotations compose, so  ⟨R(m)q, R(n)k⟩ = ⟨q, R(n − m)k⟩: attention scores see only the offset n − m.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (..., T, head_dim/2) each
    rotated = torch.cat([-x2, x1], dim=-1)  # (..., T, head_dim): the 90° turn of every pair
    return x * cos + rotated * sin  # (..., T, head_dim)
# --8<-- [end:rope]


# --8<-- [start:swiglu_hidden]
def swiglu_hidden(n_embd: int, multiple_of: int = 32) -> int:
    """8/3 · n_embd, rounded up to a multiple of ``multiple_of`` as Llama does (it uses 256 at width 4096).

    Three C×H matrices at H = 8/3 · C hold as many weights as a GELU MLP's two C×4C ones; rounding up to
    a multiple of 32 keeps the widths SIMD-friendly at a small cost (352 rather than 341⅓ at n_embd 128).
    """
    return multiple_of * -(-(8 * n_embd) // (3 * multiple_of))
# --8<-- [end:swiglu_hidden]


# --8<-- [start:swiglu]
class SwiGLU(nn.Module):
    """W_2 (SiLU(x W_g) ⊙ x W_u): a gated MLP (Shazeer 2020), gate and up projections in one matmul."""

    def __init__(self, n_embd: int, hidden: int, bias: bool = False):
        super().__init__()
        self.gate_up = nn.Linear(n_embd, 2 * hidden, bias=bias)  # W_g and W_u side by side
        self.down = nn.Linear(hidden, n_embd, bias=bias)  # W_2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, H) each
        return self.down(F.silu(gate) * up)  # (B, T, C)
# --8<-- [end:swiglu]


# --8<-- [start:init_weights]
def init_weights(module: nn.Module) -> None:
    """nanoGPT's N(0, 0.02) for matrices and embeddings, zero biases (when there are any); norm gains stay at 1."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
# --8<-- [end:init_weights]
