"""Choosing which training windows to learn from: every window scored, the worst-scored share never drawn.

``ngram:K`` fits the counted K-gram (the ``ngram`` rung) on the training split and scores each window by
the mean loss, in nats, of its targets under that model: a window of noise, or of text unlike the rest,
scores high. ``--data.select_drop D`` removes the share D of windows with the highest scores (exactly
round(D · windows) of them; ties by position); training
then draws its windows uniformly from the rest, still as a pure function of (seed, step), so a resumed
run draws what the uninterrupted run would have. A window of duplicated text scores *low* (the counts have
seen it many times), so this rule keeps duplicates: a known limit of loss-based selection.

The per-position losses come from the K-gram run over consecutive chunks of the split (each chunk's first
characters see a shorter context), in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.errors import ZooError

RULES = ("none", "ngram:K")
CHUNK = 4096  # characters per scoring chunk


def parse(rule: str) -> int | None:
    """The K of ``ngram:K`` (None for ``none``); one line for anything else."""
    if rule == "none":
        return None
    prefix, _, order = rule.partition(":")
    if prefix != "ngram" or not order.isdigit() or not 1 <= int(order) <= 12:
        raise ZooError(f"unknown --data.select {rule!r} (valid: none, or ngram:K with K in 1..12, e.g. ngram:5)")
    return int(order)


def check(rule: str, drop: float) -> None:
    parse(rule)
    if not 0.0 <= drop < 1.0:
        raise ZooError(f"--data.select_drop must be in [0, 1) (got {drop})")
    if rule != "none" and drop == 0.0:
        raise ZooError(f"--data.select {rule} drops nothing with --data.select_drop 0; give a share in (0, 1)")


@torch.no_grad()
def position_losses(train: torch.Tensor, vocab_size: int, order: int) -> torch.Tensor:
    """−log p(x_{t+1} | x_{≤t}) under a K-gram counted on ``train`` itself, for t = 0 .. n−2, float64 (n−1,)."""
    from zoo import registry

    model = registry.build("ngram", vocab_size=vocab_size, block_size=CHUNK, order=order)
    model.fit(train)
    model.eval()
    out = torch.empty(len(train) - 1, dtype=torch.float64)  # (n-1,)
    for lo in range(0, len(train) - 1, CHUNK):
        x = train[lo:lo + CHUNK + 1]  # (≤ CHUNK+1,)
        logp = model(x[None, :-1]).double().log_softmax(-1)[0]  # (T, V)
        out[lo:lo + len(x) - 1] = -logp.gather(1, x[1:, None])[:, 0]
    return out


def select(train: torch.Tensor, vocab_size: int, rule: str, drop: float, block_size: int,
           changed: torch.Tensor | None = None) -> tuple[torch.Tensor | None, dict]:
    """(the window starts training may draw, a report); (None, {"rule": "none"}) without a rule. A window at
    start s holds inputs train[s : s+T] and targets train[s+1 : s+T+1], as ``zoo.data.window_batch`` draws."""
    check(rule, drop)
    order = parse(rule)
    if order is None:
        return None, {"rule": "none"}
    T = block_size
    # --8<-- [start:score]
    losses = position_losses(train, vocab_size, order)  # (n-1,) loss of target t+1
    sums = torch.cat([torch.zeros(1, dtype=torch.float64), losses.cumsum(0)])  # (n,)
    starts_all = torch.arange(len(train) - T)  # (W,) the starts window_batch draws from
    scores = (sums[starts_all + T] - sums[starts_all]) / T  # (W,) mean loss of each window's T targets
    # drop exactly round(drop · W) windows, the highest scores first (ties broken by position), so the share
    # asked is the share dropped even where many windows score alike
    worst = np.argsort(-scores.numpy(), kind="stable")[: round(drop * len(scores))]  # (k,)
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[torch.from_numpy(worst)] = False
    # --8<-- [end:score]
    threshold = float(scores[~keep].min()) if len(worst) else float("inf")  # the lowest score dropped
    kept = starts_all[keep]
    report = {"rule": rule, "drop": drop, "windows": len(scores), "kept": int(keep.sum()), "kept_share": float(keep.float().mean()),
              "lowest_dropped_nats": threshold, "mean_score_nats": float(scores.mean()), "kept_mean_score_nats": float(scores[keep].mean())}
    if changed is not None and bool(changed.any()):  # how much noise the selection removed
        c = torch.cat([torch.zeros(1, dtype=torch.long), changed.long().cumsum(0)])  # (n+1,)
        noisy = (c[starts_all + T + 1] - c[starts_all]) > 0  # (W,) the window's inputs or targets touch a changed character
        report.update(noisy_share_before=float(noisy.float().mean()), noisy_share_after=float(noisy[keep].float().mean()))
    return kept, report
