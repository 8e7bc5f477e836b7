"""Mixing two runs' predictions: a network interpolated with counts, as Bengio et al. (2003) did.

Bengio et al.'s best perplexities came from mixing their network's conditional probabilities with those
of a smoothed trigram. Here two runs a and b (any rungs over the same vocabulary) are mixed per target:

    p(w | h) = λ p_a(w | h) + (1 − λ) p_b(w | h),        0 ≤ λ ≤ 1,

a proper distribution whenever p_a and p_b are. λ is fitted on one split (val) to maximise the
log-likelihood L(λ) = Σ_t log(λ a_t + (1 − λ) b_t), with a_t, b_t the probabilities the two runs give
target t. L is concave, L'(λ) = Σ_t (a_t − b_t) / (λ a_t + (1 − λ) b_t) is decreasing, so the optimum is
0, 1, or the one root of L' in between, found here by bisection to machine precision.

A context-dependent weight (Jelinek & Mercer 1980's interpolation weights by the frequency class of the
context, the smoothing Bengio et al.'s trigram used): when b is an n-gram, each target's bucket is
how often its context, the N − 1 characters before it, was seen in training, grouped by powers of two
(0, 1, 2–3, 4–7, …), and each bucket gets its own λ_k, fitted the same way on its own targets. Rare
contexts, where the counts know little, can then lean on the network and frequent ones on the counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BISECTIONS = 60  # halves [0, 1] to below float64 resolution


# --8<-- [start:fit]
def fit_weight(a: torch.Tensor, b: torch.Tensor) -> float:
    """The λ in [0, 1] that maximises Σ log(λ a + (1 − λ) b), for the targets' probabilities a, b (N,)."""
    a, b = a.double(), b.double()
    if len(a) == 0:
        return 0.5  # nothing to fit: weigh both alike

    def slope(lam: float) -> float:  # L'(λ), decreasing in λ
        return ((a - b) / (lam * a + (1 - lam) * b)).sum().item()

    if slope(0.0) <= 0:
        return 0.0
    if slope(1.0) >= 0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slope(mid) > 0 else (lo, mid)
    return (lo + hi) / 2
# --8<-- [end:fit]


def fit_simplex(p: torch.Tensor, tol: float = 1e-12, max_iter: int = 100_000) -> torch.Tensor:
    """Weights w (K,) on the simplex maximising Σ_t log Σ_k w_k p_k,t, for K parts' target probabilities p (K, N).

    EM for mixture weights (Dempster, Laird & Rubin 1977): the responsibilities r_k,t = w_k p_k,t / Σ_j w_j p_j,t,
    then w_k ← mean_t r_k,t. Each step raises the (concave) likelihood, so it climbs to the maximum."""
    p = p.double()
    K = p.shape[0]
    w = torch.full((K,), 1.0 / K, dtype=torch.float64)  # (K,)
    for _ in range(max_iter):
        r = w[:, None] * p  # (K, N)
        new = (r / r.sum(0, keepdim=True)).mean(1)  # (K,)
        if (new - w).abs().max().item() < tol:
            return new
        w = new
    return w


def count_buckets(counts: torch.Tensor) -> torch.Tensor:
    """Context counts c (N,) -> buckets: 0 for c = 0, else 1 + floor(log2 c)  (1, 2–3, 4–7, ...)."""
    counts = counts.long()
    bucket = torch.zeros_like(counts)
    seen = counts > 0
    bucket[seen] = 1 + torch.floor(torch.log2(counts[seen].double())).long()
    return bucket


def bucket_label(k: int) -> str:
    """The range of context counts bucket k holds, for tables: "0", "1", "2–3", "4–7", ..."""
    if k == 0:
        return "0"
    lo, hi = 2 ** (k - 1), 2**k - 1
    return str(lo) if lo == hi else f"{lo}–{hi}"


@dataclass(frozen=True)
class Weights:
    """λ on run a: one for every target, or one per context-count bucket (``by_bucket``)."""

    weight: float | None = None
    by_bucket: tuple[float, ...] | None = None

    def per_target(self, buckets: torch.Tensor | None, n: int) -> torch.Tensor:
        """λ_t for each of n targets (N,)."""
        if self.by_bucket is None:
            return torch.full((n,), float(self.weight), dtype=torch.float64)
        table = torch.tensor(self.by_bucket, dtype=torch.float64)  # (K,)
        # a bucket never seen while fitting (a context more frequent than any in val) takes the last one's λ
        return table[buckets.clamp(max=len(table) - 1)]

    def describe(self) -> dict:
        if self.by_bucket is None:
            return {"weight": self.weight}
        return {"by_context_count": {bucket_label(k): w for k, w in enumerate(self.by_bucket)}}


def fit(a: torch.Tensor, b: torch.Tensor, buckets: torch.Tensor | None = None) -> Weights:
    """Fit one λ (``buckets`` None) or one per bucket, on the targets' probabilities a, b (N,)."""
    if buckets is None:
        return Weights(weight=fit_weight(a, b))
    K = int(buckets.max().item()) + 1 if len(buckets) else 1
    return Weights(by_bucket=tuple(fit_weight(a[buckets == k], b[buckets == k]) for k in range(K)))


# --8<-- [start:mix]
def mix(log_a: torch.Tensor, log_b: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """log(λ p_a + (1 − λ) p_b) from log-probabilities (N, V) each and λ (N,) or a float; float64."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    if lam.dim() == 1:
        lam = lam[:, None]  # (N, 1)
    with torch.no_grad():
        # log 0 = -inf where λ is 0 or 1: logaddexp then returns the other side exactly
        return torch.logaddexp(torch.log(lam) + log_a.double(), torch.log1p(-lam) + log_b.double())  # (N, V)
# --8<-- [end:mix]


def mix_simplex(logs: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """log Σ_k w_k p_k from K parts' log-probabilities (N, V) each and weights w (K,) on the simplex; float64."""
    return torch.logsumexp(torch.stack([torch.log(w[k]) + log.double() for k, log in enumerate(logs)]), dim=0)  # (N, V)


def score_rows(log_p: torch.Tensor, targets: torch.Tensor) -> dict:
    """{"tokens", "nats", "bpc"} of log-probability rows (N, V) at their targets (N,): the protocol's sums."""
    nats = -log_p.double().gather(1, targets[:, None].to(log_p.device)).sum().item() / len(targets)
    return {"tokens": len(targets), "nats": nats, "bpc": nats / math.log(2)}


class Mixture(torch.nn.Module):
    """Two windowed runs as one model for sampling: forward returns log(λ p_a + (1 − λ) p_b) as logits.

    Causal because both parts are, and it sees as far back as the farther-sighted part. Feed it windows no
    longer than the shorter block size of its trained parts (an n-gram takes any length): zoo sample does."""

    def __init__(self, a: torch.nn.Module, b: torch.nn.Module, weight: float):
        super().__init__()
        self.a, self.b, self.weight = a, b, float(weight)
        lengths = [m.context_length for m in (a, b) if m.context_length is not None]
        self.context_length = max(lengths) if lengths else None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        log_a = self.a(idx).double().log_softmax(-1)  # (B, T, V)
        log_b = self.b(idx).double().log_softmax(-1)  # (B, T, V)
        return mix(log_a, log_b, self.weight).float()  # (B, T, V)


WEIGHT_CHOICES = ("auto", "by-context")


def parse_weight(text: str) -> str | float:
    """--weight: "auto" (one λ fitted on val), "by-context" (one per context-count bucket), or λ in [0, 1]."""
    if text in WEIGHT_CHOICES:
        return text
    try:
        lam = float(text)
    except ValueError:
        raise ValueError(f"--weight must be auto, by-context or a number in [0, 1], got {text!r}") from None
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"--weight must be in [0, 1] (the share of the first run), got {lam}")
    return lam


def check_pair(a, b) -> None:
    """Two runs can be mixed when they predict over the same characters in the same order."""
    if list(a.tokenizer.vocab) != list(b.tokenizer.vocab):
        raise ValueError(f"{a.dir} and {b.dir} have different vocabularies ({a.tokenizer.vocab_size} and "
                         f"{b.tokenizer.vocab_size} characters); only runs over the same characters can be mixed")


def run_predictions(run, tokens: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """A run's log-probabilities (n-1, V) of every target of ``tokens``, through the evaluation protocol."""
    from zoo.evaluate import predictions

    return predictions(run.model, tokens, run.config.data.block_size, window=window)


def context_buckets(run, tokens: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """The count bucket (n-1,) of every target's context under an n-gram run (one with context_counts)."""
    from zoo.evaluate import predictions

    counts = getattr(run.model, "context_counts", None)
    if counts is None:
        raise ValueError(f"--weight by-context needs the second run to be an n-gram (a model with context_counts); "
                         f"{run.dir} is a {run.config.rung!r} run")
    rows = predictions(run.model, tokens, run.config.data.block_size, window=window, forward=lambda x: counts(x)[..., None])
    return count_buckets(rows[:, 0])


def target_probs(log_p: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The probability (n-1,) each row of log_p (n-1, V) gives its target, the next token of ``tokens``."""
    return log_p.gather(1, tokens[1:, None])[:, 0].exp()


def _same_tokens(a: torch.Tensor | None, b: torch.Tensor) -> bool:
    return a is b or (a is not None and a.shape == b.shape and torch.equal(a, b))


def fit_runs(a, b, tokens: torch.Tensor, by_context: bool = False, window: int | None = None) -> Weights:
    """λ (or λ per context-count bucket) for run a against run b, fitted on the targets of ``tokens``."""
    check_pair(a, b)
    return fit(target_probs(run_predictions(a, tokens, window), tokens), target_probs(run_predictions(b, tokens, window), tokens),
               context_buckets(b, tokens, window) if by_context else None)


def mix_many(a, others: list, tokens: torch.Tensor, fit_tokens: torch.Tensor, window: int | None = None) -> dict:
    """Score the mixture Σ_k w_k p_k of run a and several others on ``tokens``, with the weights w (on the
    simplex) fitted on ``fit_tokens`` by EM; each part's own score on the same targets beside it."""
    parts = [a, *others]
    for other in others:
        check_pair(a, other)
    logs = [run_predictions(r, tokens, window) for r in parts]  # K × (n-1, V)
    # scored on the split it is fitted on (val): its predictions are already there
    fit_logs = logs if _same_tokens(fit_tokens, tokens) else [run_predictions(r, fit_tokens, window) for r in parts]
    w = fit_simplex(torch.stack([target_probs(log, fit_tokens) for log in fit_logs]))  # (K,) from (K, N)
    targets = tokens[1:]
    return {**score_rows(mix_simplex(logs, w), targets), "weights": {"simplex": w.tolist()},
            "parts": {str(r.dir): score_rows(log, targets) for r, log in zip(parts, logs)}}


def mix_runs(a, b, tokens: torch.Tensor, weight: str | float = "auto", fit_tokens: torch.Tensor | None = None,
             window: int | None = None) -> dict:
    """Score the mixture λ a + (1 − λ) b on ``tokens``; λ given, or fitted on ``fit_tokens`` (val).

    Returns {"tokens", "nats", "bpc", "weights": Weights.describe(), "parts": {"a": {...}, "b": {...}}}
    with each part's own score on the same targets, so a mixture can be read against both."""
    check_pair(a, b)
    targets = tokens[1:]
    log_a, log_b = run_predictions(a, tokens, window), run_predictions(b, tokens, window)  # (n-1, V) each
    buckets = context_buckets(b, tokens, window) if weight == "by-context" else None
    if isinstance(weight, float):
        weights = Weights(weight=weight)
    elif fit_tokens is None:
        raise ValueError("a fitted weight needs the tokens to fit it on")
    elif _same_tokens(fit_tokens, tokens):  # scored on the split it is fitted on: reuse the predictions
        weights = fit(target_probs(log_a, tokens), target_probs(log_b, tokens), buckets)
    else:
        weights = fit_runs(a, b, fit_tokens, by_context=weight == "by-context", window=window)
    mixed = mix(log_a, log_b, weights.per_target(buckets, len(targets)))  # (n-1, V)
    return {**score_rows(mixed, targets), "weights": weights.describe(),
            "parts": {"a": score_rows(log_a, targets), "b": score_rows(log_b, targets)}}
