"""Attention maps: what every head of every layer of a trained rung attends to, on a text you give it.

Works on any rung built from ``zoo.nn.MultiHeadAttention`` (the set transformer, the Vaswani
transformer, and users' rungs that use it): a forward hook on each attention module recomputes
softmax(Q Kᵀ / √d_k + M) from the module's own input with the module's own weights
(``MultiHeadAttention.attention_weights``), so the maps are exactly those the forward pass used, and
the hooks are removed again, leaving the model as it was.
"""

from __future__ import annotations

import torch

from zoo.nn import MultiHeadAttention


@torch.no_grad()
def attention_maps(model: torch.nn.Module, idx: torch.Tensor) -> list[torch.Tensor]:
    """Float[B, h, T, S] per attention module, in the order the forward pass runs them."""
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no zoo.nn.MultiHeadAttention module to read maps from")
    maps = []

    def capture(module, args, kwargs, output):
        x = args[0]
        y = args[1] if len(args) > 1 else kwargs.get("y")
        causal = args[2] if len(args) > 2 else kwargs.get("causal", True)
        maps.append(module.attention_weights(x, y, causal))

    hooks = [m.register_forward_hook(capture, with_kwargs=True) for m in modules]
    was_training = model.training
    model.eval()
    try:
        model(idx)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return maps


def validation_probe(corpus: str, length: int = 64) -> str:
    """The text the book's attention figures read: the first ``length`` characters of the validation split."""
    from zoo.data import load_corpus, split_bounds

    text = load_corpus(corpus).text
    start, end = split_bounds(len(text))["val"]
    return text[start:min(end, start + length)]


def rounded(matrix: torch.Tensor) -> list[list[float]]:
    """A (T, S) map as nested lists with 4 decimals, for results.json."""
    return [[round(v, 4) for v in row] for row in matrix.tolist()]


def first_and_last_layer(run_dir, corpus: str, length: int = 64) -> dict:
    """A trained run's attention on the validation probe, averaged over heads, in its first and last
    layer: {"text", "layers": {"1": T×T, "L": T×T}} — what the book's attention figures draw."""
    from zoo.runs import load_run

    run = load_run(run_dir)
    text = validation_probe(corpus, length)
    maps = attention_maps(run.model, run.tokenizer.encode(text)[None])  # one (1, h, T, T) per layer
    averaged = {str(i + 1): maps[i][0].mean(0) for i in sorted({0, len(maps) - 1})}  # (T, T) each: mean over heads
    return {"text": text, "layers": {layer: rounded(m) for layer, m in averaged.items()},
            "summary": {layer: summarise_map(m, text) for layer, m in averaged.items()}}


def summarise_map(weights: torch.Tensor, text: str, near: int = 3, skip: int = 8) -> dict:
    """Two numbers that describe a (T, T) head-averaged attention map on ``text``: the share of each row's
    weight on the current character and the ``near`` before it (averaged over the rows t >= ``skip``, whose
    prefix is long enough for the share to mean something), and the key the later half of the rows
    attend to most, with the character there."""
    T = weights.shape[0]
    rows = range(skip, T)
    local = sum(weights[t, max(0, t - near):t + 1].sum().item() for t in rows) / len(rows)
    received = weights[T // 2:].mean(0)  # (T,): what the second half of the rows give each key, on average
    top = int(received.argmax())
    return {"near_share": local, "near": near, "top_key": {"position": top, "char": text[top], "weight": received[top].item()}}

