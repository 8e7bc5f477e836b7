"""Chapter 13: the loss landscape around trained weights — the Hessian's spectrum, slices, the straight line
between two solutions, and the local learning coefficient over training.

Every measurement is ``zoo landscape``'s (``zoo.landscape.report.measure``), on the book's runs:

* the Hessian spectrum of ``bigram``, ``bengio-mlp``, ``lstm`` and ``gpt`` (seed 0) on one fixed batch of
  BATCH training windows of each run's block size: extreme eigenvalues by Lanczos, the density by
  stochastic Lanczos quadrature;
* around ``gpt``: two filter-normalised random directions and their plane, and the straight lines to the
  seed-1 and seed-2 solutions;
* λ̂, the local learning coefficient, by SGLD (CHAINS chains of STEPS steps, BURN_IN burned, minibatches of
  SGLD_BATCH windows, γ = GAMMA, ε by the step rule c = RULE), at nβ = NBETA: for each rung, and at
  checkpoints along one new ``gpt`` run that keeps them (``--trainer.keep_every``; otherwise the book's
  seed-0 recipe); and for the final ``gpt`` at other nβ, including the theory's n / log n.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
BATCH = 16  # windows in the fixed batch of every Hessian and slice
LANCZOS, VECTORS, TOP_STEPS = 60, 4, 30  # Lanczos steps per vector, SLQ start vectors; steps for the top eigenvalue alone
NBETA, GAMMA, RULE = 300.0, 100.0, 0.5  # SGLD's nβ, localisation, and step rule ε = RULE / (nβ λ_max + γ)
CHAINS, STEPS, SGLD_BATCH = 3, 300, 8  # SGLD chains, steps per chain, windows per minibatch
BURN_IN = STEPS // 3  # every chain, here and in the nβ sweep, drops its first third
NBETAS = {30.0: 300, 100.0: 300, 1000.0: 600}  # the nβ sweep on the final gpt: steps per chain (more where chains mix slower)
KEEP = 125  # the new gpt run keeps a checkpoint every KEEP steps
TRAJECTORY = (0, 125, 250, 500, 750, 1000, 1500, 2000)  # the checkpoints whose λ̂ and top eigenvalue are measured
RUNGS = ("bigram", "bengio-mlp", "lstm", "gpt")

RUNS = [
    RunSpec("bigram", shared_with="00-setup", leaderboard=False),
    RunSpec("bengio-mlp", shared_with="02-bengio-mlp", leaderboard=False),
    RunSpec("lstm", shared_with="04-rnn", leaderboard=False),
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    # --8<-- [start:runs]
    RunSpec("gpt", name="gpt-kept", label="gpt, checkpoints kept", seeds=(0,), leaderboard=False,
            overrides={"trainer": {"keep_every": KEEP}}),
    # --8<-- [end:runs]
]


SMOKE = {"lanczos": 6, "vectors": 1, "top_steps": 6, "steps": 9}  # a --smoke run's models trained 4 steps: check the plumbing only


def jobs(run_dirs: dict, n_train: int, smoke: bool = False) -> list[tuple[str, tuple, dict]]:
    """Every measurement as (name, args, kwargs) of ``measure``, the costliest first."""
    from zoo.landscape.llc import SGLD
    from zoo.landscape.report import Settings
    from zoo.runs import kept_checkpoints

    lanczos, vectors, top_steps = (SMOKE["lanczos"], SMOKE["vectors"], SMOKE["top_steps"]) if smoke else (LANCZOS, VECTORS, TOP_STEPS)
    length = (lambda steps: SMOKE["steps"]) if smoke else (lambda steps: steps)  # noqa: E731
    full = Settings(batch_size=BATCH, lanczos_steps=lanczos, vectors=vectors, llc_batch_size=SGLD_BATCH)
    quick = Settings(batch_size=BATCH, lanczos_steps=top_steps, llc_batch_size=SGLD_BATCH)
    sgld = SGLD(step=1.0, n=n_train, nbeta=NBETA, localization=GAMMA, chains=CHAINS, steps=length(STEPS), burn_in=length(STEPS) // 3)
    kept_dir = run_dirs["gpt-kept"][0]
    kept = [s for s in TRAJECTORY if s in kept_checkpoints(kept_dir)] or [None]  # a smoke run keeps only step 0
    out = []
    for rung in RUNGS:
        parts = ("hessian", "slices") if rung == "gpt" else ("hessian",)
        out.append((f"rung/{rung}", (run_dirs[rung][0],), {"parts": parts, "between": run_dirs[rung][1] if rung == "gpt" else None,
                                                          "llc": sgld if rung != "gpt" else None, "settings": full, "step_rule": RULE}))
        if rung != "gpt":  # the final gpt's λ̂ at nβ = 1000 is in the nβ sweep
            warm = SGLD(step=1.0, n=n_train, nbeta=1000.0, localization=GAMMA, chains=CHAINS, steps=length(NBETAS[1000.0]),
                        burn_in=length(NBETAS[1000.0]) // 3)
            out.append((f"rung1000/{rung}", (run_dirs[rung][0],), {"parts": (), "llc": warm, "settings": quick, "step_rule": RULE}))
    out.append(("between/gpt-2", (run_dirs["gpt"][0],), {"parts": (), "between": run_dirs["gpt"][2], "settings": quick}))
    for step in kept:
        out.append((f"trajectory/{step}", (kept_dir,), {"step": step, "parts": ("top",), "llc": sgld, "settings": quick, "step_rule": RULE}))
    final = kept[-1] if kept[-1] is not None else None
    for nbeta, steps in [*NBETAS.items(), (None, STEPS)]:  # None: the theory's n / log n
        config = SGLD(step=1.0, n=n_train, nbeta=nbeta, localization=GAMMA, chains=CHAINS, steps=length(steps), burn_in=length(steps) // 3)
        out.append((f"nbeta/{nbeta or 'default'}", (kept_dir,), {"step": final, "parts": (), "llc": config, "settings": quick, "step_rule": RULE}))
    cost = lambda job: (job[2].get("llc").steps if job[2].get("llc") else 0) + (600 if "hessian" in job[2]["parts"] else 0)  # noqa: E731
    return sorted(out, key=cost, reverse=True)


def analyse(run_dirs: dict, corpus: str) -> dict:
    import torch

    from zoo.data import load_splits
    from zoo.landscape.report import measure_job
    from zoo.parallel import map_in_processes, usable_cores
    from pathlib import Path

    from zoo.runs import load_run, read_checkpoint

    _, splits = load_splits(corpus)
    smoke = load_run(run_dirs["gpt"][0]).config.trainer.max_steps < 100
    todo = jobs(run_dirs, len(splits["train"]) - 1, smoke)
    done = cached(todo, Path(run_dirs["gpt-kept"][0]).parent / "measurements",
                  lambda missing: map_in_processes(measure_job, [(a[0], k) for _, a, k in missing], usable_cores()))
    rungs = {rung: done[f"rung/{rung}"] for rung in RUNGS}
    trajectory = {int(k.split("/")[1]) if k.split("/")[1] != "None" else 0: v for k, v in done.items() if k.startswith("trajectory/")}
    nbetas = {_nb(v["llc"]["nbeta"]) if not k.endswith("/default") else "default": v["llc"] for k, v in done.items() if k.startswith("nbeta/")}
    final = max(trajectory)
    nbetas[_nb(NBETA)] = trajectory[final]["llc"]
    # the kept run is the book's seed-0 gpt with checkpoints kept: the same weights, bit for bit, if training is deterministic
    a = read_checkpoint(run_dirs["gpt"][0] / "checkpoints" / "last.ckpt")["state_dict"]
    b = read_checkpoint(run_dirs["gpt-kept"][0] / "checkpoints" / "last.ckpt")["state_dict"]
    same = all(torch.equal(a[k], b[k]) for k in a)
    return {"batch": {"windows": BATCH, "characters": BATCH * rungs["gpt"]["batch"][1]},
            "settings": {"lanczos": LANCZOS, "vectors": VECTORS, "top_steps": TOP_STEPS, "nbeta": NBETA, "gamma": GAMMA, "rule": RULE,
                         "chains": CHAINS, "steps": STEPS, "burn_in": BURN_IN, "sgld_batch": SGLD_BATCH, "n": len(splits["train"]) - 1},
            "spectra": {rung: spectrum(r["hessian"], r["params"]) for rung, r in rungs.items()},
            "llc": {rung: {**summary(rungs[rung]["llc"] if rung != "gpt" else trajectory[final]["llc"], rungs[rung]["params"]),
                           "quadratic": quadratic(rungs[rung]["hessian"], NBETA, GAMMA),
                           "at_1000": summary(done[f"rung1000/{rung}"]["llc"] if rung != "gpt" else nbetas[_nb(1000.0)], rungs[rung]["params"])}
                    for rung in RUNGS},
            "slices": slices(rungs["gpt"]["slices"]),
            "between": {"seed1": line(rungs["gpt"]["between"]), "seed2": line(done["between/gpt-2"]["between"])},
            "trajectory": {str(step): {"top": r["top"]["top"][0], "bottom": r["top"]["bottom"][0], "loss": r["top"]["loss"],
                                       **summary(r["llc"], r["params"])} for step, r in sorted(trajectory.items())},
            "trajectory_drift_max": max(summary(r["llc"], r["params"])["drift"] or 0.0 for step, r in trajectory.items() if step > 0),
            "nbeta": {k: {**summary(v, rungs["gpt"]["params"]),
                          "quadratic": quadratic(rungs["gpt"]["hessian"], v["nbeta"], v["localization"])} for k, v in nbetas.items()},
            "kept_equals_book_gpt": same,
            "volume": volume(rungs["gpt"]["params"], rungs["gpt"]["hessian"]["flat_shares"]),
            "raw": {"density": {rung: r["hessian"]["density"] for rung, r in rungs.items()},
                    "draws": {k: v["draws"] for k, v in nbetas.items()},
                    "plane": rungs["gpt"]["slices"], "lines": {"seed1": rungs["gpt"]["between"], "seed2": done["between/gpt-2"]["between"]}}}


def cached(todo: list, folder, compute) -> dict:
    """{name: report} of every job: read from ``folder`` where a job with the same arguments was measured
    before (so re-analysing the chapter does not measure again), computed by ``compute(missing)`` otherwise,
    and saved there. A job's file names its arguments' fingerprint; other arguments mean a new measurement,
    and so does a run directory that holds other weights (a retrained run), since the fingerprint includes
    the content of every run's final checkpoint."""
    import dataclasses
    import functools
    import hashlib
    import json
    from pathlib import Path

    @functools.cache  # most jobs read the same few runs: hash each checkpoint once
    def weights(value: str) -> str | None:
        checkpoint = Path(value) / "checkpoints" / "last.ckpt"
        return hashlib.sha256(checkpoint.read_bytes()).hexdigest() if checkpoint.is_file() else None

    def fingerprint(args, kwargs) -> str:
        plain = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in kwargs.items()}
        runs = [h for h in (weights(str(v)) for v in [*args, *kwargs.values()]) if h]
        return hashlib.sha256(json.dumps([list(map(str, args)), plain, runs], sort_keys=True, default=str).encode()).hexdigest()[:16]

    folder.mkdir(parents=True, exist_ok=True)
    path = {name: folder / f"{name.replace('/', '-')}-{fingerprint(a, k)}.json" for name, a, k in todo}
    missing = [job for job in todo if not path[job[0]].is_file()]
    for (name, _, _), report in zip(missing, compute(missing) if missing else []):
        path[name].write_text(json.dumps(report) + "\n")
    return {name: json.loads(path[name].read_text()) for name, _, _ in todo}


def _nb(nbeta: float) -> str:
    """A placeholder-friendly key for an nβ: "nb300" (a dot would split the placeholder's path)."""
    return f"nb{nbeta:g}"


def _rel(threshold: str) -> str:
    """A placeholder-friendly key for a relative threshold: "0.001" -> "1e-3"."""
    mantissa, exponent = f"{float(threshold):.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def spectrum(h: dict, params: int) -> dict:
    """What the chapter quotes of one Hessian: the ends, the flat and negative shares, and their counts."""
    near = h["near_zero"]["share"]
    d = h["density"]
    # tr H / d = E_v[vᵀHv] (exact for the quadrature: degree 1), and the part of it from eigenvalues above a tenth of the largest
    mean = sum(sum(w * n for n, w in zip(ns, ws)) for ns, ws in zip(d["nodes"], d["weights"])) / len(d["nodes"])
    big = sum(sum(w * n for n, w in zip(ns, ws) if n > 0.1 * h["top"][0]) for ns, ws in zip(d["nodes"], d["weights"])) / len(d["nodes"])
    return {"mean_eigenvalue": mean, "trace": mean * params, "outlier_trace_share": big / mean if mean > 0 else None,"params": params, "loss": h["loss"], "grad_norm": h["grad_norm"], "top": h["top"][0], "top5": h["top"], "bottom": h["bottom"][0],
            "ratio": -h["bottom"][0] / h["top"][0], "flat_share": near, "flat_count": near * params,
            "flat_shares": {_rel(k): v for k, v in h["flat_shares"].items()}, "negative_share": h["negative_share"], "threshold": h["near_zero"]["threshold"],
            "matvecs": h["matvecs"], "seconds": h["seconds"]}


def summary(c: dict, params: int) -> dict:
    """λ̂, its spread over chains, the settings it was taken at, and how far its chains had levelled off: the
    mean draw in the last third of each chain against the middle third (a still-rising chain has a ratio > 1)."""
    import numpy as np

    thirds = [(np.mean(d[len(d) // 3: 2 * len(d) // 3]), np.mean(d[2 * len(d) // 3:])) for d in c["draws"]]
    return {"llc": c["llc"], "std": c["llc_std"], "per_chain": c["per_chain"], "step": c["step"], "nbeta": c["nbeta"],
            "top_eigenvalue": c.get("top_eigenvalue"), "steps": c["steps"], "burn_in": c["burn_in"],
            "relax_steps": 1.0 / (c["step"] * c["localization"]) if c["localization"] > 0 else None,  # the flattest directions' settling time
            "drift": float(np.mean([late / mid for mid, late in thirds])) if all(mid > 0 for mid, _ in thirds) else None,
            "per_param": c["llc"] / params, "half_params": params / 2, "seconds": c.get("seconds")}


def quadratic(h: dict, nbeta: float, gamma: float) -> dict:
    """λ if the loss were its quadratic approximation at w*: ½ Σ_k h_k / (h_k + γ/nβ) over the positive
    eigenvalues (the localised Gaussian's exact answer), estimated from the SLQ nodes and weights: dim × each
    start vector's quadrature, then the mean and spread over vectors (its Monte-Carlo uncertainty)."""
    import statistics

    d, c = h["density"], gamma / nbeta
    per_vector = [h["dim"] * sum(w * 0.5 * max(n, 0.0) / (max(n, 0.0) + c) for n, w in zip(ns, ws)) for ns, ws in zip(d["nodes"], d["weights"])]
    return {"mean": statistics.mean(per_vector), "std": statistics.stdev(per_vector) if len(per_vector) > 1 else 0.0,
            "min": min(per_vector), "max": max(per_vector), "n": len(per_vector)}


def slices(s: dict) -> dict:
    mid = len(s["alpha"]) // 2
    plane_min = min(min(row) for row in s["plane"])
    ends = [s["line_1"][0], s["line_1"][-1], s["line_2"][0], s["line_2"][-1]]
    return {"loss": s["loss"], "span": s["alpha"][-1], "ends_min": min(ends), "ends_max": max(ends), "line_1_ends": [s["line_1"][0], s["line_1"][-1]],
            "line_2_ends": [s["line_2"][0], s["line_2"][-1]], "plane_min": plane_min, "centre_is_min": s["plane"][mid][mid] == plane_min,
            "tenth": [s["line_1"][mid + max(1, mid // 10)], s["line_2"][mid + max(1, mid // 10)]]}


def line(b: dict) -> dict:
    ends = dict(zip(b["t"], b["loss"]))
    return {"start": ends[0.0], "end": ends[1.0], "barrier": b["barrier"], "peak": max(b["loss"][b["t"].index(0.0): b["t"].index(1.0) + 1]),
            "distance": b["distance"]}


def volume(d: int, flat_shares: dict) -> dict:
    """High-dimensional geometry in d = the gpt's parameter count: the share of a d-ball's volume in its outer
    1 % shell, and how many directions the measured spectrum calls flat at each relative threshold."""
    import math

    return {"d": d, "log10_inner_99": d * math.log10(0.99), "doubling_log10": d * math.log10(2),
            "flat": {_rel(k): v * d for k, v in flat_shares.items()}}


def figures(results: dict, figdir) -> None:
    import matplotlib.pyplot as plt

    from zoo.landscape.figures import density_panel, running_mean, slice_panels

    v = results["values"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6))
    for ax, rung in zip(axes.flat, RUNGS):
        s = v["spectra"][rung]
        density_panel(ax, v["raw"]["density"][rung], s["top"], s["bottom"])
        ax.set_title(f"{rung} ({s['params']:,} parameters)", fontsize=9)
    _save(plt, fig, figdir / "spectra.png",
          f"Hessian spectral density at the end of training (SLQ, {v['settings']['vectors']} vectors × {v['settings']['lanczos']} steps)")

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.8))
    slice_panels(fig, a, b, v["raw"]["plane"])
    for key, label in (("seed1", "to seed 1"), ("seed2", "to seed 2")):
        m = v["raw"]["lines"][key]
        c.plot(m["t"], m["loss"], marker=".", label=label)
    c.axvline(0, color="0.6", lw=0.8)
    c.axvline(1, color="0.6", lw=0.8)
    c.set_xlabel("t: (1 − t) · seed 0 + t · other seed")
    c.legend(fontsize=8)
    _save(plt, fig, figdir / "slices.png",
          "The trained gpt (seed 0): two random directions, their plane, and the straight lines to two other solutions")

    t = v["trajectory"]
    steps = [int(k) for k in t]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    a.errorbar(steps, [t[k]["llc"] for k in t], yerr=[t[k]["std"] for k in t], marker="o", capsize=3, label="λ̂")
    a.set_xlabel("training step")
    a.set_ylabel(f"λ̂ (nβ = {v['settings']['nbeta']:g})")
    a2 = a.twinx()
    a2.plot(steps, [t[k]["loss"] for k in t], color="C1", marker=".", label="batch loss")
    a2.set_ylabel("training loss on the batch (nats)", color="C1")
    b.plot(steps, [t[k]["top"] for k in t], marker="o")
    b.set_xlabel("training step")
    b.set_ylabel("largest Hessian eigenvalue")
    _save(plt, fig, figdir / "trajectory.png", "One gpt run: the local learning coefficient and the sharpest curvature along training")

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    nb = sorted(v["nbeta"].items(), key=lambda kv: kv[1]["nbeta"])
    a.plot([x["nbeta"] for _, x in nb], [x["llc"] for _, x in nb], marker="o", label="λ̂ by SGLD")
    a.errorbar([x["nbeta"] for _, x in nb], [x["quadratic"]["mean"] for _, x in nb], yerr=[x["quadratic"]["std"] for _, x in nb],
               marker="s", ls="--", capsize=3, label="quadratic approximation (from the spectrum)")
    a.set_xscale("log")
    a.set_yscale("symlog", linthresh=10)
    a.set_xlabel("nβ")
    a.set_ylabel("λ̂")
    a.legend(fontsize=8)
    for name, draws in v["raw"]["draws"].items():
        x, y = running_mean(draws[0])  # one chain at each nβ
        b.plot(x, y, lw=0.9, label=f"nβ = {float(v['nbeta'][name]['nbeta']):.3g}")
    b.set_yscale("symlog", linthresh=10)
    b.set_xlabel("SGLD step")
    b.set_ylabel("nβ · (L(w) − L(w*)), moving average")
    b.legend(fontsize=7)
    _save(plt, fig, figdir / "nbeta.png", "The final gpt's λ̂ against the inverse temperature nβ, and one chain at each")


def _save(plt, fig, path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
