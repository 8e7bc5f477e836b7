"""``zoo landscape``: check the arguments, measure what was asked, write report.json and figures beside the run."""

from __future__ import annotations

import json
from pathlib import Path

from zoo.errors import ZooError
from zoo.landscape import report as measure


def landscape(args) -> int:
    settings = measure.Settings(args.batch_size, args.seed, args.lanczos_steps, args.vectors, args.near_zero, args.span, args.points,
                                args.llc_batch_size)
    settings.check()
    llc = _llc_settings(args) if args.llc else None
    parts = [name for name in ("hessian", "slices") if getattr(args, name)]
    if not (parts or args.between or args.llc):
        parts = ["hessian", "slices"]  # the default: the spectrum and a look around
    run_dir = Path(args.run_dir)
    out = _out_dir(run_dir, args.out)  # before any work: a clash is reported now, not after minutes of Lanczos
    rule = None if args.llc_step is not None else args.llc_step_rule
    report = measure.measure(run_dir, step=args.step, parts=parts, between=args.between, llc=llc, settings=settings,
                             llc_n=args.llc_n, step_rule=rule)
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
    """The SGLD settings from --llc-*. n defaults to the number of characters the run's training split predicts,
    nβ to n / log n (Lau et al.'s β* = 1 / log n), and the step to ε = c / (nβ λ_max + γ) (--llc-step-rule c)."""
    from zoo.landscape.llc import SGLD, stable_step

    stable_step(1.0, 1.0, 1.0, args.llc_step_rule)  # checks c now, before any work
    return SGLD(step=args.llc_step if args.llc_step is not None else 1.0, n=args.llc_n or 2, nbeta=args.llc_nbeta,
                localization=args.llc_localization, chains=args.llc_chains, steps=args.llc_steps, burn_in=args.llc_burn_in, seed=args.seed)


def format_report(r: dict, out: Path) -> str:
    where = f"step {r['step']}" if r["step"] is not None else "its last weights"
    lines = [f"{r['run']} ({r['rung']}, {where}; {r['params']:,} parameters; a fixed batch of {r['batch'][0]} × {r['batch'][1]} "
             f"training characters)"]
    if "hessian" in r:
        h = r["hessian"]
        lines.append(f"hessian: loss {h['loss']:.4f} nats, gradient norm {h['grad_norm']:.3g}; top eigenvalues {', '.join(f'{x:.4g}' for x in h['top'])}; "
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
        lines.append(f"llc: λ̂ = {c['llc']:.4g} ± {c['llc_std']:.2g} over {c['chains']} chains of {c['steps']} steps "
                     f"(burn-in {c['burn_in']}; ε = {c['step']:.3g}, nβ = {c['nbeta']:.4g}, γ = {c['localization']:g}); "
                     f"check that llc.png's chains level off after the burn-in")
    lines.append(f"report and figures: {out}")
    return "\n".join(lines)
