"""Rung 7: the modern decoder-only recipe (Llama / modded-nanogpt), at character level."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from zoo.hooks import HookPoint, ResidualStream
from zoo.nn import (
    RMSNorm,
    SwiGLU,
    apply_rope,
    check_transformer_sizes,
    init_weights,
    rope_cache,
    sdpa,
    sinusoidal_positions,
    swiglu_hidden,
)
from zoo.registry import register


# --8<-- [start:config]
@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 0  # bound from the data
    block_size: int = 0  # bound from the data: the longest window, and the left context the model can use
    n_layer: int = 4  # number of blocks (0: a zero-layer model, the embedding read out directly)
    n_head: int = 4  # attention heads per block; head_dim = n_embd / n_head must be even (RoPE rotates pairs)
    n_embd: int = 128  # width of the residual stream
    mlp_hidden: int = 0  # SwiGLU hidden width; 0 means 8/3 · n_embd rounded up to a multiple of 32
    dropout: float = 0.0  # on embeddings, attention weights and each block's residual branch (0 for short runs)
    tie_embeddings: bool = True  # share the token embedding with the output projection (False: a separate lm_head)
    qk_norm: bool = False  # RMSNorm queries and keys per head before RoPE (bounds attention logits)
    rope_base: float = 10000.0  # θ in RoPE's frequencies θ^(−2i/head_dim)
    compile: bool = False  # torch.compile each block in place (same weights and state_dict; first steps pay compile time)
    # Ablation switches: chapter 7 takes the recipe apart one change at a time. The defaults are the recipe;
    # the other value of each is what the Vaswani rung does instead.
    norm: str = "rmsnorm"  # "rmsnorm" or "layernorm" (with a bias when bias is on)
    prenorm: bool = True  # normalise each branch's input (True) or the stream after each residual add (False: post-norm)
    positions: str = "rope"  # "rope" (rotate q and k) or "sinusoidal" (added to √C · E[idx] at the input)
    mlp: str = "swiglu"  # "swiglu" (hidden mlp_hidden) or "relu" (max(0, x W_1 + b_1) W_2, hidden mlp_hidden or 4 · n_embd)
    bias: bool = False  # biases in every linear layer and LayerNorm
    zero_init: bool = True  # zero the projections that write into the residual stream: every block starts as the identity
# --8<-- [end:config]

NORMS, POSITIONS, MLPS = ("rmsnorm", "layernorm"), ("rope", "sinusoidal"), ("swiglu", "relu")


@register("gpt", chapter="07-gpt")
class GPT(nn.Module):
    """Modern GPT (Llama; modded-nanogpt) — pre-norm RMSNorm, rotary positions, SwiGLU and AdamW with cosine decay.

    Over the Vaswani rung every change serves trainability or speed, not a new idea about language:
        x_0 = E[idx]                                   no additive positions; order enters through RoPE
        x = x + W_o · Attn(RoPE(q), RoPE(k), v)        q, k, v = RMSNorm(x) W_qkv  (pre-norm residual)
        x = x + W_2 (SiLU(h W_g) ⊙ h W_u),  h = RMSNorm(x)
        logits = RMSNorm(x_N) Eᵀ
    with Attn = softmax(q kᵀ / √d + causal mask) v, and RoPE rotating each (q, k) dimension pair by pos · θ_i,
    so a score depends only on the content of q and k and on their offset.

    Each choice and where it comes from (the switches in GPTConfig turn each back to Vaswani's, for ablations):
      * pre-norm residual blocks — GPT-2 (Radford et al. 2019); Xiong et al. 2020: no warmup-sensitive post-LN.
      * RMSNorm instead of LayerNorm — Zhang & Sennrich 2019; used by Llama (Touvron et al. 2023).
      * rotary position embeddings — Su et al. 2021 (RoFormer); GPT-NeoX / Llama "rotate-half" layout.
      * SwiGLU MLP, hidden 8/3 · n_embd — Shazeer 2020 ("GLU Variants Improve Transformer"); Llama's sizing.
      * no biases — PaLM (Chowdhery et al. 2022); Llama.
      * tied input/output embeddings by default — Press & Wolf 2017; GPT-2 / nanoGPT (untie: tie_embeddings=False).
      * attention through F.scaled_dot_product_attention(is_causal=True) — fused kernels (PyTorch; nanoGPT).
      * output projections zero-initialised, so every block starts as the identity — modded-nanogpt (Keller Jordan).
      * optional QK-norm — Dehghani et al. 2023 (ViT-22B); modded-nanogpt.
      * AdamW, β₂ 0.95, weight decay 0.1 on matrices, warmup + cosine decay — GPT-3 (Brown et al. 2020); Llama.
    """

    Config = GPTConfig

    # Whether --trainer.compile auto compiles it: measured faster compiled on the development CPU, without dropout
    # (benchmarks/gpt_speed.py) and with it (dropout 0.1, book size, 2,000 steps, one thread: 18.3k against 16.3k
    # tokens/s; benchmarks/compile_ab.py, benchmarks/results/gpt_dropout_compile_cpu.json)
    compile_pays = True

    def __init__(self, config: GPTConfig):
        super().__init__()
        check_transformer_sizes(config, min_layers=0)  # n_layer 0: embedding straight into the read-out
        if (config.n_embd // config.n_head) % 2 != 0:
            raise ValueError(f"head_dim = n_embd / n_head = {config.n_embd // config.n_head} must be even for RoPE")
        if config.mlp_hidden < 0:
            raise ValueError(f"mlp_hidden must be >= 0 (0 means 8/3 * n_embd), got {config.mlp_hidden}")
        if config.rope_base <= 1.0:
            raise ValueError(f"rope_base must be > 1, got {config.rope_base}")
        for name, value, allowed in (("norm", config.norm, NORMS), ("positions", config.positions, POSITIONS), ("mlp", config.mlp, MLPS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.config = config
        self.context_length = config.block_size  # logits at t see at most block_size tokens
        C = config.n_embd
        # --8<-- [start:init]
        self.wte = nn.Embedding(config.vocab_size, C)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.resid = ResidualStream(config.n_layer)  # hook points resid.0 .. resid.N (zoo.hooks), no parameters
        self.readout = HookPoint()  # hook point: the state the output projection reads
        self.norm_f = make_norm(config) if config.prenorm else nn.Identity()  # post-norm blocks end normalised
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        if config.positions == "rope":
            cos, sin = rope_cache(config.block_size, C // config.n_head, config.rope_base)  # (block_size, head_dim) each
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        else:
            self.register_buffer("pe", sinusoidal_positions(config.block_size, C), persistent=False)  # (block_size, C)
        self.apply(init_weights)
        if config.zero_init:
            for block in self.blocks:  # zero-init the projections that write into the residual stream
                nn.init.zeros_(block.attn.proj.weight)
                nn.init.zeros_(block.mlp.down.weight)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight  # one V×C matrix reads tokens in and scores them out
        if config.compile:
            for block in self.blocks:
                block.compile()  # in place: parameter names and state_dict keys are unchanged
        # --8<-- [end:init]

    # --8<-- [start:forward]
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        if self.config.positions == "rope":
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]  # (T, head_dim) each
            x = self.drop(self.wte(idx))  # (B, T, C)
        else:  # Vaswani's input: the scaled embedding plus the fixed sinusoid of each position
            cos = sin = None
            x = self.drop(self.wte(idx) * self.config.n_embd**0.5 + self.pe[:T])  # (B, T, C)
        x = self.resid[0](x)  # (B, T, C): hook point resid.0, the stream entering block 1
        for block, point in zip(self.blocks, self.resid[1:]):
            x = point(block(x, cos, sin))  # (B, T, C): hook point resid.i, the stream leaving block i
        return self.unembed(x)  # (B, T, vocab_size)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The read-out: final norm, then the output projection (Eᵀ when tied). (B, T, C) -> (B, T, vocab_size)."""
        return self.lm_head(self.readout(self.norm_f(x)))
    # --8<-- [end:forward]

    presets = {
        "quick": {
            "model": {"n_layer": 2, "n_head": 4, "n_embd": 64},
            "data": {"block_size": 64, "batch_size": 32},
            "optim": {"optimizer": "adamw", "lr": 6e-3, "betas": [0.9, 0.95], "weight_decay": 0.1,
                      "schedule": "cosine", "warmup_steps": 50},
            "trainer": {"max_steps": 200, "val_every": 100},
        },
        # The same size and token budget as the vaswani rung's book preset (the ladder's 2000 steps × 16 × 128), so
        # the chapter compares recipes, not budgets. lr 6e-3 was the better of {3e-3, 6e-3} in a 1000-step trial.
        # --8<-- [start:book_preset]
        "book": {
            "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0},
            "data": {"block_size": 128, "batch_size": 16},
            "optim": {"optimizer": "adamw", "lr": 6e-3, "betas": [0.9, 0.95], "weight_decay": 0.1,
                      "schedule": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.1},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
        # --8<-- [end:book_preset]
        # The size nanoGPT's README trains on a laptop CPU (train_shakespeare_char.py with --device=cpu
        # --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --dropout=0.0):
        # its lr 1e-3, 100 warmup steps, cosine to lr/10, and β₂ 0.99 (its config: "number of tokens per iter is small").
        # --8<-- [start:nanogpt_cpu_preset]
        "nanogpt-cpu": {
            "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0},
            "data": {"block_size": 64, "batch_size": 12},
            "optim": {"optimizer": "adamw", "lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.1,
                      "schedule": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.1},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
        # --8<-- [end:nanogpt_cpu_preset]
        # nanoGPT's train_shakespeare_char.py itself (6 layers, 6 heads, 384 wide, 256 tokens, dropout 0.2),
        # for a machine with a GPU.
        "nanogpt-gpu": {
            "model": {"n_layer": 6, "n_head": 6, "n_embd": 384, "dropout": 0.2},
            "data": {"block_size": 256, "batch_size": 64},
            "optim": {"optimizer": "adamw", "lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.1,
                      "schedule": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.1},
            "trainer": {"max_steps": 5000, "val_every": 250, "accelerator": "gpu", "precision": "bf16-mixed"},
        },
    }


# --8<-- [start:block]
class Block(nn.Module):
    """Pre-norm block: normalise the input of each branch, never the residual stream itself.

    (With ``prenorm=False``, the post-norm block of Vaswani et al.: x = Norm(x + Branch(x)).)
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.prenorm = config.prenorm
        self.norm_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm_2 = make_norm(config)
        self.mlp = SwiGLU(config.n_embd, config.mlp_hidden or swiglu_hidden(config.n_embd), config.bias) if config.mlp == "swiglu" else ReluMLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None) -> torch.Tensor:
        if not self.prenorm:
            x = self.norm_1(x + self.drop(self.attn(x, cos, sin)))  # (B, T, C)
            return self.norm_2(x + self.drop(self.mlp(x)))  # (B, T, C)
        x = x + self.drop(self.attn(self.norm_1(x), cos, sin))  # (B, T, C)
        x = x + self.drop(self.mlp(self.norm_2(x)))  # (B, T, C)
        return x
# --8<-- [end:block]


# --8<-- [start:attention]
class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with rotary positions, computed by the fused SDPA kernel."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        self.n_head, self.head_dim = config.n_head, C // config.n_head
        self.qkv = nn.Linear(C, 3 * C, bias=config.bias)  # W_q, W_k, W_v side by side: one matmul
        self.proj = nn.Linear(C, C, bias=config.bias)  # W_o
        self.q_norm = RMSNorm(self.head_dim) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim) if config.qk_norm else None
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(2)  # (B, T, h, head_dim) each
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, h, T, head_dim) each
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)  # (B, h, T, head_dim): unit RMS per head
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, h, T, head_dim): rotated by position
        y = sdpa(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)  # (B, h, T, head_dim): SDPA, fp32 on a CPU
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)
# --8<-- [end:attention]






class ReluMLP(nn.Module):
    """max(0, x W_1 + b_1) W_2 + b_2, hidden 4 · n_embd: Vaswani et al.'s feed-forward (the ``mlp="relu"`` ablation)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        H = config.mlp_hidden or 4 * C
        self.up = nn.Linear(C, H, bias=config.bias)  # W_1
        self.down = nn.Linear(H, C, bias=config.bias)  # W_2, named like SwiGLU's so zero_init finds it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)))  # (B, T, C)


def make_norm(config: GPTConfig) -> nn.Module:
    """The block's normalisation: RMSNorm (the recipe) or LayerNorm (the ``norm="layernorm"`` ablation)."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)
