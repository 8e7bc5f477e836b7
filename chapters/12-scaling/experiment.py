"""Chapter 12: scaling — does the number of parameters matter more than the shape, and how forgiving is
the learning rate under warm-up and decay? (Kaplan et al. 2020's two claims, at this CPU's scale.)

Every run is the book's gpt recipe (AdamW, β = (0.9, 0.95), weight decay 0.1, warm-up 100 steps, cosine
to a tenth) at 800 steps of 16 × 128 characters — 40 % of the ladder's budget, so that the grid fits in
the chapter's 45 minutes — unless its name says otherwise:

* shapes ``sLxC``: L blocks of width C (4 heads) at three non-embedding budgets, about 12·L·C² =
  50k, 200k and 800k parameters; three seeds at depth 4 of each budget, for the noise floor;
* ``s1x256-lrI``: the one shape that fell far off its budget, 1 × 256, again at the two lower learning
  rates LRS[1] and LRS[2], to tell a bad shape from a learning rate that suits 4 × 128 but not it;
* heads ``hN``: the book's 4 × 128 with N heads;
* learning rates ``SCHEDULE-lrI``: the book's 4 × 128 at learning rate LRS[I] under four schedules —
  warm-up + cosine (the recipe; its lr 6e-3 point is ``s4x128``), warm-up + linear decay, constant after
  warm-up, and cosine with no warm-up;
* Muon ``muon-lrI`` (``--optim.optimizer muon``) at the same learning rates, and ``muon-long`` at the
  book's full budget, against chapter 7's ``gpt`` (shared).
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
STEPS = 800  # 40 % of the ladder's 2,000 steps
SHORT = {"trainer": {"max_steps": STEPS, "val_every": 100}}
BUDGETS = {  # (n_layer, n_embd) holding about 12·L·C² non-embedding parameters
    "50k": ((1, 64), (2, 48), (4, 32), (8, 24)),
    "200k": ((1, 128), (2, 96), (4, 64), (8, 48)),
    "800k": ((1, 256), (2, 192), (4, 128), (8, 96)),
}
WIDE_LRS = (1, 2)  # 1 × 256 again at LRS[1] and LRS[2]
HEADS = (1, 2, 8)  # at 4 × 128, beside the recipe's 4
LRS = (6e-4, 1.3e-3, 2.8e-3, 6e-3, 1.3e-2, 2.8e-2, 6e-2)  # two orders of magnitude around the recipe's 6e-3
RECIPE_LR = 3  # LRS[3] is the recipe's
SCHEDULES = {  # the recipe's cosine over all seven; the others over the five middle points
    "cosine": {},
    "linear": {"schedule": "linear"},
    "constant": {"schedule": "constant"},
    "cold": {"warmup_steps": 0},  # cosine without warm-up
}


def merge(*parts: dict) -> dict:
    from zoo.config import deep_merge

    out: dict = {}
    for part in parts:
        out = deep_merge(out, part)
    return out


def shape(L: int, C: int, heads: int = 4) -> dict:
    return {"model": {"n_layer": L, "n_embd": C, "n_head": heads}}


def lr_points(schedule: str) -> range:
    return range(len(LRS)) if schedule == "cosine" else range(1, len(LRS) - 1)


RUNS = [
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    # --8<-- [start:shapes]
    *(RunSpec("gpt", name=f"s{L}x{C}", label=f"{L} × {C}", overrides=merge(SHORT, shape(L, C)), leaderboard=False,
              seeds=(0, 1, 2) if L == 4 else (0,))
      for shapes in BUDGETS.values() for L, C in shapes),
    *(RunSpec("gpt", name=f"s1x256-lr{i}", label=f"1 × 256, lr {LRS[i]:g}", seeds=(0,), leaderboard=False,
              overrides=merge(SHORT, shape(1, 256), {"optim": {"lr": LRS[i]}})) for i in WIDE_LRS),
    *(RunSpec("gpt", name=f"h{h}", label=f"4 × 128, {h} head{'s' if h > 1 else ''}", overrides=merge(SHORT, shape(4, 128, h)),
              seeds=(0,), leaderboard=False) for h in HEADS),
    # --8<-- [end:shapes]
    # --8<-- [start:rates]
    *(RunSpec("gpt", name=f"{schedule}-lr{i}", label=f"{schedule}, lr {LRS[i]:g}", seeds=(0,), leaderboard=False,
              overrides=merge(SHORT, shape(4, 128), {"optim": {"lr": LRS[i], **options}}))
      for schedule, options in SCHEDULES.items() for i in lr_points(schedule) if not (schedule == "cosine" and i == RECIPE_LR)),
    *(RunSpec("gpt", name=f"muon-lr{i}", label=f"Muon, lr {LRS[i]:g}", seeds=(0,), leaderboard=False,
              overrides=merge(SHORT, shape(4, 128), {"optim": {"optimizer": "muon", "lr": LRS[i]}})) for i in lr_points("muon")),
    RunSpec("gpt", name="muon-long", label="Muon, the book's budget", seeds=(0,), leaderboard=False,
            overrides={"optim": {"optimizer": "muon"}}),
    # --8<-- [end:rates]
]


BAND = (6, 64)  # widths per block (C / L) whose shapes tied their budget's best in the earlier results (ef65562): read off them, now held fixed
KAPLAN_ALPHA_N = 0.076  # Kaplan et al. 2020, eq. (1.1): L(N) = (N_c / N)^0.076, N without embeddings
WITHIN = (0.02, 0.05)  # "within a few percent of the best": of the best val loss, in nats


def analyse(run_dirs: dict, corpus: str) -> dict:
    """Shapes against budgets and the power law, heads, each schedule's learning-rate curve, and Muon."""
    runs = {key: [_metrics(d) for d in dirs] for key, dirs in run_dirs.items()}
    return {"steps": STEPS, "lrs": list(LRS), "shapes": shapes(runs), "heads": heads(runs), "rates": rates(runs), "muon": muon(runs, run_dirs)}


def _metrics(run_dir) -> dict:
    """A run's metrics.json, or {"diverged": why} for a run whose training diverged."""
    import json
    from pathlib import Path

    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    return {"diverged": json.loads((run_dir / "diverged.json").read_text())["diverged"]}


def _val(seeds: list[dict]) -> dict | None:
    """Mean, spread, min and max of val bpc over the seeds that finished; None if none did."""
    from zoo.summary import stats

    done = [m["val"]["bpc"] for m in seeds if "val" in m]
    return stats(done) if done else None


def shapes(runs: dict) -> dict:
    """Every shape's size and score, each budget's spread across shapes, and L(N) fitted as a power law."""
    import math

    import numpy as np

    points, budgets = [], {}
    for budget, members in BUDGETS.items():
        rows = []
        for L, C in members:
            seeds = runs[f"s{L}x{C}"]
            rows.append({"name": f"s{L}x{C}", "n_layer": L, "n_embd": C, "params": seeds[0]["params"],
                         "non_embedding": seeds[0]["params_non_embedding"], "val": _val(seeds)})
        means = [r["val"]["mean"] for r in rows]
        noise = rows[2]["val"]["std"]  # depth 4 has three seeds
        for row in rows:  # width per block, and how far behind the budget's best shape (in bpc, and in seed spreads)
            row["width_per_block"] = row["n_embd"] / row["n_layer"]
            row["behind"] = row["val"]["mean"] - min(means)
            row["behind_in_spreads"] = row["behind"] / noise
        budgets[budget] = {"shapes": rows, "best": min(means), "worst": max(means), "spread": max(means) - min(means),
                           "best_shape": rows[means.index(min(means))]["name"], "worst_shape": rows[means.index(max(means))]["name"],
                           "noise": noise}
        points += rows
    band = [r for r in points if BAND[0] <= r["width_per_block"] <= BAND[1]]
    outside = [r for r in points if r not in band]
    in_band = {"low": BAND[0], "high": BAND[1], "shapes": len(band), "most_behind_in_spreads": max(r["behind_in_spreads"] for r in band),
               "outside": len(outside), "outside_least_behind_in_spreads": min(r["behind_in_spreads"] for r in outside)}
    names = list(budgets)
    gains = {f"{a}_to_{b}": budgets[a]["best"] - budgets[b]["best"] for a, b in zip(names, names[1:])}

    def fit(xs, ys):  # log L = a - alpha log N, least squares; alpha's standard error from the residuals
        x, y = np.log(np.array(xs, dtype=float)), np.log(np.array(ys, dtype=float))
        A = np.stack([np.ones_like(x), -x], axis=1)
        coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
        dof = len(x) - 2
        sigma2 = float(((y - A @ coef) ** 2).sum() / dof) if dof > 0 else float("nan")
        se = math.sqrt(sigma2 * np.linalg.inv(A.T @ A)[1, 1]) if dof > 0 else float("nan")
        return {"alpha": float(coef[1]), "alpha_se": se, "points": len(xs)}

    nats = [r["val"]["mean"] * math.log(2) for r in points]  # Kaplan's L is in nats
    best = [min(budgets[b]["shapes"], key=lambda r: r["val"]["mean"]) for b in names]
    wide = {"recipe": {"lr": LRS[RECIPE_LR], "val": _val(runs["s1x256"])["mean"]},
            **{f"lr{i}": {"lr": LRS[i], "val": _val(runs[f"s1x256-lr{i}"])["mean"]} for i in WIDE_LRS}}
    wide["best"] = min(wide.values(), key=lambda p: p["val"])
    return {"budgets": budgets, "gains": gains, "kaplan_alpha": KAPLAN_ALPHA_N, "wide_shallow": wide, "band": in_band,
            "fit_non_embedding": fit([r["non_embedding"] for r in points], nats),
            "fit_total": fit([r["params"] for r in points], nats),
            "fit_best_per_budget": fit([r["non_embedding"] for r in best], [r["val"]["mean"] * math.log(2) for r in best])}


def heads(runs: dict) -> dict:
    """4 × 128 with 1, 2, 4 and 8 heads."""
    out = {f"h{h}": {"heads": h, "val": _val(runs[f"h{h}"])} for h in HEADS}
    out["h4"] = {"heads": 4, "val": _val(runs["s4x128"])}
    four = out["h4"]["val"]
    for row in out.values():  # how far behind the recipe's four heads, in bpc and in four heads' seed spreads
        row["behind_h4"] = row["val"]["mean"] - four["mean"]
        row["behind_h4_in_spreads"] = row["behind_h4"] / four["std"]
    return out


def rates(runs: dict) -> dict:
    """Per schedule: val bpc at every learning rate (None where it diverged), the best, and the range of
    learning rates whose val loss is within 2 % and 5 % of that best."""
    out = {}
    for schedule in [*SCHEDULES, "muon"]:
        points = []
        for i in lr_points(schedule):
            key = "s4x128" if (schedule == "cosine" and i == RECIPE_LR) else f"{schedule}-lr{i}"
            seeds = runs[key]
            val = _val(seeds if key != "s4x128" else seeds[:1])  # one seed per point, as every other point has
            points.append({"lr": LRS[i], "val": val["mean"] if val else None,
                           "diverged": next((m["diverged"] for m in seeds if "diverged" in m), None)})
        done = [p for p in points if p["val"] is not None]
        best = min(done, key=lambda p: p["val"])
        for p in done:
            p["excess"] = p["val"] / best["val"] - 1  # above this schedule's best, as a fraction of it
        within = {}
        for w in WITHIN:
            ok = [p["lr"] for p in done if p["val"] <= best["val"] * (1 + w)]
            within[f"{round(w * 100)}pct"] = {"low": min(ok), "high": max(ok), "ratio": max(ok) / min(ok), "points": len(ok)}
        out[schedule] = {"points": points, "best_lr": best["lr"], "best": best["val"], "within": within,
                         "diverged": sum(p["diverged"] is not None for p in points)}
    noise = _val(runs["s4x128"])["std"]  # the recipe point's seed spread
    for row in out.values():  # each schedule's best against the recipe's (cosine's) best, also in seed spreads
        row["vs_cosine"] = row["best"] / out["cosine"]["best"] - 1
        row["vs_cosine_in_spreads"] = (row["best"] - out["cosine"]["best"]) / noise
    return out


def muon(runs: dict, run_dirs: dict) -> dict:
    """Muon at the book's full budget against chapter 7's gpt (AdamW): the protocol's val bpc of both, and
    the first step at which Muon's quick validation estimate reaches AdamW's final one (mean over its seeds)."""
    import statistics

    from zoo.book.runner import read_curve

    adamw_curves = [dict(map(tuple, read_curve(d)["val_bpc"])) for d in run_dirs["gpt"]]
    target = statistics.mean(c[max(c)] for c in adamw_curves)  # AdamW's last quick estimate, at the end of training
    curve = read_curve(run_dirs["muon-long"][0])["val_bpc"]
    reached = next((step + 1 for step, bpc in curve if bpc <= target), None)  # logged step s = s + 1 optimiser steps done
    long, adamw = _val(runs["muon-long"]), _val(runs["gpt"])
    return {"long": long, "adamw": adamw, "adamw_final_estimate": target,
            "steps_to_adamw_final": reached, "adamw_steps": runs["gpt"][0]["steps"],
            "steps_share": reached / runs["gpt"][0]["steps"] if reached else None,
            "estimate_every": curve[1][0] - curve[0][0],  # the quick estimate's cadence: "reached" is this coarse
            "gain": adamw["mean"] - long["mean"], "gain_in_spreads": (adamw["mean"] - long["mean"]) / adamw["std"]}


def figures(results: dict, figdir) -> None:
    """shape.png: val bpc against non-embedding parameters, one marker per shape; rates.png: val bpc against
    learning rate, one line per schedule and one for Muon."""
    import matplotlib.pyplot as plt

    v = results["values"]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    markers = {1: "v", 2: "s", 4: "o", 8: "D"}
    for L, marker in markers.items():
        rows = [r for b in v["shapes"]["budgets"].values() for r in b["shapes"] if r["n_layer"] == L]
        ax.errorbar([r["non_embedding"] for r in rows], [r["val"]["mean"] for r in rows],
                    yerr=[[r["val"]["mean"] - r["val"]["min"] for r in rows], [r["val"]["max"] - r["val"]["mean"] for r in rows]],
                    marker=marker, ls="", capsize=3, label=f"{L} block{'s' if L > 1 else ''}")
    x = v["shapes"]["budgets"]["800k"]["shapes"][2]["non_embedding"]  # 4 × 128: heads change no parameter count
    for key, row in v["heads"].items():
        if key != "h4":
            ax.plot(x, row["val"]["mean"], "x", color="k")
            ax.annotate(f"{row['heads']} head{'s' if row['heads'] > 1 else ''}", (x, row["val"]["mean"]), fontsize=7,
                        xytext=(5, 0), textcoords="offset points")
    wide = v["shapes"]["wide_shallow"]["best"]  # 1 × 256 at its own best learning rate
    ax.plot(v["shapes"]["budgets"]["800k"]["shapes"][0]["non_embedding"], wide["val"], "v", mfc="none", color="C0")
    ax.annotate(f"1 × 256 at lr {wide['lr']:g}", (v["shapes"]["budgets"]["800k"]["shapes"][0]["non_embedding"], wide["val"]),
                fontsize=7, xytext=(-8, -2), textcoords="offset points", ha="right")
    _finish(plt, fig, ax, "parameters without the embedding table", f"gpt at {v['steps']} steps: shape against size (×: heads at 4 × 128)",
            figdir / "shape.png")

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for schedule, row in v["rates"].items():
        pts = [p for p in row["points"] if p["val"] is not None]
        ax.plot([p["lr"] for p in pts], [p["val"] for p in pts], marker="o", label=LEGEND[schedule])
        for p in row["points"]:
            if p["val"] is None:
                ax.axvline(p["lr"], ls=":", lw=0.8, color="0.5")
    _finish(plt, fig, ax, "peak learning rate", f"The book's gpt (4 × 128) at {v['steps']} steps: learning rate × schedule",
            figdir / "rates.png")


LEGEND = {"cosine": "AdamW, warm-up + cosine (the recipe)", "linear": "AdamW, warm-up + linear decay",
          "constant": "AdamW, warm-up + constant", "cold": "AdamW, cosine without warm-up", "muon": "Muon, warm-up + cosine"}


def _finish(plt, fig, ax, xlabel: str, title: str, path) -> None:
    """Both figures: val bpc against a quantity on a log axis, a legend, saved."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val bpc")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
