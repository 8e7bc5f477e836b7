"""The local learning coefficient (LLC) of trained weights w*, estimated by SGLD (Lau, Furman, Wang, Murfet &
Wei 2023, "The Local Learning Coefficient: A Singularity-Aware Complexity Measure").

The learning coefficient λ is the volume-scaling exponent of the set of near-optimal weights around w*: a
regular model with d parameters has λ = d/2, a degenerate (singular) one has less, so λ counts the
directions the loss really uses. The estimator samples a posterior localised at w* and tempered to inverse
temperature β (default β* = 1 / log n, so nβ = n / log n):

    p(w) ∝ exp( −nβ L_n(w) − (γ/2) ‖w − w*‖² )
    λ̂(w*) = nβ · ( E_p[L_n(w)] − L_n(w*) )

L_n is the mean loss over the n training samples. The expectation is taken by stochastic-gradient Langevin
dynamics (Welling & Teh 2011), with a minibatch loss L_m in place of L_n and step size ε:

    w_{t+1} = w_t − (ε/2) · ( nβ ∇L_m(w_t) + γ (w_t − w*) ) + N(0, ε I)

Several independent chains start at w*; the first ``burn_in`` draws of each are discarded, and each chain's
estimate is nβ times the mean of L_m(w_t) − L_m(w*) over the rest. The difference is taken on the same
minibatch at each draw (one extra forward at w*): the batch-to-batch noise in L_m cancels, and the
estimate stays unbiased because w_t is fixed before the batch of step t is drawn. Each step draws its
batch, records both losses, then takes the gradient step on that batch.

Trusting it: the ``trace`` (each chain's L_m(w_t)) should rise from L(w*) and level off within the burn-in;
``draws`` holds each step's paired nβ (L_m(w_t) − L_m(w*)), whose batch noise is cancelled, so its running
mean shows the levelling off far more clearly than the raw minibatch loss does.
A trace that keeps drifting upward means ε is too large or γ too small (the chain is escaping w*'s basin);
one still settling after the burn-in needs more steps or a larger ε; a chain whose loss stops being finite
raises ``Diverged`` (ε too large). A trace that falls below L(w*) (a negative λ̂) says w* is not a local
minimum. ``llc_std`` is the spread between chains: the standard error of ``llc`` is about llc_std / √chains.
SGLD's finite step biases λ̂ upward: in a direction where the drift's curvature is a = nβ·h + γ (h the loss's
curvature), the sampled variance is 1 / (a (1 − εa/4)) instead of 1/a, so keep ε·a_max small (≲ 0.1).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from zoo.data import step_generator, window_batch
from zoo.errors import Diverged, ZooError

if TYPE_CHECKING:
    from zoo.landscape.objective import Objective

TRACE_POINTS = 1000  # a longer trace is thinned to about this many points per chain


def default_nbeta(n: int) -> float:
    """nβ at β* = 1 / log n, the inverse temperature of Watanabe's WBIC that Lau et al. take as the default."""
    return n / math.log(n)


def stable_step(nbeta: float, localization: float, top_eigenvalue: float, c: float = 0.5) -> float:
    """ε = c / (nβ λ_max + γ): the step that puts the stiffest direction's drift curvature a_max = nβ λ_max + γ
    at ε a_max = c. SGLD on a quadratic is stable for ε a < 4; its variance there is 1 / (1 − c/4) times the
    exact one (+14 % at c = 0.5), but only in the few stiffest directions, each worth at most ½ of λ. The
    flattest directions, held only by γ, relax in about 1 / (ε γ) steps: the chains need several times that."""
    if not 0 < c <= 2:
        raise ZooError(f"the SGLD step rule's c must be in (0, 2] (got {c}); SGLD on a quadratic diverges at ε·a ≥ 4")
    return c / (nbeta * max(top_eigenvalue, 0.0) + localization)


@dataclasses.dataclass(frozen=True)
class SGLD:
    step: float  # ε. No default: a stable ε scales as 1 / (nβ · largest curvature), which only the problem knows.
    n: int  # how many samples L_n averages over (for a language model, training tokens)
    nbeta: float | None = None  # None: n / log n
    localization: float = 100.0  # γ: keeps flat and downhill directions near w*; the usual value in LLC practice
    chains: int = 4
    steps: int = 1000  # per chain, burn-in included
    burn_in: int = 200
    seed: int = 0

    def __post_init__(self):
        def check(name, value, integer=False, zero=False):
            kind = numbers.Integral if integer else numbers.Real
            ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (value >= 0 if zero else value > 0)
            if not ok:
                what, bound = ("an integer" if integer else "a finite number"), ("≥ 0" if zero else "> 0")
                raise ZooError(f"SGLD {name} must be {what} {bound}, got {value!r}")

        check("step", self.step)
        check("n", self.n, integer=True)
        if self.nbeta is None:
            if self.n < 2:
                raise ZooError(f"SGLD n must be ≥ 2 for the default nβ = n / log n, got {self.n}; give nbeta")
        else:
            check("nbeta", self.nbeta)
        check("localization", self.localization, zero=True)
        check("chains", self.chains, integer=True)
        check("steps", self.steps, integer=True)
        check("burn_in", self.burn_in, integer=True, zero=True)
        if self.burn_in >= self.steps:
            raise ZooError(f"SGLD burn_in ({self.burn_in}) must be less than steps ({self.steps}): no draws would be left")
        check("seed", self.seed, integer=True, zero=True)


def estimate_llc(
    loss_fn: Callable[[torch.Tensor, Any], torch.Tensor],
    w_star: torch.Tensor,
    batches: Callable[[int, int], Any],
    config: SGLD,
) -> dict:
    """λ̂ at ``w_star`` (a flat vector, left as it is). ``loss_fn(theta, batch)`` is the minibatch loss, a
    differentiable scalar; ``batches(chain, step)`` must be a pure function of its arguments, so that the
    same config gives the same result. Raises ``Diverged`` (its ``result`` holds what ran) if any loss is
    not finite."""
    nbeta = config.nbeta if config.nbeta is not None else default_nbeta(config.n)
    eps, gamma = config.step, config.localization
    center = w_star.detach().clone()  # the caller's tensor is never written to, nor tracked
    per_chain, traces, draws, base_losses, diverged = [], [], [], [], {}

    for chain in range(config.chains):
        noise = step_generator(config.seed, chain)  # each chain its own stream, a pure function of (seed, chain)
        w, losses, diffs, lambdas = center.clone(), [], [], []
        # --8<-- [start:sgld]
        for t in range(config.steps):
            batch = batches(chain, t)
            theta = w.detach().requires_grad_(True)
            loss = loss_fn(theta, batch)
            with torch.no_grad():
                base = loss_fn(center, batch).item()  # L_m(w*) on the same batch: the paired difference
            if not math.isfinite(base):
                raise ZooError(f"the loss at w* is not finite ({base}) on chain {chain}'s batch {t}: nothing to sample around")
            value = loss.item()
            if not math.isfinite(value):
                diverged[chain] = t  # this chain stops; the others still run, to say how many diverge
                break
            (grad,) = torch.autograd.grad(loss, theta)
            losses.append(value)
            lambdas.append(nbeta * (value - base))  # this draw's λ estimate: its running mean should level off
            base_losses.append(base)
            if t >= config.burn_in:
                diffs.append(value - base)
            with torch.no_grad():
                drift = nbeta * grad + gamma * (w - center)
                xi = torch.randn(w.shape, generator=noise, dtype=w.dtype).to(w.device)  # the generator is a CPU one
                w = w - (eps / 2) * drift + math.sqrt(eps) * xi
        # --8<-- [end:sgld]
        per_chain.append(nbeta * float(np.mean(diffs)) if diffs else math.nan)
        traces.append(losses)
        draws.append(lambdas)

    every = max(1, math.ceil(config.steps / TRACE_POINTS))
    result = {
        "llc": float(np.mean(per_chain)),
        "llc_std": float(np.std(per_chain, ddof=1)) if config.chains > 1 else 0.0,
        "per_chain": per_chain,
        "trace": [trace[::every] for trace in traces],
        "draws": [d[::every] for d in draws],  # nβ (L_m(w_t) − L_m(w*)) per step: the paired signal, without batch noise
        "trace_every": every,
        "init_loss": float(np.mean(base_losses)),  # L(w*), averaged over every batch drawn
        "step": eps,
        "nbeta": nbeta,
        "localization": gamma,
        "chains": config.chains,
        "steps": config.steps,
        "burn_in": config.burn_in,
        "n": config.n,
    }
    if diverged:
        where = ", ".join(f"chain {c} at step {t}" for c, t in diverged.items())
        error = Diverged(
            f"SGLD diverged in {len(diverged)} of {config.chains} chains ({where}): the loss is no longer finite; "
            f"lower the step (ε = {eps:g}) or raise the localization (γ = {gamma:g})"
        )
        error.result = result
        raise error
    return result


# ---------------------------------------------------------------------------------- a language model
def objective_batches(tokens: torch.Tensor, block_size: int, batch_size: int, seed: int = 0) -> Callable[[int, int], tuple]:
    """``batches(chain, step)`` of ``batch_size`` random windows of ``tokens``: each chain its own stream."""

    def batch(chain: int, step: int):
        chain_seed = int(np.random.SeedSequence([seed, chain]).generate_state(1)[0])
        return window_batch(tokens, block_size, batch_size, chain_seed, step)

    return batch


def objective_llc(objective: Objective, tokens: torch.Tensor, config: SGLD, batch_size: int) -> dict:
    """λ̂ at an ``Objective``'s trained weights, on minibatches of windows of ``tokens`` (its training split,
    at the objective's block size), drawn from ``config.seed``."""
    batches = objective_batches(tokens, objective.x.shape[1], batch_size, config.seed)
    return estimate_llc(lambda theta, b: objective.loss(theta, *b), objective.flat(), batches, config)
