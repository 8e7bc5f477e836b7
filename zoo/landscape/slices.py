"""Loss slices: the loss along a line or over a plane through the trained weights, and along the straight
line between two runs' weights.

**Filter-normalised directions** (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape
of Neural Nets"). A random direction d ~ N(0, I) would mean different things for parameters of different
scales, so each filter of d is rescaled to the norm of the same filter of the weights θ*:

    d_i ← d_i · ‖θ*_i‖ / ‖d_i‖      for every filter i (a row of a matrix: one output unit, one token's embedding)

and the entries of vectors (biases, norm gains) are set to zero, as in the paper. Then

    1-D:  f(α)    = L(θ* + α d)
    2-D:  f(α, β) = L(θ* + α d₁ + β d₂)

with α = 1 a step as long as the weights themselves, filter by filter.

**Linear mode connectivity** (Frankle, Dziugaite, Roy & Carbin 2020). For two runs' weights θ_a, θ_b,

    f(t) = L((1 − t) θ_a + t θ_b),     barrier = max_t [ f(t) − ((1 − t) f(0) + t f(1)) ]

the most the loss rises above the straight line between its two ends. A barrier near zero: the two
solutions lie in one connected valley along that line.

Every point is evaluated through ``Objective.loss`` on a vector, so the run's weights are never touched.
"""

from __future__ import annotations

import torch

from zoo.errors import ZooError
from zoo.landscape.objective import Objective


def filter_normalized_direction(obj: Objective, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random direction, each filter scaled to its weights' filter norm; zero on vectors (biases, gains)."""
    d = torch.randn(obj.dim, generator=generator, dtype=theta.dtype)  # (dim,)
    weights, direction = obj.unflatten(theta), obj.unflatten(d)  # views: scaling a view scales d
    for name in obj.names:
        w, v = weights[name], direction[name]
        if w.dim() < 2:
            v.zero_()
            continue
        w_rows, v_rows = w.reshape(w.shape[0], -1), v.reshape(v.shape[0], -1)  # (filters, rest)
        v_rows.mul_(w_rows.norm(dim=1, keepdim=True) / (v_rows.norm(dim=1, keepdim=True) + 1e-10))
    return d


@torch.no_grad()
def slice_1d(obj: Objective, theta: torch.Tensor, d: torch.Tensor, alphas: list[float]) -> list[float]:
    """L(θ + α d) for every α."""
    return [obj.loss(theta + a * d).item() for a in alphas]


@torch.no_grad()
def slice_2d(obj: Objective, theta: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, alphas: list[float],
             betas: list[float]) -> list[list[float]]:
    """L(θ + α d₁ + β d₂) on the grid: one row per β, one column per α."""
    return [[obj.loss(theta + a * d1 + b * d2).item() for a in alphas] for b in betas]


@torch.no_grad()
def interpolate(obj: Objective, theta_a: torch.Tensor, theta_b: torch.Tensor, ts: list[float]) -> dict:
    """The loss along (1 − t) θ_a + t θ_b, and the barrier: the largest rise above the chord between its ends
    (over the ts in [0, 1]; points outside show the valley beyond the two ends)."""
    losses = [obj.loss((1 - t) * theta_a + t * theta_b).item() for t in ts]
    ends = dict(zip(ts, losses))
    if 0.0 not in ends or 1.0 not in ends:
        raise ZooError("the interpolation needs t = 0 and t = 1 among its points")
    rise = [f - ((1 - t) * ends[0.0] + t * ends[1.0]) for t, f in zip(ts, losses) if 0 <= t <= 1]
    return {"t": list(ts), "loss": losses, "barrier": max(rise), "distance": (theta_b - theta_a).norm().item()}


def same_parameters(a: Objective, b: Objective) -> None:
    """Two runs can be interpolated only if their parameters have the same names and shapes."""
    if a.names != b.names or a.shapes != b.shapes:
        raise ZooError("the two runs' parameters differ in names or shapes: only runs of one rung and one size can be interpolated")
