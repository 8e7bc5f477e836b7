"""Rung 2: the neural probabilistic language model of Bengio et al. (2003)."""

from dataclasses import dataclass

import torch
from torch import nn

from zoo.nn import require_positive
from zoo.registry import register


# --8<-- [start:config]
@dataclass(frozen=True)
class BengioMLPConfig:
    vocab_size: int = 0  # bound from the data
    context: int = 8  # n-1: how many previous characters (the current one included) the window holds
    n_embd: int = 32  # m: width of a character's feature vector, a row of the shared matrix C
    n_hidden: int = 256  # h: tanh hidden units
    direct: bool = True  # the direct connections W from the features to the output (the paper's ablation)
# --8<-- [end:config]


@register("bengio-mlp", chapter="02-bengio-mlp")
class BengioMLP(nn.Module):
    """Bengio, Ducharme, Vincent & Jauvin 2003, "A Neural Probabilistic Language Model": learned, shared character embeddings in a fixed window.

    The n-gram's context is an exact string: two contexts that differ in one character share nothing.
    Here every character i has a learned feature vector C(i) in R^m, the same matrix C at every slot
    of the window, and the window's features go through a smooth function, so similar contexts get
    similar predictions and counts are shared between them. With x the concatenation of the
    features of the n-1 most recent characters (oldest first),

        x = (C(w_{t-n+2}), ..., C(w_{t-1}), C(w_t))      in R^{(n-1) m}
        y = b + W x + U tanh(d + H x)                      in R^V   (the logits; softmax gives P)

    H (h × (n-1)m) with bias d is the hidden layer, U (V × h) with bias b the output layer, and W
    (V × (n-1)m) the optional direct connections from the features straight to the output (``direct``;
    the paper reports results with and without them). The window slides over the sequence, so every
    position gets logits; slots before the start of the sequence hold a padding token that is not in
    the vocabulary (row V of C), so a short window is told apart from a real character.
    """

    Config = BengioMLPConfig
    def __init__(self, config: BengioMLPConfig):
        super().__init__()
        require_positive(config, "vocab_size", "context", "n_embd", "n_hidden")
        self.config = config
        self.context_length = config.context  # logits at t see idx[t-n+2 .. t]
        V, m, h, width = config.vocab_size, config.n_embd, config.n_hidden, config.context * config.n_embd
        # --8<-- [start:layers]
        self.pad = V  # the padding token: one extra row of C, never predicted
        self.C = nn.Embedding(V + 1, m)  # shared feature vectors, one row per character (+ padding)
        self.H = nn.Linear(width, h)  # hidden layer; its bias is d
        self.U = nn.Linear(h, V)  # hidden -> output; its bias is b
        self.W = nn.Linear(width, V, bias=False) if config.direct else None  # direct connections
        # --8<-- [end:layers]

    # --8<-- [start:forward]
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        n1 = self.config.context  # n-1
        pad = torch.full((B, n1 - 1), self.pad, dtype=idx.dtype, device=idx.device)  # (B, n-2)
        padded = torch.cat([pad, idx], dim=1)  # (B, T+n-2)
        window = padded.unfold(1, n1, 1)  # (B, T, n-1): window t = idx[t-n+2 .. t], oldest first
        x = self.C(window).view(B, T, n1 * self.config.n_embd)  # (B, T, (n-1)m): the concatenated features
        logits = self.U(torch.tanh(self.H(x)))  # (B, T, V): b + U tanh(d + H x)
        if self.W is not None:
            logits = logits + self.W(x)  # (B, T, V): + W x
        return logits
    # --8<-- [end:forward]

    presets = {
        "quick": {
            "model": {"context": 5, "n_embd": 16, "n_hidden": 64},
            "data": {"block_size": 32, "batch_size": 32},
            "optim": {"lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 20},
            "trainer": {"max_steps": 200, "val_every": 100},
        },
        # A small tanh MLP wants a high learning rate: at 1000 steps on tinyshakespeare, lr 3e-3 / 1e-2 / 2e-2
        # gave val 2.52 / 2.39 / 2.36 bpc (n_hidden 512 at 3e-3: 2.43; no direct connections: 2.51).
        "book": {
            "model": {"context": 8, "n_embd": 32, "n_hidden": 256},
            "data": {"block_size": 128, "batch_size": 16},
            "optim": {"lr": 2e-2, "weight_decay": 0.01, "warmup_steps": 100, "min_lr_ratio": 0.05},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
    }
