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


def default_prompt(tokenizer) -> str:
    """The prompt when none is given: a newline (start a fresh line) if the vocabulary has one, else its
    first character; a synthetic corpus such as copy:D has no newline."""
    return "\n" if "\n" in tokenizer.stoi else tokenizer.vocab[0]


def sample(model, tokenizer, prompt: str | None = None, tokens: int = 200, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0, block_size: int | None = None) -> str:
    """Continue ``prompt`` (default: ``default_prompt``) by ``tokens`` characters; returns only the continuation."""
    return "".join(generate(model, tokenizer, prompt, tokens, temperature, top_k, top_p, seed, block_size))


def generate(model, tokenizer, prompt: str | None = None, tokens: int = 200, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0, block_size: int | None = None):
    """The characters of ``sample``'s continuation, yielded one at a time as they are drawn (to stream them).

    Each step costs the same however long the text already is: a windowed rung is fed only the last
    ``block_size`` (else ``context_length``) tokens, kept in a buffer of that length, and a stateful rung
    only the token its state has not seen. The arguments are checked here, before the first character.
    """
    if temperature <= 0:
        raise ZooError(f"--temperature must be > 0 (got {temperature})")
    if top_k is not None and top_k < 1:
        raise ZooError(f"--top-k must be >= 1 (got {top_k})")
    if top_p is not None and not 0 < top_p <= 1:
        raise ZooError(f"--top-p must be in (0, 1] (got {top_p})")
    if tokens < 0:
        raise ZooError(f"--tokens must be >= 0 (got {tokens})")
    prompt = default_prompt(tokenizer) if prompt is None else prompt
    if not prompt:
        raise ZooError("the prompt is empty; give at least one character")
    idx = tokenizer.encode(prompt)  # (P,), raises on characters outside the vocabulary
    return _draw(model, tokenizer, idx, tokens, temperature, top_k, top_p, seed, block_size)


@torch.no_grad()  # on a generator: gradients are off while it runs, not in the caller between characters
def _draw(model, tokenizer, idx, tokens, temperature, top_k, top_p, seed, block_size):
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    stateful = getattr(model, "stateful", False)
    window = block_size or getattr(model, "context_length", None) or len(idx) + tokens
    state = None
    context = idx[None] if stateful else idx[None, -window:]  # (1, P): what the model is fed next
    try:
        for _ in range(tokens):
            if stateful:
                logits, state = model(context, state)  # feed only what the state has not seen yet
            else:
                logits = model(context)  # (1, T, V), T <= window
            probs = F.softmax(filter_logits(logits[0, -1].float(), temperature, top_k, top_p), dim=-1)  # (V,)
            next_id = torch.multinomial(probs, 1, generator=generator)  # (1,)
            yield tokenizer.vocab[int(next_id)]
            if stateful:
                context = next_id[None]  # (1, 1)
            else:  # slide the window: drop the oldest token once it is full, never keep the whole history
                context = torch.cat([context[:, max(0, context.shape[1] - window + 1):], next_id[None]], dim=1)  # (1, T)
    finally:
        model.train(was_training)
