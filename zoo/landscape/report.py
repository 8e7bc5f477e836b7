"""``zoo landscape RUN_DIR``: the measurements of one run's loss landscape, as one JSON-able report.

Each part evaluates the run's ``Objective`` (its training loss on a fixed batch of training windows) and
never its weights in place:

* ``hessian``: the top and bottom Hessian eigenvalues (Lanczos) and the spectral density (stochastic
  Lanczos quadrature), with the share of the spectrum near zero and below zero;
* ``slices``: the loss along two filter-normalised random directions and over the plane they span;
* ``between``: the loss on the straight line to another run's weights, and its barrier;
* ``llc``: the local learning coefficient by SGLD, with its chains' spread and traces.
"""

from __future__ import annotations

import dataclasses
import functools
import time

from pathlib import Path

import torch

from zoo.errors import ZooError
from zoo.landscape.objective import Objective


@dataclasses.dataclass
class Settings:
    batch_size: int = 16  # windows in the fixed batch
    seed: int = 0  # random directions and start vectors
    lanczos_steps: int = 40  # Lanczos steps per start vector (matrix-vector products)
    vectors: int = 3  # start vectors of the spectral density
    near_zero: float = 1e-3  # |λ| below this share of the largest eigenvalue counts as flat
    span: float = 1.0  # slices run from −span to +span (1: a step as long as the weights, filter by filter)
    points: int = 21  # points per slice axis
    llc_batch_size: int = 0  # windows per SGLD minibatch (0: batch_size)

    def check(self) -> None:
        for name in ("batch_size", "lanczos_steps", "vectors"):
            if getattr(self, name) < 1:
                raise ZooError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if self.llc_batch_size < 0:
            raise ZooError(f"--llc-batch-size must be >= 0 (got {self.llc_batch_size})")
        if self.points < 3:
            raise ZooError(f"--points must be >= 3 (got {self.points})")
        if not 0 < self.near_zero < 1:
            raise ZooError(f"--near-zero must be in (0, 1) (got {self.near_zero})")
        if not 0 < self.span < float("inf"):
            raise ZooError(f"--span must be > 0 (got {self.span})")

    def axis(self) -> list[float]:
        return torch.linspace(-self.span, self.span, self.points).tolist()


def measure(run_dir, *, step: int | None = None, parts=("hessian", "slices"), between=None, llc=None,
            settings: Settings | None = None, llc_n: int | None = None, step_rule: float | None = None) -> dict:
    """The report of one run (its weights at ``step`` if given): every part in ``parts`` ("hessian", "top",
    "slices"), the line to the run in ``between``, and λ̂ if ``llc`` (an ``SGLD``) is given. Writes nothing."""
    from zoo.landscape.objective import run_objective
    from zoo.runs import load_run

    s = settings or Settings()
    s.check()
    run = load_run(run_dir, step=step)
    other = load_run(between) if between is not None else None  # a bad second run fails before the first measurement
    obj = run_objective(run, s.batch_size)
    theta = obj.flat()
    report = {"run": Path(run_dir).name, "run_dir": str(run_dir), "rung": run.config.rung, "step": step,
              "params": obj.dim, "batch": list(obj.x.shape), "settings": dataclasses.asdict(s)}
    if "hessian" in parts:
        report["hessian"] = hessian(obj, theta, s)
    if "top" in parts:
        report["top"] = top(obj, theta, s)
    if "slices" in parts:
        report["slices"] = slices(obj, theta, s)
    if other is not None:
        report["between"] = {**_between(obj, Objective.of(other.model, obj.x, obj.y), s), "other": str(between)}
    if llc is not None:
        report["llc"] = llc_report(run, obj, llc, s, n=llc_n, step_rule=step_rule)
    return report


def measure_job(run_dir, kwargs: dict) -> dict:
    """``measure(run_dir, **kwargs)``, in a form ``zoo.parallel.map_in_processes`` can send to a worker."""
    return measure(run_dir, **kwargs)


def top(obj: Objective, theta: torch.Tensor, s: Settings) -> dict:
    """Only the extreme eigenvalues: one Lanczos run from a Gaussian start (cheaper than the density)."""
    from zoo.landscape.hessian import ritz_values

    ritz = ritz_values(functools.partial(obj.hvp, theta), obj.dim, s.lanczos_steps, torch.Generator().manual_seed(s.seed), start="gaussian")
    return {"top": ritz[:5], "bottom": ritz[::-1][:5], "loss": obj.loss(theta).item()}


def hessian(obj: Objective, theta: torch.Tensor, s: Settings) -> dict:
    """The extreme eigenvalues (Lanczos from a Gaussian start), the density (SLQ from Rademacher starts), and
    the shares of the spectrum that are flat (|λ| below a fraction of the largest) and negative."""
    from zoo.landscape.hessian import ritz_values, share_below, spectral_density

    start = time.perf_counter()
    matvec = functools.partial(obj.hvp, theta)
    g = torch.Generator().manual_seed(s.seed)
    ritz = ritz_values(matvec, obj.dim, s.lanczos_steps, g, start="gaussian")  # largest first
    density = spectral_density(matvec, obj.dim, s.lanczos_steps, s.vectors, g)
    top = ritz[0]
    flat = {f"{r:g}": share_below(density, r * abs(top)) for r in sorted({s.near_zero, 1e-3, 1e-2, 1e-1})}
    negative = sum(w for ns, ws in zip(density["nodes"], density["weights"]) for n, w in zip(ns, ws)
                   if n < -s.near_zero * abs(top)) / len(density["nodes"])
    loss, grad = obj.grad(theta)
    return {"dim": obj.dim, "loss": loss, "grad_norm": grad.norm().item(), "top": ritz[:5], "bottom": ritz[::-1][:5], "density": density,
            "near_zero": {"relative": s.near_zero, "threshold": s.near_zero * abs(top), "share": flat[f"{s.near_zero:g}"]},
            "flat_shares": flat, "negative_share": negative, "matvecs": density["matvecs"] + len(ritz),
            "seconds": time.perf_counter() - start}


def slices(obj: Objective, theta: torch.Tensor, s: Settings) -> dict:
    from zoo.landscape.slices import filter_normalized_direction, slice_1d, slice_2d

    g = torch.Generator().manual_seed(s.seed)
    d1, d2 = filter_normalized_direction(obj, theta, g), filter_normalized_direction(obj, theta, g)
    axis = s.axis()
    return {"alpha": axis, "line_1": slice_1d(obj, theta, d1, axis), "line_2": slice_1d(obj, theta, d2, axis),
            "plane": slice_2d(obj, theta, d1, d2, axis, axis), "loss": obj.loss(theta).item()}


def _between(obj: Objective, other: Objective, s: Settings) -> dict:
    from zoo.landscape.slices import interpolate, same_parameters

    same_parameters(obj, other)
    ts = torch.linspace(-0.25, 1.25, 4 * (s.points // 2) + 1).tolist()  # 0 and 1 on the grid, a quarter beyond each end
    ts = sorted(set(round(t, 6) for t in ts) | {0.0, 1.0})
    return interpolate(obj, obj.flat(), other.flat(), ts)


def llc_report(run, obj: Objective, config, s: Settings, n: int | None = None, step_rule: float | None = None) -> dict:
    """λ̂ at the run's weights by SGLD on minibatches of its training split (``config``: an ``SGLD``). n, if not
    given, is the number of characters the training split predicts. With ``step_rule`` c, the step is
    ε = c / (nβ λ_max + γ), λ_max from a Lanczos run on the fixed batch (``zoo.landscape.llc.stable_step``)."""
    from zoo.data import load_splits
    from zoo.landscape.llc import default_nbeta, objective_llc, stable_step

    start = time.perf_counter()
    _, splits = load_splits(run.config.data.corpus)
    if n is None:
        config = dataclasses.replace(config, n=len(splits["train"]) - 1)
    extra = {}
    if step_rule is not None:
        nbeta = config.nbeta if config.nbeta is not None else default_nbeta(config.n)
        lam = top(obj, obj.flat(), s)["top"][0]
        config = dataclasses.replace(config, step=stable_step(nbeta, config.localization, lam, step_rule))
        extra = {"step_rule": step_rule, "top_eigenvalue": lam}
    result = objective_llc(obj, splits["train"], config, config_batch(s))
    return {**result, **extra, "seconds": time.perf_counter() - start}


def config_batch(s: Settings) -> int:
    """The SGLD minibatch: its own size if set, else the fixed batch's."""
    return s.llc_batch_size or s.batch_size
