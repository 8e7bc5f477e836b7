"""Chapter 09: compute curves — gpt, lstm and vaswani at 1×, 2×, 4× and 8× the ladder's budget, against the counts.

Chapter 8 trained gpt at 2× and 4× and lstm at 2× and 8× the ladder's 2,000 steps, inside its 45 minutes
beside its best run. This chapter completes the three curves — gpt at 8×, lstm at 4×, vaswani at 2×, 4×
and 8× — and adds two more seeds of gpt at 2×, where it first crosses the counts. Everything else is
read, not retrained (``shared_with``): the 1× runs of chapters 1, 4, 6 and 7 and the longer runs of
chapter 8. The recipes are the book's, unchanged; only the number of steps grows, and the cosine
schedule stretches with it.
"""

from pathlib import Path

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
LADDER_STEPS = 2000
MULTIPLES = (2, 4, 8)  # each network's budgets past 1×, as multiples of the ladder's steps
BEYOND = "08-beyond-counting"
TRAINED_IN_08 = {("gpt", 2), ("gpt", 4), ("lstm", 2), ("lstm", 8)}  # and read here
MORE_SEEDS = {("gpt", 2): (1, 2)}  # where gpt first crosses the counts: seed 0 is chapter 8's
NETWORKS = ("gpt", "lstm", "vaswani")


def longer(rung: str, times: int, seeds: tuple = (0,), name: str | None = None) -> RunSpec:
    """The rung's book recipe trained ``times`` × the ladder's steps (chapter 8's recipe exactly)."""
    return RunSpec(rung, name=name or f"{rung}-{times}x", label=f"{rung}, {times}× steps", seeds=seeds, leaderboard=False,
                   overrides={"trainer": {"max_steps": times * LADDER_STEPS}},
                   shared_with=BEYOND if (rung, times) in TRAINED_IN_08 and name is None else None)


RUNS = [
    RunSpec("ngram", seeds=(0,), shared_with="01-ngram", leaderboard=False),
    RunSpec("lstm", shared_with="04-rnn", leaderboard=False),
    RunSpec("vaswani", shared_with="06-vaswani", leaderboard=False),
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    *(longer(rung, times) for rung in NETWORKS for times in MULTIPLES),
    *(longer(rung, times, seeds, name=f"{rung}-{times}x-more-seeds") for (rung, times), seeds in MORE_SEEDS.items()),
]


def _beyond_counting():
    """Chapter 8's experiment module: its curve and seen-text measurements are reused here as they are."""
    from zoo.book.layout import Chapter

    return Chapter(BEYOND, Path(__file__).resolve().parent.parent / BEYOND).experiment()


def analyse(run_dirs: dict, corpus: str) -> dict:
    """The three curves (val and test bpc, training characters, CPU-seconds per point), where each crosses
    the 7-gram, and each run scored on text it trained on (how much of the gain is memorised)."""
    import torch

    import zoo
    from zoo.data import load_corpus, split

    beyond = _beyond_counting()
    extra = {f"{rung}-{times}x": f"{rung}-{times}x-more-seeds" for rung, times in MORE_SEEDS}
    found = {"curves": beyond.curves(run_dirs, {net: MULTIPLES for net in NETWORKS}, extra)}
    text = load_corpus(corpus).text
    runs = {key: [zoo.load_run(d) for d in dirs] for key, dirs in run_dirs.items() if not key.endswith("-more-seeds")}
    splits = split(runs["gpt"][0].tokenizer.encode(text))
    with torch.no_grad():
        found["seen_text"] = beyond.seen_text(runs, splits)
    found["crossings"] = crossings(found["curves"])
    return found


def crossings(curves: dict) -> dict:
    """Per network and split: the first budget below the counts (its CPU-seconds on one core, its margin,
    and the margin in seed standard deviations: the point's own where it has seeds, else the network's
    1× spread), and the budget with the lowest bpc; ``first`` is None where the curve never crosses."""
    out = {}
    for net in NETWORKS:
        points = sorted(curves[net]["points"].values(), key=lambda p: p["times"])
        out[net] = {}
        for s in ("val", "test"):
            below = [p for p in points if p[f"{s}_margin"] > 0]
            first = None
            if below:
                p = below[0]
                std = p[f"{s}_std"] or points[0][f"{s}_std"]  # points[0] is 1×, three seeds
                first = {"times": p["times"], "wall_s": p["wall_s"], "margin": p[f"{s}_margin"], "spreads": p[f"{s}_margin"] / std,
                         "spread_from": "own seeds" if p[f"{s}_std"] else "1× seeds"}
            lowest = min(points, key=lambda p: p[s])
            out[net][s] = {"first": first, "lowest": {"times": lowest["times"], "bpc": lowest[s]}}
    return out


def figures(results: dict, figdir) -> None:
    """curves.png: val and test bpc against training characters (top) and against training CPU-seconds
    on one core (bottom), per network, the 7-gram as a dashed line."""
    import matplotlib.pyplot as plt

    v = results["values"]["curves"]
    colors = {"gpt": "C0", "lstm": "C2", "vaswani": "C1"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.6))
    for col, split in enumerate(("val", "test")):
        for row, (x, label) in enumerate((("tokens", "training characters"), ("wall_s", "training CPU-seconds (one core)"))):
            ax = axes[row][col]
            for net in NETWORKS:
                pts = sorted(v[net]["points"].values(), key=lambda p: p["times"])
                ax.errorbar([p[x] for p in pts], [p[split] for p in pts], yerr=[p[f"{split}_std"] or 0 for p in pts],
                            marker="o", color=colors[net], capsize=3, label=net)
                for p in pts:
                    ax.annotate(f"{p['times']}×", (p[x], p[split]), textcoords="offset points", xytext=(4, 4), fontsize=7,
                                color=colors[net])
            ax.axhline(v["ngram"][split], color="0.3", ls="--", lw=1, label="counted 7-gram")
            ax.set_xscale("log", base=2)
            ax.set_xlabel(label)
            ax.set_ylabel(f"{split} bpc")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{split} split", fontsize=10)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Each network's book recipe at 1×, 2×, 4× and 8× the ladder's 2,000 steps", fontsize=11)
    fig.tight_layout()
    fig.savefig(figdir / "curves.png")
    plt.close(fig)
