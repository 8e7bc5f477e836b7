"""Chapter 04: a state carried through time.

Runs: rnn and lstm at their book presets (k = 64 steps of truncated BPTT, 32 streams), three seeds
each, on the ladder's shared budget. Ablation, one seed: the rnn with k = 8 (256 streams of 8, the same
2,048 characters a step), to show what truncation costs.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("rnn", preset="book", seeds=(0, 1, 2)),
    RunSpec("lstm", preset="book", seeds=(0, 1, 2)),
    RunSpec("rnn", name="rnn-k8", label="rnn, k = 8", overrides={"data": {"block_size": 8, "batch_size": 256}}, seeds=(0,), leaderboard=False),
]


def figures(results: dict, figdir) -> None:
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
