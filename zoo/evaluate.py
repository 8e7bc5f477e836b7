"""The scoring protocol every rung is measured by.

Every target token of a split is scored exactly once, by the model's own forward pass:

* windowed rungs: windows of W = block_size input tokens slide with stride W // 2. The first window
  scores all of its positions; each later window scores only the positions past the end of the one
  before, so every scored token (after the first window) sees at least W - W // 2 tokens of context;
* stateful rungs stream the whole split in chunks of W, carrying the state, so their context is unbounded;
* count-based rungs return log-probabilities from forward and go through the same windows.

Cross-entropies are summed in float64. The result is nats per token and bits per character
(bpc = nats / ln 2, since characters are the tokens).

Options that change the protocol, each explicit: ``window`` cuts the context (windows of that many
tokens with the same half-window stride, and stateful rungs restart from a fresh state in every window);
``predictions`` returns the whole predictive distribution of every target instead of a sum, for mixing
two runs (zoo.mixture); ``nanogpt_estimate`` is nanoGPT's estimator, not this protocol.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch.nn import functional as F


def windows(n_tokens: int, block_size: int) -> list[tuple[int, int, int]]:
    """(start, end, first_scored) triples: inputs tokens[start:end] predict targets start+1 .. end,
    of which targets first_scored+1 .. end are scored. Every target 1 .. n_tokens-1 appears once."""
    stride = max(1, block_size // 2)
    out, scored = [], 0  # targets 1..scored are done
    while scored < n_tokens - 1:
        end = min(n_tokens - 1, block_size if scored == 0 else scored + stride)
        start = max(0, end - block_size)
        out.append((start, end, scored))
        scored = end
    return out


def _result(nats_sum: float, tokens: int) -> dict:
    nats = nats_sum / tokens
    return {"tokens": tokens, "nats": nats, "bpc": nats / math.log(2)}


def model_device(model: torch.nn.Module) -> torch.device:
    return next(iter(model.parameters()), next(iter(model.buffers()), torch.empty(0))).device


def check_window(model: torch.nn.Module, block_size: int, window: int | None) -> None:
    """A context cut must be a positive length no longer than the windows a windowed rung accepts."""
    if window is None:
        return
    if window < 1:
        raise ValueError(f"the evaluation window must be >= 1 token, got {window}")
    counted = getattr(model, "trainable", True) is False  # an n-gram takes windows of any length
    if not getattr(model, "stateful", False) and not counted and window > block_size:
        raise ValueError(f"the evaluation window ({window}) is longer than the run's block_size ({block_size}), "
                         "the longest window this model accepts")


@contextmanager
def eval_mode(model: torch.nn.Module):
    """The model in eval mode for the block, its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def _scoring(model: torch.nn.Module, tokens: torch.Tensor, block_size: int, window: int | None):
    """Check the inputs, put the model in eval mode (restored after), yield the tokens on its device."""
    if len(tokens) < 2:
        raise ValueError("need at least two tokens to score one")
    check_window(model, block_size, window)
    with eval_mode(model):
        yield tokens.to(model_device(model))


@torch.no_grad()
def score(model: torch.nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int = 64, window: int | None = None) -> dict:
    """{"tokens", "nats", "bpc"} of ``model`` on the token sequence ``tokens`` (the protocol above).

    ``window`` (default: the protocol's) scores with windows of that many tokens instead of block_size:
    every target then sees at most ``window`` tokens of context (and at least window - window // 2 after
    the first window); a stateful rung restarts from a fresh state in each window."""
    stateful = getattr(model, "stateful", False)
    with _scoring(model, tokens, block_size, window) as tokens:
        if window is not None:
            forward = (lambda x: model(x, None)[0]) if stateful else model
            return _score_windows(forward, tokens, window, batch_size)
        if stateful:
            return _score_stream(model, tokens, block_size)
        return _score_windows(model, tokens, block_size, batch_size)


@torch.no_grad()
def predictions(model: torch.nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int = 64,
                window: int | None = None, forward=None) -> torch.Tensor:
    """log P(target | its context) for every character, every target 1 .. n-1 of ``tokens``, in float64:
    (n,) -> (n - 1, V). The same windows (or stream) as ``score``, so
    ``-predictions(...).gather(1, tokens[1:, None]).mean()`` is ``score``'s nats, and each row sums to one
    in probability. ``forward`` (default: the model's log-softmax) maps a window (B, T) to (B, T, K)
    instead, for per-position features such as an n-gram's context counts."""
    stateful = getattr(model, "stateful", False)
    with _scoring(model, tokens, block_size, window) as tokens:
        if stateful and window is None and forward is None:
            return _stream_rows(model, tokens, block_size)
        if forward is None:
            forward = (lambda x: model(x, None)[0].double().log_softmax(-1)) if stateful else (lambda x: model(x).double().log_softmax(-1))
        return _window_rows(forward, tokens, window or block_size, batch_size)


def _stream_chunks(tokens, block_size):
    """The stream in chunks of block_size: (x, y), inputs (1, T) and their targets (1, T), T <= block_size."""
    for start in range(0, len(tokens) - 1, block_size):
        y = tokens[start + 1 : start + block_size + 1][None]  # (1, T)
        yield tokens[start : start + y.shape[1]][None], y  # (1, T), (1, T)


def window_batches(tokens, block_size, batch_size):
    """The protocol's windows in batches of one length: (x, target, keep). x (B, T) are the inputs,
    target (B, T) the index of the token each position predicts, keep (B, T) the positions scored (those
    past what the window before already scored), so every target 1 .. n-1 is kept exactly once."""
    by_length: dict[int, list[tuple[int, int, int]]] = {}
    for w in windows(len(tokens), block_size):
        by_length.setdefault(w[1] - w[0], []).append(w)
    for length, group in by_length.items():
        offsets = torch.arange(length, device=tokens.device)  # (T,)
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            starts = torch.tensor([s for s, _, _ in chunk], device=tokens.device)  # (B,)
            target = starts[:, None] + offsets + 1  # (B, T): position j of window (start, end, scored) predicts start+j+1
            keep = target > torch.tensor([f for _, _, f in chunk], device=tokens.device)[:, None]  # (B, T)
            yield tokens[target - 1], target, keep


def _stream_rows(model, tokens, block_size) -> torch.Tensor:
    rows, state = [], None
    for x, _ in _stream_chunks(tokens, block_size):
        logits, state = model(x, state)  # (1, T, V)
        rows.append(logits[0].double().log_softmax(-1).cpu())  # (T, V)
    return torch.cat(rows)  # (n-1, V)


def _window_rows(forward, tokens, block_size, batch_size) -> torch.Tensor:
    out = None
    for x, target, keep in window_batches(tokens, block_size, batch_size):
        values = forward(x)  # (B, T, K)
        if out is None:
            out = torch.empty(len(tokens) - 1, *values.shape[2:], dtype=values.dtype)  # (n-1, K)
        out[(target[keep] - 1).cpu()] = values[keep].cpu()
    return out


def _score_stream(model, tokens, block_size) -> dict:
    nats, state = torch.zeros((), dtype=torch.float64), None
    for x, y in _stream_chunks(tokens, block_size):
        logits, state = model(x, state)  # (1, T, V)
        nats += F.cross_entropy(logits[0].double(), y[0], reduction="sum").cpu()
    return _result(nats.item(), len(tokens) - 1)


def _score_windows(model, tokens, block_size, batch_size) -> dict:
    nats = torch.zeros((), dtype=torch.float64)
    for x, target, keep in window_batches(tokens, block_size, batch_size):
        logits = model(x)  # (B, T, V)
        nll = F.cross_entropy(logits.double().flatten(0, 1), tokens[target].flatten(), reduction="none")  # (B*T,)
        nats += nll[keep.flatten()].sum().cpu()
    return _result(nats.item(), len(tokens) - 1)


@torch.no_grad()
def nanogpt_estimate(model: torch.nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int,
                     batches: int = 200, seed: int = 0) -> dict:
    """nanoGPT's ``estimate_loss`` — NOT this book's protocol — so a run can be compared with its numbers.

    nanoGPT draws ``batches`` batches of ``batch_size`` windows of ``block_size`` tokens at random starts
    (uniform over 0 .. n - block_size - 1, with replacement) and reports the mean over batches of the
    mean cross-entropy over *every* position of every window. Positions near a window's start see little
    context and windows overlap at random, so it is an estimate with its own noise and bias: on the same
    model it usually reads higher than the protocol, whose every scored target sees at least half a window.
    Stateful rungs start every window from a fresh state, as nanoGPT's models have none.
    """
    if batches < 1 or batch_size < 1:
        raise ValueError("batches and batch_size must be >= 1")
    if len(tokens) < block_size + 1:
        raise ValueError(f"need more than block_size = {block_size} tokens, got {len(tokens)}")
    device = model_device(model)
    tokens = tokens.to(device)
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.arange(block_size, device=device)  # (T,)
    losses = torch.zeros(batches, dtype=torch.float64)  # (batches,)
    with eval_mode(model):
        for k in range(batches):
            starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator).to(device)  # (B,)
            x = tokens[starts[:, None] + offsets]  # (B, T)
            y = tokens[starts[:, None] + offsets + 1]  # (B, T)
            logits = model(x, None)[0] if getattr(model, "stateful", False) else model(x)  # (B, T, V)
            losses[k] = F.cross_entropy(logits.double().flatten(0, 1), y.flatten()).cpu()
    nats = losses.mean().item()
    return {"estimator": "nanogpt", "batches": batches, "batch_size": batch_size, "block_size": block_size, "seed": seed,
            "tokens": batches * batch_size * block_size, "nats": nats, "bpc": nats / math.log(2)}
