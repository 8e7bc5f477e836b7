"""``zoo landscape``: check the arguments, measure what was asked, write report.json and figures beside the run."""

from __future__ import annotations

import json
from pathlib import Path

from zoo.errors import ZooError
from zoo.landscape import report as measure


def landscape(args) -> int:
    settings = measure.Settings(args.batch_size, args.seed, args.lanczos_steps, args.vectors, args.near_zero, args.span, args.points)
    settings.check()
    llc = _llc_settings(args) if args.llc else None
    parts = [name for name in ("hessian", "slices", "llc") if getattr(args, name)] + (["between"] if args.between else [])
    parts = parts or ["hessian", "slices"]  # the default: the spectrum and a look around
    run_dir = Path(args.run_dir)
    out = _out_dir(run_dir, args.out)  # before any work: a clash is reported now, not after minutes of Lanczos

    from zoo.landscape.objective import Objective, run_objective
    from zoo.runs import load_run

    run = load_run(run_dir, step=args.step)
    other = load_run(args.between) if args.between else None  # a bad second run fails before the first measurement
    obj = run_objective(run, settings.batch_size)
    theta = obj.flat()
    report = {"run": run_dir.name, "run_dir": str(run_dir), "rung": run.config.rung, "step": args.step,
              "params": obj.dim, "batch": list(obj.x.shape), "settings": vars(settings)}
    if "hessian" in parts:
        report["hessian"] = measure.hessian(obj, theta, settings)
    if "slices" in parts:
        report["slices"] = measure.slices(obj, theta, settings)
    if other is not None:
        report["between"] = {**measure.between(obj, Objective.of(other.model, obj.x, obj.y), settings), "other": str(args.between)}
    if llc is not None:
        report["llc"] = measure.llc(run, obj, llc, settings, n=args.llc_n)
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps(report) + "\n")
    from zoo.landscape.figures import draw

    report["figures"] = [str(p) for p in draw(report, out)]
    print(json.dumps(report) if args.json else format_report(report, out))
    return 0


def _out_dir(run_dir: Path, out: str | None) -> Path:
    if out is not None:
        if Path(out).exists():
            raise ZooError(f"{out} already exists; give --out a new directory")
        return Path(out)
    if not run_dir.is_dir():
        raise ZooError(f"run directory not found: {run_dir}")
    path, n = run_dir / "landscape", 1
    while path.exists():
        n += 1
        path = run_dir / f"landscape-{n}"
    return path


def _llc_settings(args):
    """The SGLD settings from --llc-*; n defaults to the number of characters in the run's training split,
    and nβ to n / log n (Lau et al.'s β* = 1 / log n)."""
    from zoo.landscape.llc import SGLD

    if args.llc_step is None:
        raise ZooError("--llc needs --llc-step ε: a stable step scales as 1 / (nβ × the largest Hessian eigenvalue); "
                       "run --hessian for that eigenvalue, then try ε ≈ 0.05 / (nβ λ_max + γ)")
    return SGLD(step=args.llc_step, n=args.llc_n or 2, nbeta=args.llc_nbeta, localization=args.llc_localization,
                chains=args.llc_chains, steps=args.llc_steps, burn_in=args.llc_burn_in, seed=args.seed)


def format_report(r: dict, out: Path) -> str:
    where = f"step {r['step']}" if r["step"] is not None else "its last weights"
    lines = [f"{r['run']} ({r['rung']}, {where}; {r['params']:,} parameters; a fixed batch of {r['batch'][0]} × {r['batch'][1]} "
             f"training characters)"]
    if "hessian" in r:
        h = r["hessian"]
        lines.append(f"hessian: loss {h['loss']:.4f} nats; top eigenvalues {', '.join(f'{x:.4g}' for x in h['top'])}; "
                     f"most negative {', '.join(f'{x:.3g}' for x in h['bottom'][:3])}")
        lines.append(f"  flat (|λ| < {h['near_zero']['relative']:g} × the largest): {h['near_zero']['share']:.1%} of the spectrum; "
                     f"negative: {h['negative_share']:.1%}  ({h['matvecs']} Hessian-vector products, {h['seconds']:.0f} s)")
    if "slices" in r:
        s = r["slices"]
        mid = len(s["alpha"]) // 2
        lines.append(f"slices: loss {s['loss']:.4f} at the weights; at α = ±{s['alpha'][-1]:g}: "
                     f"{s['line_1'][0]:.3f} / {s['line_1'][-1]:.3f} (direction 1), {s['line_2'][0]:.3f} / {s['line_2'][-1]:.3f} (direction 2); "
                     f"plane minimum {min(min(row) for row in s['plane']):.4f} (centre {s['plane'][mid][mid]:.4f})")
    if "between" in r:
        b = r["between"]
        ends = dict(zip(b["t"], b["loss"]))
        lines.append(f"between: {ends[0.0]:.4f} → {ends[1.0]:.4f} nats over a distance of {b['distance']:.4g}; barrier {b['barrier']:.4f} nats")
    if "llc" in r:
        c = r["llc"]
        lines.append(f"llc: λ̂ = {c['llc']:.4g} ± {c['llc_std']:.2g} over {c['chains']} chains")
    lines.append(f"report and figures: {out}")
    return "\n".join(lines)
