"""Sampling text from any rung: temperature, top-k, nucleus (top-p), a seed."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from zoo.errors import ZooError


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Logits (V,) -> logits with the excluded tokens at -inf, scaled by 1/temperature."""
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)  # (V,)
        cumulative = F.softmax(sorted_logits, dim=-1).cumsum(-1)  # (V,)
        drop = cumulative - F.softmax(sorted_logits, dim=-1) >= top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def sample(model, tokenizer, prompt: str = "\n", tokens: int = 200, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0, block_size: int | None = None) -> str:
    """Continue ``prompt`` by ``tokens`` characters; returns only the continuation."""
    if temperature <= 0:
        raise ZooError(f"--temperature must be > 0 (got {temperature})")
    if top_k is not None and top_k < 1:
        raise ZooError(f"--top-k must be >= 1 (got {top_k})")
    if top_p is not None and not 0 < top_p <= 1:
        raise ZooError(f"--top-p must be in (0, 1] (got {top_p})")
    if tokens < 0:
        raise ZooError(f"--tokens must be >= 0 (got {tokens})")
    if not prompt:
        raise ZooError("the prompt is empty; give at least one character")
    idx = tokenizer.encode(prompt)  # (P,), raises on characters outside the vocabulary
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    stateful = getattr(model, "stateful", False)
    window = block_size or getattr(model, "context_length", None) or len(idx) + tokens
    out, state = [], None
    context = idx[None]  # (1, P)
    try:
        for _ in range(tokens):
            if stateful:
                logits, state = model(context, state)  # feed only what the state has not seen yet
            else:
                logits = model(context[:, -window:])  # (1, T, V)
            probs = F.softmax(filter_logits(logits[0, -1].float(), temperature, top_k, top_p), dim=-1)  # (V,)
            next_id = torch.multinomial(probs, 1, generator=generator)  # (1,)
            out.append(int(next_id))
            context = next_id[None] if stateful else torch.cat([context, next_id[None]], dim=1)
    finally:
        model.train(was_training)
    return tokenizer.decode(out)
