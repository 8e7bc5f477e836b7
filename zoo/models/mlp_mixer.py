"""Rung 3: the MLP-Mixer of Tolstikhin et al. (2021), made causal."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from zoo.hooks import HookPoint, ResidualStream
from zoo.nn import require_positive
from zoo.registry import register


# --8<-- [start:config]
@dataclass(frozen=True)
class MLPMixerConfig:
    vocab_size: int = 0  # bound from the data
    block_size: int = 0  # bound from the data: the positions the token-mixing weights are indexed by
    n_embd: int = 64  # C: channels per position
    n_layer: int = 4  # Mixer blocks
    token_expansion: int = 1  # hidden units per position in the token-mixing MLP (D_S = token_expansion · block_size)
    channel_expansion: int = 4  # hidden width of the channel-mixing MLP as a multiple of n_embd (D_C)
# --8<-- [end:config]


@register("mlp-mixer", chapter="03-mlp-mixer")
class MLPMixer(nn.Module):
    """Tolstikhin et al. 2021, "MLP-Mixer: An all-MLP Architecture for Vision", made causal: positions mixed by learned, position-indexed weights.

    The Bengio MLP reads a fixed window through one hidden layer. The Mixer alternates two MLPs over
    a (T × C) table of per-position features X, each with a pre-LayerNorm and a residual:

        U_{*,i} = X_{*,i} + W2 σ(W1 LN(X)_{*,i})      token mixing: across positions, for each channel i
        Y_{j,*} = U_{j,*} + W4 σ(W3 LN(U)_{j,*})      channel mixing: across channels, for each position j

    with σ = GELU, the token weights shared by every channel and the channel weights by every position.
    Here W1 and W2 are masked lower-triangular by position (see ``CausalTokenMixing``), so position t
    mixes only positions <= t; then LayerNorm and a linear map give the logits.

    The token-mixing weights are indexed by absolute position within the window (context_length =
    block_size). They can learn fixed offsets — "the character 3 back" is a weight from t-3 into t —
    but only position by position: the weight from t-3 into t and the one from t-2 into t+1 are
    separate numbers, learned separately, although a text's windows start anywhere. And they cannot do content-based lookup:
    the weights are the same whatever the characters are, so "find the last 'q' and look after it"
    is out of reach. Mixing weights computed from the content itself is what attention adds.
    """

    Config = MLPMixerConfig
    def __init__(self, config: MLPMixerConfig):
        super().__init__()
        require_positive(config, "vocab_size", "block_size", "n_embd", "n_layer", "token_expansion", "channel_expansion")
        self.config = config
        self.context_length = config.block_size  # the token-mixing weights have block_size positions
        # --8<-- [start:layers]
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # no position embedding: token mixing is position-indexed
        self.blocks = nn.ModuleList(MixerBlock(config) for _ in range(config.n_layer))
        self.resid = ResidualStream(config.n_layer)  # hook points resid.0 .. resid.N (zoo.hooks), no parameters
        self.readout = HookPoint()  # hook point: the state the output projection reads
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        # --8<-- [end:layers]

    # --8<-- [start:forward]
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size} (the positions the token mixing knows)")
        x = self.resid[0](self.wte(idx))  # (B, T, C): hook point resid.0, the stream entering block 1
        for block, point in zip(self.blocks, self.resid[1:]):
            x = point(block(x))  # (B, T, C): hook point resid.i, the stream leaving block i
        return self.unembed(x)  # (B, T, V)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The read-out: final LayerNorm, then the output projection. (B, T, C) -> (B, T, V)."""
        return self.lm_head(self.readout(self.ln_f(x)))
    # --8<-- [end:forward]

    presets = {
        "quick": {
            "model": {"n_embd": 32, "n_layer": 2},
            "data": {"block_size": 32, "batch_size": 32},
            "optim": {"lr": 3e-2, "warmup_steps": 20},
            "trainer": {"max_steps": 200, "val_every": 100},
        },
        # At 1000 steps on tinyshakespeare: lr 3e-3 / 1e-2 / 2e-2 gave val 2.76 / 2.46 / 2.42 bpc;
        # token_expansion 2: 2.43 (at 1e-2); 2 blocks: 2.56; block_size 32 with batch 64: 2.42.
        # --8<-- [start:book_preset]
        "book": {
            "model": {"n_embd": 64, "n_layer": 4},
            "data": {"block_size": 64, "batch_size": 32},
            "optim": {"lr": 2e-2, "weight_decay": 0.1, "warmup_steps": 100, "min_lr_ratio": 0.05},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
        # --8<-- [end:book_preset]
    }


# --8<-- [start:block]
class MixerBlock(nn.Module):
    """Token mixing then channel mixing, each pre-LayerNorm with a residual (Tolstikhin et al. 2021, eq. 1)."""

    def __init__(self, config: MLPMixerConfig):
        super().__init__()
        C = config.n_embd
        self.ln_1 = nn.LayerNorm(C)
        self.token_mixing = CausalTokenMixing(config.block_size, config.token_expansion)
        self.ln_2 = nn.LayerNorm(C)
        self.channel_mixing = nn.Sequential(  # the same MLP at every position: features only
            nn.Linear(C, config.channel_expansion * C), nn.GELU(), nn.Linear(config.channel_expansion * C, C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mixing(self.ln_1(x))  # (B, T, C) U = X + W2 σ(W1 LN(X))  (across positions)
        return x + self.channel_mixing(self.ln_2(x))  # (B, T, C) Y = U + W4 σ(W3 LN(U))  (across channels)
# --8<-- [end:block]


class CausalTokenMixing(nn.Module):
    """The token-mixing MLP across positions, W2 σ(W1 X + b1) + b2, with both layers masked so it stays causal.

    Why two masked layers and not one: a two-layer MLP whose hidden units see every position would
    carry a later position into an earlier output through the hidden layer, even with W2 masked.
    So each hidden unit belongs to a position p(u) = u // token_expansion; W1 lets unit u read only
    positions s <= p(u), and W2 lets output t read only units with p(u) <= t. Then output t depends
    on inputs s <= p(u) <= t and nothing later — the paper's two-layer token MLP with its GELU,
    causal exactly (masked weights are multiplied by zero, not merely small). A single masked T×T
    layer would also be causal, but loses the nonlinearity the paper puts between the two layers.
    Units are ordered by position, so the first T·e units and the top-left T×T part of every
    weight serve a window of T <= block_size, with the same outputs as the prefix of a longer one.
    """

    # --8<-- [start:masks]
    def __init__(self, block_size: int, expansion: int):
        super().__init__()
        self.expansion = expansion
        n_hidden = block_size * expansion
        unit_pos = torch.arange(n_hidden) // expansion  # (D_S,) the position each hidden unit belongs to
        pos = torch.arange(block_size)  # (T,)
        self.register_buffer("mask1", unit_pos[:, None] >= pos[None, :], persistent=False)  # (D_S, T) unit u reads s <= p(u)
        self.register_buffer("mask2", pos[:, None] >= unit_pos[None, :], persistent=False)  # (T, D_S) output t reads p(u) <= t
        self.w1 = nn.Parameter(self.masked_init(self.mask1))  # (D_S, T)
        self.b1 = nn.Parameter(torch.zeros(n_hidden))  # (D_S,)
        self.w2 = nn.Parameter(self.masked_init(self.mask2))  # (T, D_S)
        self.b2 = nn.Parameter(torch.zeros(block_size))  # (T,)

    @staticmethod
    def masked_init(mask: torch.Tensor) -> torch.Tensor:
        """nn.Linear's uniform init, but with each row's fan-in counted over the inputs it may read."""
        fan_in = mask.sum(1, keepdim=True).clamp(min=1)  # (rows, 1)
        return (torch.rand(mask.shape) * 2 - 1) / fan_in.sqrt() * mask  # (rows, cols)
    # --8<-- [end:masks]

    # --8<-- [start:mixing]
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        H = T * self.expansion
        w1 = self.w1[:H, :T] * self.mask1[:H, :T]  # (H, T): the top-left part, lower-triangular by position
        w2 = self.w2[:T, :H] * self.mask2[:T, :H]  # (T, H)
        h = F.gelu(torch.einsum("us,bsc->buc", w1, x) + self.b1[:H, None])  # (B, H, C): every channel mixed alike
        return torch.einsum("tu,buc->btc", w2, h) + self.b2[:T, None]  # (B, T, C)
    # --8<-- [end:mixing]
