"""What a trained model's embedding holds: each character embedded and read straight out, its nearest
neighbours, and how large the residual stream grows layer by layer. ``zoo embed RUN_DIR``.

* The embed → unembed read-out: character c alone, at position 0, through ``resid.0`` (the stream as the
  first block receives it: the embedding, positions added where the rung adds them) and straight into the
  model's read-out, ``unembed``: p(· | c) with every block skipped. With tied embeddings (logits = N(E_c) Eᵀ)
  the score of c itself is a scaled squared norm, so c tends to predict c — an echo; an untied read-out
  is free to hold what follows c (in a zero-layer model, a bigram table).
* Nearest neighbours: the cosine similarity between characters' ``resid.0`` vectors.
* The stream's size: the L2 norm of ``resid.ℓ`` at every scored position of a split, per layer.
* The sphere the read-out works on (rungs with a ``readout`` hook point: the state u the output
  projection reads, after the final norm): logit_v = u · w_v + b_v = ‖u‖ ‖w_v‖ cos θ_v + b_v. How often
  the top-1 character is the one at the smallest angle θ_v, and how much of each position's logit spread
  across characters the cosines explain (mean r²) against the lengths ‖w_v‖. The projection (w_v, b_v)
  is recovered from (u, logits) pairs by least squares, so the same code serves tied, untied and biased
  heads. The logits are reproduced exactly (the map is affine); w_v itself is the head's row where the
  states span all C dimensions (after RMSNorm), while after a LayerNorm they lie in a hyperplane and the
  part of w_v normal to it, constant over positions, is folded into b_v (the minimum-norm w_v).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from zoo.causality import logits_of
from zoo.evaluate import eval_mode, model_device, window_batches
from zoo.hooks import capture


@torch.no_grad()
def embedded(model: nn.Module, vocab_size: int) -> torch.Tensor:
    """resid.0 of every character alone at position 0: (V, C)."""
    with eval_mode(model), capture(model, ["resid.0"]) as acts:
        model(torch.arange(vocab_size, device=model_device(model))[:, None])  # (V, 1)
    return acts["resid.0"][:, 0]  # (V, C)


@torch.no_grad()
def self_readout(model: nn.Module, vocab_size: int) -> torch.Tensor:
    """log p(next | c) read straight out of c's embedding, every block skipped: (V, V), row c."""
    with eval_mode(model):
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
    with eval_mode(model):
        for x, _, keep in window_batches(tokens.to(model_device(model)), block_size, batch_size):
            with capture(model, names) as acts:
                model(x)
            norms = torch.stack([acts[name][keep].double().norm(dim=-1) for name in names])  # (L, n)
            total += norms.sum(-1).cpu()
            squares += norms.pow(2).sum(-1).cpu()
            n += norms.shape[1]
    mean = total / n
    return [{"layer": i, "mean": mean[i].item(), "std": (squares[i] / n - mean[i] ** 2).clamp(min=0).sqrt().item()} for i in range(len(names))]


@torch.no_grad()
def readout_map(model: nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int = 64) -> tuple:
    """The states u at the ``readout`` hook point and the logits of every scored position of ``tokens``, and
    the affine map between them, logits = u Wᵀ + b, recovered by least squares: (u (n, C), logits (n, V),
    W (V, C), b (V,), the largest residual of the fit)."""
    us, logits = [], []
    with eval_mode(model):
        for x, _, keep in window_batches(tokens.to(model_device(model)), block_size, batch_size):
            with capture(model, ["readout"]) as acts:
                out = logits_of(model, x)  # (B, T, V); a stateful rung reads each window from a fresh state
            us.append(acts["readout"][keep].double())
            logits.append(out[keep].double())
    u, z = torch.cat(us), torch.cat(logits)  # (n, C), (n, V)
    design = torch.cat([u, torch.ones(len(u), 1, dtype=u.dtype)], dim=1)  # (n, C + 1)
    theta = torch.linalg.lstsq(design, z).solution  # (C + 1, V)
    W, b = theta[:-1].T, theta[-1]  # (V, C), (V,)
    residual = (design @ theta - z).abs().max().item()
    return u, z, W, b, residual


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise correlation of two (n, V) tensors: (n,)."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-300)


@torch.no_grad()
def sphere(model: nn.Module, tokens: torch.Tensor, block_size: int) -> dict:
    """The read-out's geometry on ``tokens`` (see the module docstring): the state's norm, the output
    vectors' lengths, the share of positions whose top-1 is the character at the smallest angle, and the
    mean r² of the logits against the cosines and against the lengths."""
    u, z, W, b, residual = readout_map(model, tokens, block_size)
    cos = F.normalize(u, dim=-1) @ F.normalize(W, dim=-1).T  # (n, V)
    lengths = W.norm(dim=-1)  # (V,)
    u_norm = u.norm(dim=-1)  # (n,)
    return {"positions": len(u), "state_norm": {"mean": u_norm.mean().item(), "std": u_norm.std().item()},
            "w_norm": {"mean": lengths.mean().item(), "min": lengths.min().item(), "max": lengths.max().item()},
            "bias_spread": b.std().item(), "fit_residual": residual,
            "top1_is_nearest_angle": (z.argmax(-1) == cos.argmax(-1)).double().mean().item(),
            "r2_cos": (_pearson(z, cos) ** 2).mean().item(), "r2_norm": (_pearson(z, lengths.expand_as(z)) ** 2).mean().item()}
