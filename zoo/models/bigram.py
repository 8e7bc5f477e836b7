"""Rung 0: the bigram table."""

from dataclasses import dataclass

import torch
from torch import nn

from zoo.nn import require_positive
from zoo.registry import register


# --8<-- [start:config]
@dataclass(frozen=True)
class BigramConfig:
    vocab_size: int = 0  # bound from the data
# --8<-- [end:config]


# --8<-- [start:model]
@register("bigram", chapter="00-setup")
class Bigram(nn.Module):
    """Bigram table — a zero-layer transformer (Elhage et al. 2021): embedding straight into unembedding.

    logits[b, t] = W[idx[b, t]], with W a learned V×V table: row i holds the unnormalised
    log-probabilities of the character that follows character i. Trained by cross-entropy it converges
    to the smoothed count table log P(next | current) — the baseline every later rung must beat.
    """

    Config = BigramConfig

    def __init__(self, config: BigramConfig):
        super().__init__()
        require_positive(config, "vocab_size")
        self.config = config
        self.context_length = 1  # logits at t see idx[:, t] only
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)  # row = current char, column = next char
        nn.init.zeros_(self.table.weight)  # start at the uniform distribution

    # --8<-- [start:forward]
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table(idx)  # (B, T) -> (B, T, vocab_size)
    # --8<-- [end:forward]

    presets = {
        # A table has nothing to regularise towards zero, so no weight decay: decay would pull the
        # log-probabilities towards uniform and cost likelihood. A high lr suits a one-layer lookup.
        "quick": {"optim": {"lr": 0.1, "weight_decay": 0.0, "warmup_steps": 10}, "trainer": {"max_steps": 150, "val_every": 50}},
        "book": {
            "data": {"batch_size": 64, "block_size": 128},
            "optim": {"lr": 0.1, "weight_decay": 0.0, "warmup_steps": 50, "min_lr_ratio": 0.01},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
    }
# --8<-- [end:model]
