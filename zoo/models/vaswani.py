"""Rung 6: the Transformer of Vaswani et al. 2017, as a decoder-only language model."""

import math
from dataclasses import dataclass

import torch
from torch import nn

from zoo.hooks import HookPoint, ResidualStream
from zoo.nn import MultiHeadAttention, check_transformer_sizes, sinusoidal_positions
from zoo.registry import register


# --8<-- [start:config]
@dataclass(frozen=True)
class VaswaniConfig:
    vocab_size: int = 0  # bound from the data
    block_size: int = 0  # bound from the data: the longest window, and the left context the model can use
    n_layer: int = 4  # N, the number of blocks (the paper's base model: 6)
    n_head: int = 4  # h, attention heads per block (base: 8); d_k = d_v = n_embd / n_head
    n_embd: int = 128  # d_model, the width of the residual stream (base: 512)
    d_ff: int = 0  # hidden width of the feed-forward network; 0 means 4 · n_embd, the paper's ratio (2048 / 512)
    dropout: float = 0.1  # P_drop on the embeddings and on every sub-layer output before its residual add (base: 0.1)
# --8<-- [end:config]


@register("vaswani", chapter="06-vaswani")
class Vaswani(nn.Module):
    """Transformer (Vaswani et al. 2017), decoder-only — adds positions to the set transformer's attention blocks, with the paper's recipe.

    The set transformer below it attends by content but cannot tell order; here each token enters as
        x_0[t] = √d_model · E[idx_t] + PE[t]            (§3.4 scaled embedding, §3.5 sinusoidal PE[t])
    then N identical post-LN blocks (§3.1, §5.4):
        x = LayerNorm(x + Dropout(MultiHead(x, x, x)))   with the causal mask M[t, s] = −∞ for s > t
        x = LayerNorm(x + Dropout(FFN(x))),              FFN(x) = max(0, x W_1 + b_1) W_2 + b_2   (§3.3)
    where MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = softmax(Q W_i^Q (K W_i^K)ᵀ / √d_k + M) V W_i^V.
    logits[t] = x_N[t] Eᵀ: the embedding matrix doubles as the pre-softmax projection (§3.4, weight tying).
    """

    Config = VaswaniConfig

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        check_transformer_sizes(config)
        if config.n_embd % 2 != 0:
            raise ValueError(f"n_embd must be even for sinusoidal positions, got {config.n_embd}")
        if config.d_ff < 0:
            raise ValueError(f"d_ff must be >= 0 (0 means 4 * n_embd), got {config.d_ff}")
        self.config = config
        self.context_length = config.block_size  # logits at t see at most block_size tokens
        C = config.n_embd
        # --8<-- [start:layers]
        self.wte = nn.Embedding(config.vocab_size, C)  # E, shared with the output projection
        # The paper gives no initialisation. Tying makes the choice matter: the top block's output is
        # LayerNorm-ed to length √d_model, so E's rows must start short or the initial softmax is far
        # from uniform (N(0, d_model^−0.5), tensor2tensor's choice, starts at ~2× the uniform loss here).
        # GPT-2's N(0, 0.02) starts near uniform; Adam then grows the embeddings within a few steps.
        nn.init.normal_(self.wte.weight, std=0.02)
        self.register_buffer("pe", sinusoidal_positions(config.block_size, C), persistent=False)  # (block_size, C)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.resid = ResidualStream(config.n_layer)  # hook points resid.0 .. resid.N (zoo.hooks), no parameters
        self.readout = HookPoint()  # hook point: the state the output projection reads
        # --8<-- [end:layers]

    # --8<-- [start:peak_lr]
    @staticmethod
    def peak_lr(config: VaswaniConfig, optim) -> float:
        """The paper's learning rate (§5.3, eq. 3), lrate = d_model^−0.5 · min(t^−0.5, t · warmup^−1.5).

        The harness's inverse_sqrt schedule is lr · min(t / w, sqrt(w / t)), which is that formula when
        lr = d_model^−0.5 · warmup^−0.5: so the peak follows ``--model.n_embd`` and ``--optim.warmup_steps``.
        """
        return config.n_embd ** -0.5 * max(1, optim.warmup_steps) ** -0.5
    # --8<-- [end:peak_lr]

    # --8<-- [start:forward]
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        x = self.wte(idx) * math.sqrt(self.config.n_embd) + self.pe[:T]  # (B, T, C)
        x = self.resid[0](self.drop(x))  # (B, T, C): hook point resid.0, the stream entering block 1
        for block, point in zip(self.blocks, self.resid[1:]):
            x = point(block(x))  # (B, T, C): hook point resid.i, the stream leaving block i
        return self.unembed(x)  # (B, T, vocab_size)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The read-out: the tied pre-softmax projection x Eᵀ (post-norm blocks end normalised). (B, T, C) -> (B, T, V)."""
        return self.readout(x) @ self.wte.weight.t()
    # --8<-- [end:forward]

    # The paper's optimiser (§5.3): Adam(β1 0.9, β2 0.98, ε 1e-9), no weight decay, no gradient clipping
    # mentioned, and its learning rate by formula: lr is None here, so a run takes peak_lr() above
    # (set --optim.lr to override it).
    # Label smoothing (ε_ls 0.1 in §5.4) is available as optim.label_smoothing but stays off: it trades
    # perplexity for BLEU, and perplexity (bits per character) is what this ladder measures.
    presets = {
        "quick": {
            "model": {"n_layer": 2, "n_head": 4, "n_embd": 64, "dropout": 0.0},
            "data": {"block_size": 64, "batch_size": 32},
            "optim": {"optimizer": "adam", "betas": [0.9, 0.98], "eps": 1e-9, "weight_decay": 0.0,
                      "schedule": "inverse_sqrt", "warmup_steps": 100, "lr": None},
            "trainer": {"max_steps": 200, "val_every": 100},
        },
        # The ladder's budget: ~4.1M training tokens (2000 steps × 16 windows × 128), minutes on one CPU core.
        # Dropout is off: the paper's P_drop 0.1 regularises 100k-step runs; in a run this short it only
        # slows learning (a 1000-step trial on tinyshakespeare was worse with it). Gradients are clipped at
        # norm 1 (the harness default), which the paper does not mention: lr peaks ~9x the paper's here.
        # --8<-- [start:book_preset]
        "book": {
            "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0},
            "data": {"block_size": 128, "batch_size": 16},
            "optim": {"optimizer": "adam", "betas": [0.9, 0.98], "eps": 1e-9, "weight_decay": 0.0,
                      "schedule": "inverse_sqrt", "warmup_steps": 200, "lr": None},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
        # --8<-- [end:book_preset]
    }


# --8<-- [start:block]
class Block(nn.Module):
    """One post-LN decoder block: sub-layer, dropout, residual add, then LayerNorm (§3.1, §5.4)."""

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        C = config.n_embd
        d_ff = config.d_ff or 4 * C
        # The paper drops out sub-layer outputs, not attention weights, so attention dropout is 0 here.
        self.attn = MultiHeadAttention(C, config.n_head, bias=True, dropout=0.0)
        self.ln_1 = nn.LayerNorm(C)
        self.ffn = nn.Sequential(nn.Linear(C, d_ff), nn.ReLU(), nn.Linear(d_ff, C))  # max(0, x W_1 + b_1) W_2 + b_2
        self.ln_2 = nn.LayerNorm(C)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(x + self.drop(self.attn(x, causal=True)))  # (B, T, C)
        x = self.ln_2(x + self.drop(self.ffn(x)))  # (B, T, C)
        return x
# --8<-- [end:block]
