"""Chapter 15: data — the same loss on worse data is worth less. Noise, duplication and selection.

Every run is the book's gpt recipe at 800 steps of 16 × 128 characters (40 % of the ladder's budget, as in
chapter 12) unless its name says otherwise, scored on the clean val and test splits:

* ``clean``: no noise (three seeds, the reference and its noise floor);
* ``KIND-P``: P % of the training split's 128-character spans replaced (``--data.noise``) by uniform random
  characters (``random``), by Python documentation (``pydoc``: the embedded corpus, in this vocabulary), or
  by copies of eight passages of the training text (``dup``); three seeds at 25 %;
* ``KIND-25-long``: 25 % noise at the ladder's full 2,000 steps, against chapter 7's clean ``gpt``: how many
  steps does the noise cost?
* ``KIND-P-select``: the same noise, with the worst-scored share P of windows never drawn
  (``--data.select ngram:5 --data.select_drop P``); ``clean-select``: selection on clean text.
"""

import math

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
STEPS = 800  # 40 % of the ladder's 2,000 steps
SHORT = {"trainer": {"max_steps": STEPS, "val_every": 100}}
KINDS = {"random": "random", "pydoc": "corpus:pydoc", "dup": "duplicates"}
FRACTIONS = (0.1, 0.25, 0.5)
SELECT_RULE = "ngram:5"
LONG = ("random", "pydoc")  # noise kinds also trained for the ladder's full budget
SELECTED = (("random", 0.25), ("random", 0.5), ("pydoc", 0.25), ("pydoc", 0.5), ("dup", 0.25))


def merge(*parts: dict) -> dict:
    from zoo.config import deep_merge

    out: dict = {}
    for part in parts:
        out = deep_merge(out, part)
    return out


def noise(kind: str, p: float) -> dict:
    return {"data": {"noise": KINDS[kind], "noise_fraction": p}}


def select(p: float) -> dict:
    return {"data": {"select": SELECT_RULE, "select_drop": p}}


def pct(p: float) -> int:
    return round(p * 100)


RUNS = [
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    # --8<-- [start:runs]
    RunSpec("gpt", name="clean", label="clean", overrides=SHORT, leaderboard=False),
    *(RunSpec("gpt", name=f"{k}-{pct(p)}", label=f"{k}, {pct(p)} %", overrides=merge(SHORT, noise(k, p)), leaderboard=False,
              seeds=(0, 1, 2) if p == 0.25 else (0,)) for k in KINDS for p in FRACTIONS),
    *(RunSpec("gpt", name=f"{k}-25-long", label=f"{k}, 25 %, 2,000 steps", overrides=noise(k, 0.25), seeds=(0,), leaderboard=False)
      for k in LONG),
    *(RunSpec("gpt", name=f"{k}-{pct(p)}-select", label=f"{k}, {pct(p)} %, selected", overrides=merge(SHORT, noise(k, p), select(p)),
              seeds=(0,), leaderboard=False) for k, p in SELECTED),
    RunSpec("gpt", name="clean-select", label="clean, selected", overrides=merge(SHORT, select(0.25)), leaderboard=False),
    # --8<-- [end:runs]
]


def analyse(run_dirs: dict, corpus: str) -> dict:
    runs = {key: [_metrics(d) for d in dirs] for key, dirs in run_dirs.items()}
    clean = _val(runs["clean"])
    table = noise_table(runs, clean)
    from zoo.data import load_splits

    tokenizer, splits = load_splits(corpus)  # once: the vocabulary here, the training split for selection_cost
    vocab_size = tokenizer.vocab_size
    for k, rows in table.items():  # the training loss each run saw at its end, on its own (noisy) batches
        for row in rows.values():
            row["train_loss"] = _final_train_loss(run_dirs[f"{k}-{pct(row['p'])}"][0])
    for row in table["random"].values():
        # no predictor beats the uniform distribution on uniform characters: the changed share alone costs
        # at least changed_share · ln V nats of the mean training loss
        row["train_floor"] = row["changed_share"] * math.log(vocab_size)
    return {"steps": STEPS, "vocab_size": vocab_size, "ln_vocab": math.log(vocab_size),
            "reference": {"val": clean, "train_loss": _final_train_loss(run_dirs["clean"][0])}, "noise": table,
            "long": long_runs(run_dirs, runs), "selection": selection(runs, clean), "selection_cost": selection_cost(tokenizer, splits["train"])}


def selection_cost(tokenizer, train) -> dict:
    """What ``--data.select ngram:5`` costs before training starts: the seconds to count the 5-gram on the
    (25 % random) training split and score every window, measured once here, on one thread."""
    import time

    import torch

    from zoo.corruption import corrupt
    from zoo.selection import select

    block = 128
    noisy, _ = corrupt(train, tokenizer.vocab, "random", 0.25, block, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        _, report = select(noisy, tokenizer.vocab_size, SELECT_RULE, 0.25, block, changed=noisy != train)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return {"seconds": seconds, "windows": report["windows"]}


def _metrics(run_dir) -> dict:
    import json
    from pathlib import Path

    return json.loads((Path(run_dir) / "metrics.json").read_text())


def _val(seeds: list[dict]) -> dict:
    from zoo.summary import stats

    return stats([m["val"]["bpc"] for m in seeds])


def _final_train_loss(run_dir, last: int = 4) -> float:
    """The mean of the last ``last`` logged training losses (nats, on the run's own — noisy — batches)."""
    from pathlib import Path

    from zoo.book.runner import read_curve

    losses = [v for _, v in read_curve(Path(run_dir))["train_loss"]]
    return sum(losses[-last:]) / len(losses[-last:])


def noise_table(runs: dict, clean: dict) -> dict:
    """Per kind and share: clean val bpc, its excess over the clean run, and what was replaced."""
    out = {}
    for k in KINDS:
        rows = {}
        for p in FRACTIONS:
            seeds = runs[f"{k}-{pct(p)}"]
            val = _val(seeds)
            rows[f"p{pct(p)}"] = {"p": p, "val": val, "excess": val["mean"] - clean["mean"],
                                  "excess_in_spreads": (val["mean"] - clean["mean"]) / clean["std"] if clean["std"] else None,
                                  "changed_share": seeds[0]["corruption"]["changed_share"]}
        out[k] = rows
    return out


def long_runs(run_dirs: dict, runs: dict) -> dict:
    """25 % noise at 2,000 steps against chapter 7's clean gpt (same schedule): the first logged step at which
    the noisy run's quick val estimate reaches the clean 800-step run's last one, and the step at which the
    clean run's mean curve reaches the noisy run's last estimate (linear between logged points)."""
    from pathlib import Path

    from zoo.book.runner import read_curve

    clean_800 = _mean_curve([read_curve(Path(d))["val_bpc"] for d in run_dirs["clean"]])
    clean_2000 = _mean_curve([read_curve(Path(d))["val_bpc"] for d in run_dirs["gpt"]])
    target = clean_800[-1][1]
    out = {"clean_800_estimate": target, "clean_2000": _val(runs["gpt"]),
           "curves": {"clean-800": clean_800, "clean": clean_2000}}
    for k in LONG:
        curve = read_curve(Path(run_dirs[f"{k}-25-long"][0]))["val_bpc"]
        reached = next((step + 1 for step, bpc in curve if bpc <= target), None)
        equivalent = clean_steps_to(clean_2000, curve[-1][1])
        out["curves"][k] = curve
        changed = runs[f"{k}-25-long"][0]["corruption"]["changed_share"]
        out[k] = {"val": _val(runs[f"{k}-25-long"]), "steps_to_clean_800": reached, "excess_2000": _val(runs[f"{k}-25-long"])["mean"] - _val(runs["gpt"])["mean"],
                  "final_estimate": curve[-1][1], "clean_steps_equivalent": equivalent,
                  "step_ratio": (curve[-1][0] + 1) / equivalent if equivalent else None,
                  # the ratio if noise only wasted the share of each batch it occupies
                  "share_ratio": 1 / (1 - changed)}
    return out


def _mean_curve(curves: list[list]) -> list:
    """[[step, mean bpc]] over seeds logged at the same steps."""
    import statistics

    return [[points[0][0], statistics.mean(bpc for _, bpc in points)] for points in zip(*curves)]


def clean_steps_to(curve: list, bpc: float) -> float | None:
    """The (interpolated) number of steps after which ``curve`` first reaches ``bpc``; None if it never does."""
    prev = None
    for step, value in curve:
        if value <= bpc:
            if prev is None:
                return step + 1.0
            (s0, v0) = prev
            return s0 + 1 + (step - s0) * (v0 - bpc) / (v0 - value)
        prev = (step, value)
    return None


def selection(runs: dict, clean: dict) -> dict:
    out = {}
    for k, p in SELECTED:
        m = runs[f"{k}-{pct(p)}-select"][0]
        noisy_seeds = _val(runs[f"{k}-{pct(p)}"])
        noisy = noisy_seeds["mean"]
        out[f"{k}_{pct(p)}"] = {"val": m["val"]["bpc"], "noisy": noisy, "clean": clean["mean"], "recovered": (noisy - m["val"]["bpc"]) / (noisy - clean["mean"]),
                               # the gain over the noisy runs in their seed spread (None where the noisy run has one seed)
                               "gain_in_spreads": (noisy - m["val"]["bpc"]) / noisy_seeds["std"] if noisy_seeds["std"] else None,
                               "noisy_share_before": m["selection"].get("noisy_share_before"),
                               "noisy_share_after": m["selection"].get("noisy_share_after")}
    c = _val(runs["clean-select"])
    out["clean"] = {"val": c, "change": c["mean"] - clean["mean"], "change_in_spreads": (c["mean"] - clean["mean"]) / clean["std"] if clean["std"] else None}
    return out


def figures(results: dict, figdir) -> None:
    """noise.png: clean val bpc against the noise share, one line per kind (three seeds at 25 %);
    long.png: val estimates along 2,000 steps, clean against 25 % noise; selection.png: what selection did."""
    import matplotlib.pyplot as plt

    v = results["values"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, rows in v["noise"].items():
        xs = [0.0] + [r["p"] for r in rows.values()]
        ys = [v["reference"]["val"]["mean"]] + [r["val"]["mean"] for r in rows.values()]
        err = [v["reference"]["val"]["std"]] + [r["val"]["std"] for r in rows.values()]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=k)
    ax.set_xlabel("share of the training split replaced")
    ax.set_ylabel("val bpc (clean text)")
    ax2 = ax.twinx()  # the training loss, on each run's own batches: not comparable across shares
    for i, (k, rows) in enumerate(v["noise"].items()):
        ax2.plot([0.0] + [r["p"] for r in rows.values()], [v["reference"]["train_loss"]] + [r["train_loss"] for r in rows.values()],
                 ls=":", marker=".", color=f"C{i}")
    ax2.set_ylabel("final training loss, nats (dotted)")
    ax.set_title(f"gpt at {v['steps']} steps: noise in the training data", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "noise.png", dpi=120)
    plt.close(fig)
    long_figure(v["long"], figdir)
    selection_figure(v["selection"], figdir)


def long_figure(long: dict, figdir) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, style in (("clean", "-"), ("random", "--"), ("pydoc", "--"), ("clean-800", ":")):
        curve = long["curves"][name]
        ax.plot([s + 1 for s, _ in curve], [b for _, b in curve], ls=style, marker="o", ms=3,
                label={"clean": "clean, 2,000 steps (3 seeds)", "clean-800": "clean, 800 steps (3 seeds)"}.get(name, f"{name}, 25 %"))
    ax.axhline(long["clean_800_estimate"], color="grey", lw=0.6)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("val bpc (quick estimate, clean text)")
    ax.set_title("how many steps does 25 % noise cost?", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "long.png", dpi=120)
    plt.close(fig)


def selection_figure(sel: dict, figdir) -> None:
    import matplotlib.pyplot as plt

    keys = [k for k in sel if k != "clean"]
    xs = range(len(keys))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    w = 0.27
    a.bar([x - w for x in xs], [sel[k]["noisy"] for k in keys], w, label="noisy")
    a.bar(list(xs), [sel[k]["val"] for k in keys], w, label="noisy, selected")
    a.axhline(sel[keys[0]]["clean"], color="k", lw=0.8, label="clean")
    a.set_ylim(min(sel[k]["clean"] for k in keys) - 0.1, max(max(sel[k]["val"], sel[k]["noisy"]) for k in keys) + 0.05)
    a.set_xticks(list(xs), [k.replace("_", ", ") + " %" for k in keys], fontsize=8)
    a.set_ylabel("val bpc (clean text)")
    a.legend(fontsize=8)
    b.bar([x - w / 2 for x in xs], [sel[k]["noisy_share_before"] for k in keys], w, label="all windows")
    b.bar([x + w / 2 for x in xs], [sel[k]["noisy_share_after"] for k in keys], w, label="windows kept")
    b.set_xticks(list(xs), [k.replace("_", ", ") + " %" for k in keys], fontsize=8)
    b.set_ylabel("share of windows touching noise")
    b.legend(fontsize=8)
    fig.suptitle("dropping the windows a 5-gram scores worst (as many as the noise share)", fontsize=10)
    fig.tight_layout()
    fig.savefig(figdir / "selection.png", dpi=120)
    plt.close(fig)
