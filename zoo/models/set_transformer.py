"""Rung 5: content-based attention without order — the Set Transformer's blocks as a causal LM."""

from dataclasses import dataclass

import torch
from torch import nn

from zoo.hooks import HookPoint, ResidualStream
from zoo.nn import MultiHeadAttention, check_transformer_sizes, require_positive
from zoo.registry import register


# --8<-- [start:config]
@dataclass(frozen=True)
class SetTransformerConfig:
    vocab_size: int = 0  # bound from the data
    block_size: int = 0  # bound from the data: the window, and so the context, of every prediction
    n_embd: int = 64  # width of every row of X
    n_head: int = 4  # attention heads per block
    n_layer: int = 2  # stacked SABs; with 1 the model sees its prefix as a bag
    ff_mult: int = 4  # rFF hidden width = ff_mult * n_embd
    dropout: float = 0.0  # on attention weights and on each sub-layer's output
    bias: bool = True  # biases in the attention projections
# --8<-- [end:config]


@register("set-transformer", chapter="05-set-transformer")
class SetTransformer(nn.Module):
    """Lee et al. 2019, "Set Transformer": attention looks things up by content — but has no notion of order.

    Rows are token embeddings and nothing else — no positional information of any kind:

        X_0      = E[idx]                                         (B, T, C)
        Multihead(Q, K, V) = Concat(head_1, …, head_h) W^O,  head_i = softmax(Q W_i^Q (K W_i^K)ᵀ / √d + M) V W_i^V
        H        = LN(X + Multihead(X, Y, Y)),   MAB(X, Y) = LN(H + rFF(H))
        X_{l+1}  = SAB(X_l) = MAB(X_l, X_l),      logits = X_L W_out

    with the causal mask M (−∞ where key s > query t), so row t attends to rows 0..t only.

    Attention is a weighted average whose weights depend on contents, so it is permutation-equivariant:
    with one SAB the prediction at t is a function of the current token and of the *bag* (multiset) of
    tokens 0..t — "dog bites man" and "man bites dog" look the same to it. Stacking SABs leaks some
    order back in through the mask alone: row s of layer 1 summarises the bag of tokens 0..s, so layer 2
    sees a nested sequence of bags, and nested prefixes pin down the order. Positions proper come next.

    Why not the paper's other blocks. ISAB(X) = MAB(X, MAB(I, X)) first lets m learned inducing points I
    attend to the *whole* set X, then every row reads from those m summaries; PMA_k(Z) = MAB(S, rFF(Z))
    pools the whole set into k learned seeds S. Both summarise all of X at once — every output depends on
    every row, the future included — and PMA returns k vectors for the set rather than one per position.
    A causal LM needs a separate summary of each prefix 0..t; giving ISAB one per prefix means m queries
    over each of the T prefixes, O(T²·m) per layer — more than SAB's O(T²), so the O(T·m) saving that is
    ISAB's reason to exist is gone — and a per-prefix PMA is just causal attention with a learned query.
    So only SAB (with the mask) is used here.
    """

    Config = SetTransformerConfig
    def __init__(self, config: SetTransformerConfig):
        super().__init__()
        check_transformer_sizes(config)
        require_positive(config, "ff_mult")
        self.config = config
        self.context_length = config.block_size  # it is trained, and scored, on windows of block_size
        # --8<-- [start:layers]
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # the only input: what each token is
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(SAB(config) for _ in range(config.n_layer))
        self.resid = ResidualStream(config.n_layer)  # hook points resid.0 .. resid.N (zoo.hooks), no parameters
        self.readout = HookPoint()  # hook point: the state the output projection reads
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        # --8<-- [end:layers]

    # --8<-- [start:forward]
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size {self.config.block_size}")
        x = self.resid[0](self.drop(self.wte(idx)))  # (B, T, C): no position added — row t does not know it is row t
        for block, point in zip(self.blocks, self.resid[1:]):
            x = point(block(x))  # (B, T, C): hook point resid.i, the stream leaving block i
        return self.unembed(x)  # (B, T, vocab_size)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The read-out: the output projection (the blocks end in LayerNorm). (B, T, C) -> (B, T, vocab_size)."""
        return self.lm_head(self.readout(x))
    # --8<-- [end:forward]

    presets = {
        "quick": {
            "model": {"n_embd": 32, "n_head": 4, "n_layer": 2},
            "data": {"block_size": 32, "batch_size": 16},
            "optim": {"lr": 3e-3, "warmup_steps": 20},
            "trainer": {"max_steps": 150, "val_every": 50},
        },
        # The vaswani rung's book model size and window, so the next chapter changes one thing: positions.
        # 16 windows of 128 = 2048 tokens a step, as many as the rnn's 32 streams of 64.
        "book": {
            "model": {"n_embd": 128, "n_head": 4, "n_layer": 4},
            "data": {"block_size": 128, "batch_size": 16},
            # Lee et al. train with Adam at 1e-3; here 3e-3 reached a lower loss in 800 steps (2.82 bpc against
            # 3.16 at 1e-3, 2.86 at 6e-3, 3.49 at 1e-2).
            "optim": {"lr": 3e-3, "warmup_steps": 200, "weight_decay": 0.1},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
    }


# --8<-- [start:blocks]
class MAB(nn.Module):
    """Multihead Attention Block: MAB(X, Y) = LN(H + rFF(H)),  H = LN(X + Multihead(X, Y, Y))."""

    def __init__(self, config: SetTransformerConfig):
        super().__init__()
        C = config.n_embd
        self.attn = MultiHeadAttention(C, config.n_head, bias=config.bias, dropout=config.dropout)
        self.ln_1 = nn.LayerNorm(C)
        # rFF, the row-wise feed-forward: the same two-layer MLP applied to every row on its own
        self.rff = nn.Sequential(nn.Linear(C, config.ff_mult * C), nn.ReLU(), nn.Linear(config.ff_mult * C, C))
        self.ln_2 = nn.LayerNorm(C)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x + self.drop(self.attn(x, y, causal=True)))  # (B, T, C): row t attends to y[:, :t+1]
        return self.ln_2(h + self.drop(self.rff(h)))  # (B, T, C)


class SAB(MAB):
    """Set Attention Block: SAB(X) = MAB(X, X) — every row attends to the (earlier) rows of the same set."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x, x)  # (B, T, C)
# --8<-- [end:blocks]
