"""Causality, checked exactly: logits at position t may depend on tokens <= t only (DESIGN.md).

By perturbation: for every t, every token after t is changed, and the logits at positions <= t must
not change at all (bit for bit, not within a tolerance; NaN in the same place counts as equal). A freshly initialised model can hide a leak — a
zero-initialised output projection makes every attention block the identity at step 0 — so
``causality_leak`` also checks a copy whose parameters are jittered with noise; stateful rungs are
checked after a first chunk has set their state as well. ``zoo train`` runs it before the first step
(a few milliseconds), ``zoo check`` and the conformance suite through zoo.conformance.
"""

from __future__ import annotations

import copy

import torch

T = 16  # the window checked: long enough for any off-by-k leak a rung is likely to have


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equal, counting NaN as equal to NaN (a jittered log-table can produce NaN: that is not a leak)."""
    return a.shape == b.shape and torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True)


def logits_of(model, idx, state=None):
    if getattr(model, "stateful", False):
        return model(idx, state)[0]
    return model(idx)


def random_idx(seed: int = 0, b: int = 2, t: int = T, vocab_size: int = 11) -> torch.Tensor:
    return torch.randint(0, vocab_size, (b, t), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def first_leak(model, idx: torch.Tensor, vocab_size: int, state=None) -> int | None:
    """The first position t whose logits change when a token after t changes (None: causal)."""
    base = logits_of(model, idx, state)  # (B, T, V)
    g = torch.Generator().manual_seed(1)
    for t in range(idx.shape[1] - 1):
        changed = idx.clone()
        shift = 1 + torch.randint(0, vocab_size - 1, changed[:, t + 1:].shape, generator=g)
        changed[:, t + 1:] = (changed[:, t + 1:] + shift) % vocab_size  # every later token is different
        if not _same(logits_of(model, changed, state)[:, : t + 1], base[:, : t + 1]):
            return t
    return None


@torch.no_grad()
def causality_leak(model, vocab_size: int, block_size: int, seed: int = 0) -> str | None:
    """One line describing how ``model`` sees the future, or None if it does not.

    Checked on the model as it is and on a copy with every parameter jittered (a leak through a branch
    that starts at zero shows only then); a stateful model also after a first chunk has set its state."""
    if vocab_size < 2:
        return None  # one character: there is no other token to change the future to
    was_training = model.training
    model.eval()
    try:
        t = min(block_size, T) if block_size else T
        idx = random_idx(seed, b=2, t=max(2, t), vocab_size=vocab_size)  # two sequences, as the suite always checked
        jittered = copy.deepcopy(model)
        g = torch.Generator().manual_seed(seed)
        for p in jittered.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) * (0.1 + p.detach().abs().mean()))
        for which, m in (("", model), (" (with its weights perturbed)", jittered)):
            leak = first_leak(m, idx, vocab_size)
            if leak is not None:
                return f"logits at position {leak} change when a later token changes{which}"
            if getattr(m, "stateful", False):
                _, state = m(random_idx(seed + 1, b=idx.shape[0], t=idx.shape[1], vocab_size=vocab_size), None)
                leak = first_leak(m, idx, vocab_size, state)
                if leak is not None:
                    return f"after a carried state, logits at position {leak} change when a later token changes{which}"
        return None
    finally:
        model.train(was_training)
