"""Template for a new rung: copy this file, rename the class, register it, fill in forward.

A rung is an ``nn.Module`` with
  * ``Config``: a frozen dataclass of its hyperparameters; ``vocab_size`` (and ``block_size`` if it
    has one) are bound from the data, so give them placeholder defaults;
  * ``context_length``: set in ``__init__``, how many tokens (the current one included) the logits at
    t may depend on, ``None`` for unbounded;
  * ``forward(idx) -> logits``: idx Long[B, T] -> logits Float[B, T, vocab_size] for EVERY position,
    where position t depends on idx[:, :t+1] only. No loss inside the model;
  * ``presets``: ``{"quick": {...}, "book": {...}}``, each a dict of overrides for the sections
    ``model``, ``data``, ``optim`` and ``trainer`` (see ``zoo/config.py`` for every field).

Every rung file reads top-down in one order: this docstring (the paper and its equations), the
Config, the model class (``__init__``, then ``forward`` last among its methods — followed only by
``unembed``, its read-out, in a rung with a residual stream (``zoo.hooks``) — then ``presets``), then the
parts the model is built from.

Register it with ``@register("my-rung", chapter="...")`` from ``zoo.registry``. Inside zoo, a module in
``zoo/models/`` is picked up automatically; in your own package, add an entry point in the group
``zoo.rungs`` (``my-rung = "my_package.my_module"``). ``zoo check my-rung`` then runs zoo's conformance
checks on it, the same ones zoo's test suite runs on every rung.
"""

from dataclasses import dataclass

import torch
from torch import nn

from zoo.nn import require_positive


@dataclass(frozen=True)
class TemplateConfig:
    vocab_size: int = 0  # bound from the data
    block_size: int = 0  # bound from the data
    n_embd: int = 32  # width of the token embedding


class Template(nn.Module):
    """Template rung (cite its paper here): one line on what it adds over the rung below.

    Here: a causal running mean of embeddings, h_t = (1/(t+1)) Σ_{s≤t} E[idx_s], logits = W h_t.
    """

    Config = TemplateConfig

    def __init__(self, config: TemplateConfig):
        super().__init__()
        require_positive(config, "vocab_size", "n_embd")  # a ValueError zoo reports in one line
        self.config = config
        self.context_length = None  # a running mean sees the whole prefix
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        x = self.wte(idx)  # (B, T, n_embd)
        counts = torch.arange(1, T + 1, device=idx.device).view(1, T, 1)  # (1, T, 1)
        h = x.cumsum(dim=1) / counts  # (B, T, n_embd): mean over positions <= t
        return self.lm_head(h)  # (B, T, vocab_size)

    presets = {
        "quick": {"optim": {"lr": 1e-2}, "trainer": {"max_steps": 100}},
        "book": {"trainer": {"max_steps": 2000}},
    }
