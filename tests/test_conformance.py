"""The rung conformance suite: every registered rung — zoo's own and any installed through the
``zoo.rungs`` entry point — must satisfy the contract in DESIGN.md.

The checks live in ``zoo.conformance``, so ``zoo check RUNG`` (what a rung author runs) and this suite
(what CI runs) are the same code. One rung here: ``pytest tests/test_conformance.py -k "[gpt-"``.
"""

import pytest
import torch

from zoo import registry
from zoo.causality import causality_leak
from zoo.conformance import CHECKS, Skip


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", registry.names())
def test_conformance(name, check):
    try:
        CHECKS[check](name)
    except Skip as e:
        pytest.skip(str(e))


class Peeks(torch.nn.Module):
    """Not causal: position t adds an embedding of token t + 1 (a plausible off-by-one)."""

    def __init__(self, vocab_size=11):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab_size, vocab_size)
        self.context_length = 8

    def forward(self, idx):
        ahead = torch.cat([idx[:, 1:], idx[:, -1:]], dim=1)  # (B, T): the next token
        return self.emb(idx) + self.emb(ahead)


class HiddenPeek(Peeks):
    """The same leak behind a branch initialised at zero, as the modern recipe initialises residual
    outputs: invisible at step 0, there after the first update."""

    def __init__(self, vocab_size=11):
        super().__init__(vocab_size)
        self.gate = torch.nn.Parameter(torch.zeros(()))

    def forward(self, idx):
        ahead = torch.cat([idx[:, 1:], idx[:, -1:]], dim=1)  # (B, T)
        return self.emb(idx) + self.gate * self.emb(ahead)


def test_causality_check_names_the_leak_even_behind_a_zero_branch():
    assert "position 0" in causality_leak(Peeks(), 11, 8)
    leak = causality_leak(HiddenPeek(), 11, 8)
    assert leak is not None and "perturbed" in leak
    model = HiddenPeek()
    before = [p.clone() for p in model.parameters()]
    causality_leak(model, 11, 8)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the model itself is untouched


def test_no_installed_plug_in_is_broken():
    """A plug-in that fails to load is reported (zoo list) instead of taking the CLI down; CI must see it."""
    assert registry.broken() == {}
