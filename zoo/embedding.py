"""What a trained model's embedding holds: each character embedded and read straight out, its nearest
neighbours, and how large the residual stream grows layer by layer. ``zoo embed RUN_DIR``.

* The embed → unembed read-out: character c alone, at position 0, through ``resid.0`` (the stream as the
  first block receives it: the embedding, positions added where the rung adds them) and straight into the
  model's read-out, ``unembed``: p(· | c) with every block skipped. With tied embeddings (logits = N(E_c) Eᵀ)
  the score of c itself is a scaled squared norm, so c tends to predict c — an echo; an untied read-out
  is free to hold what follows c (in a zero-layer model, a bigram table).
* Nearest neighbours: the cosine similarity between characters' ``resid.0`` vectors.
* The stream's size: the L2 norm of ``resid.ℓ`` at every scored position of a split, per layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from zoo.evaluate import _eval_mode, window_batches
from zoo.hooks import capture


@torch.no_grad()
def embedded(model: nn.Module, vocab_size: int) -> torch.Tensor:
    """resid.0 of every character alone at position 0: (V, C)."""
    with _eval_mode(model), capture(model, ["resid.0"]) as acts:
        model(torch.arange(vocab_size, device=next(model.parameters()).device)[:, None])  # (V, 1)
    return acts["resid.0"][:, 0]  # (V, C)


@torch.no_grad()
def self_readout(model: nn.Module, vocab_size: int) -> torch.Tensor:
    """log p(next | c) read straight out of c's embedding, every block skipped: (V, V), row c."""
    with _eval_mode(model):
        return model.unembed(embedded(model, vocab_size)[:, None])[:, 0].double().log_softmax(-1)  # (V, V)


@torch.no_grad()
def neighbours(model: nn.Module, vocab_size: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each character's k nearest other characters by cosine of their embeddings: (ids (V, k), cosines (V, k))."""
    e = F.normalize(embedded(model, vocab_size).double(), dim=-1)  # (V, C)
    cos = e @ e.T  # (V, V)
    cos.fill_diagonal_(-2.0)  # never one's own neighbour
    top = cos.topk(min(k, vocab_size - 1), dim=-1)
    return top.indices, top.values


@torch.no_grad()
def stream_norms(model: nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int = 64) -> list[dict]:
    """Per layer: mean and standard deviation of ‖resid.ℓ‖₂ over the split's scored positions."""
    names = [f"resid.{i}" for i in range(len(model.resid))]
    total = torch.zeros(len(names), dtype=torch.float64)
    squares = torch.zeros(len(names), dtype=torch.float64)
    n = 0
    with _eval_mode(model):
        for x, _, keep in window_batches(tokens.to(next(model.parameters()).device), block_size, batch_size):
            with capture(model, names) as acts:
                model(x)
            norms = torch.stack([acts[name][keep].double().norm(dim=-1) for name in names])  # (L, n)
            total += norms.sum(-1).cpu()
            squares += norms.pow(2).sum(-1).cpu()
            n += norms.shape[1]
    mean = total / n
    return [{"layer": i, "mean": mean[i].item(), "std": (squares[i] / n - mean[i] ** 2).clamp(min=0).sqrt().item()} for i in range(len(names))]
