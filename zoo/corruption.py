"""Worse training data on purpose: a share of the training split replaced, the val and test splits untouched.

The training split is cut into spans of ``span`` characters; a share ``fraction`` of them, chosen by the
run's seed, is replaced by one of three kinds of noise:

* ``random``: characters drawn uniformly from the vocabulary — pure noise, nothing to learn;
* ``corpus:NAME``: consecutive text of another corpus (its characters outside this vocabulary dropped) —
  real language, but not the one the model is scored on;
* ``duplicates``: copies of a few (``PASSAGES``) passages of the training split itself, repeated over and
  over — text the model has seen, worth nothing the second time.

The same (text, vocabulary, kind, fraction, span, seed) always gives the same training split, so a
resumed run trains on exactly the data the uninterrupted run did. ``corrupt`` returns the new split and a
report of what was replaced, which the run records in metrics.json beside the config that asked for it.
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.errors import ZooError

KINDS = ("none", "random", "duplicates", "corpus:NAME")
PASSAGES = 8  # distinct passages behind the duplicates


def check(kind: str, fraction: float, span: int) -> None:
    """One line for a noise setting that cannot work (before anything is loaded or written)."""
    if kind not in ("none", "random", "duplicates") and not kind.startswith("corpus:"):
        raise ZooError(f"unknown --data.noise {kind!r} (valid: {', '.join(KINDS)})")
    if kind == "corpus:":
        raise ZooError("--data.noise corpus:NAME needs a corpus name, e.g. corpus:pydoc")
    if not 0.0 <= fraction <= 1.0:
        raise ZooError(f"--data.noise_fraction must be in [0, 1] (got {fraction})")
    if span < 0:
        raise ZooError(f"--data.noise_span must be >= 0 (0: the block size; got {span})")
    if kind != "none" and fraction == 0.0:
        raise ZooError(f"--data.noise {kind} replaces nothing with --data.noise_fraction 0; give a fraction in (0, 1]")


def corrupt(train: torch.Tensor, vocab: str, kind: str, fraction: float, span: int, seed: int,
            other_text: str | None = None) -> tuple[torch.Tensor, dict]:
    """(the training split with round(fraction · spans) spans replaced, a report). ``train`` is left as it is;
    ``other_text`` is the text of the corpus ``corpus:NAME`` names (``zoo.data`` loads it)."""
    check(kind, fraction, span)
    if kind == "none":
        return train, {"kind": "none"}
    n = len(train) // span  # whole spans; a ragged tail is never replaced
    if n < 1:
        raise ZooError(f"the training split ({len(train)} characters) is shorter than one --data.noise_span of {span}")
    # --8<-- [start:replace]
    rng = np.random.default_rng([seed, 0xDA7A])  # its own stream: the batches' generators never see it
    chosen = np.sort(rng.choice(n, size=round(fraction * n), replace=False))  # (m,) the spans replaced
    out = train.clone()
    spans = out[: n * span].view(n, span)  # (n, span), a view: writing it writes out
    m = len(chosen)
    if kind == "random":
        spans[chosen] = torch.from_numpy(rng.integers(0, len(vocab), size=(m, span)))
    elif kind == "duplicates":
        starts = rng.integers(0, len(train) - span + 1, size=PASSAGES)
        passages = torch.stack([train[s:s + span] for s in starts])  # (PASSAGES, span) from the clean split
        spans[chosen] = passages[torch.arange(m) % PASSAGES]
    else:
        if other_text is None:
            raise ZooError(f"--data.noise {kind}: the other corpus's text was not given")
        other = _other_text(other_text, vocab)
        if len(other) < span:
            raise ZooError(f"{kind}: after dropping characters outside this vocabulary it has {len(other)} characters, "
                           f"fewer than one span of {span}")
        starts = rng.integers(0, len(other) - span + 1, size=m)
        spans[chosen] = torch.stack([other[s:s + span] for s in starts]) if m else spans[chosen]
    # --8<-- [end:replace]
    changed = int((out != train).sum())
    return out, {"kind": kind, "fraction": fraction, "span": span, "spans": n, "replaced_spans": m,
                 "replaced_share": m / n, "replaced_characters": m * span, "changed_characters": changed,
                 "changed_share": changed / len(train)}


def _other_text(text: str, vocab: str) -> torch.Tensor:
    """Another corpus's text encoded in this vocabulary, its other characters dropped."""
    index = {ch: i for i, ch in enumerate(vocab)}
    return torch.tensor([index[ch] for ch in text if ch in index], dtype=torch.long)
