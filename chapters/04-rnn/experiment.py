"""Chapter 04: a state carried through time.

Runs: rnn and lstm at their book presets (k = 64 steps of truncated BPTT, 32 streams), three seeds
each, on the ladder's shared budget. Ablation, one seed: the rnn with k = 8 (256 streams of 8, the same
2,048 characters a step), to show what truncation costs.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"

# The BPTT horizon on the copy task (corpus copy:D, zoo/data.py): after an upper-case cue, repeat the
# letter D steps back. Each cell trains a small model for the same 1,500 steps of 512 characters;
# stateful rungs with truncation k, gpt with a window of k. One seed per cell.
DELAYS, TRUNCATIONS, GPT_WINDOWS = (4, 8), (2, 4, 8, 16), (4, 8, 16)
SMALL = {"rnn": {"n_embd": 16, "n_hidden": 64}, "lstm": {"n_embd": 16, "n_hidden": 64}, "gpt": {}}  # gpt: its quick size


def copy_cell(rung: str, D: int, k: int) -> RunSpec:
    return RunSpec(rung, preset="quick", name=f"copy-{rung}-D{D}-k{k}", seeds=(0,), leaderboard=False, overrides={
        "model": SMALL[rung],
        "data": {"corpus": f"copy:{D}", "block_size": k, "batch_size": 512 // k},
        "optim": {"lr": 3e-3, "warmup_steps": 50, "weight_decay": 0.0, "schedule": "cosine", "min_lr_ratio": 0.1},
        "trainer": {"max_steps": 1500, "val_every": 500, "val_batches": 4}})


CELLS = [copy_cell(r, D, k) for r in ("rnn", "lstm") for D in DELAYS for k in TRUNCATIONS] + [copy_cell("gpt", 8, k) for k in GPT_WINDOWS]
RUNS = [
    RunSpec("rnn", preset="book", seeds=(0, 1, 2)),
    RunSpec("lstm", preset="book", seeds=(0, 1, 2)),
    RunSpec("rnn", name="rnn-k8", label="rnn, k = 8", overrides={"data": {"block_size": 8, "batch_size": 256}}, seeds=(0,), leaderboard=False),
] + CELLS


def analyse(run_dirs: dict, corpus: str) -> dict:
    """Each copy-task cell as the share of the memoryless-to-oracle gap it closed on the validation split:
    0 is what a model that cannot see D steps back achieves, 1 perfect recall (copy_task_bounds, exact)."""
    import json
    import math

    from zoo.data import copy_task_bounds

    out = {"bounds": {}, "gap_closed": {}}
    for D in DELAYS:
        b = copy_task_bounds(D, "val")
        out["bounds"][f"D{D}"] = {"memoryless_bpc": b["memoryless"] / math.log(2), "oracle_bpc": b["oracle"] / math.log(2)}
    for spec in CELLS:
        metrics = json.loads((run_dirs[spec.key][0] / "metrics.json").read_text())
        D, k = spec.overrides["data"]["corpus"].split(":")[1], spec.overrides["data"]["block_size"]
        b = copy_task_bounds(int(D), "val")
        closed = (b["memoryless"] - metrics["val"]["nats"]) / (b["memoryless"] - b["oracle"])
        out["gap_closed"].setdefault(spec.rung, {}).setdefault(f"D{D}", {})[f"k{k}"] = closed
    return {"horizon": out}


def figures(results: dict, figdir) -> None:
    curves(results, figdir)
    horizon(results, figdir)


def horizon(results: dict, figdir) -> None:
    """horizon.png: the share of the copy task's gap each cell closed, against k, one line per rung and delay."""
    import matplotlib.pyplot as plt

    closed = results["values"]["horizon"]["gap_closed"]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    styles = {"rnn": ("C0", "o"), "lstm": ("C1", "s"), "gpt": ("C2", "^")}
    for rung, by_delay in closed.items():
        for D, cells in by_delay.items():
            ks = sorted(int(k[1:]) for k in cells)
            color, marker = styles[rung]
            ax.plot(ks, [100 * cells[f"k{k}"] for k in ks], marker=marker, color=color, ls="-" if D == "D8" else ":",
                    label=f"{rung}, {D.replace('D', 'D = ')}" + (" (window k)" if rung == "gpt" else " (TBPTT k)"))
    for D, ls in ((4, ":"), (8, "-")):
        ax.axvline(D, color="0.6", ls=ls, lw=1)
    ax.set_xscale("log", base=2)
    ks = sorted({int(k[1:]) for by_delay in closed.values() for cells in by_delay.values() for k in cells})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k: characters per TBPTT chunk (rnn, lstm) or attention window (gpt)")
    ax.set_ylabel("memoryless → oracle gap closed (%)")
    ax.set_title("The horizon on copy:D: how much of the recall each k learnt (one seed per point; grey lines: k = D)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "horizon.png")
    plt.close(fig)


def curves(results: dict, figdir) -> None:
    """curves.png again, in two panels: the quick estimates of k = 64 and of k = 8 read windows of different
    lengths from a zero state, so they are not drawn on one axis; the dashed lines are the full-protocol
    scores (the whole split streamed with the state carried), which are comparable across both panels."""
    import matplotlib.pyplot as plt

    from zoo.book import plot_curves

    runs = results["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, names, window in ((left, ("rnn", "lstm"), 64), (right, ("rnn-k8",), 8)):
        for i, name in enumerate(names):
            color = f"C{i if window == 64 else 2}"
            plot_curves(ax, name, runs[name], color=color)
            ax.axhline(runs[name]["summary"]["val"]["bpc"]["mean"], color=color, ls="--", lw=1,
                       label=f"{runs[name]['label']}: full protocol, final")
        ax.set_xscale("log")
        ax.set_xlabel("training characters seen (log scale)")
        ax.set_title(f"quick estimate on {window}-character windows, each from a zero state", fontsize=10)
        ax.legend(fontsize=8)
    left.set_ylabel("validation loss (bits per character)")
    fig.suptitle("RNN and LSTM on tinyshakespeare: the curves of the two panels measure different things; "
                 "the dashed final scores compare", fontsize=10)
    fig.tight_layout()
    fig.savefig(figdir / "curves.png")
    plt.close(fig)
