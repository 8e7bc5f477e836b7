"""Chapter 00: the task, the harness and the baselines every rung must beat.

Runs: the learned bigram table (rung 0) at its book preset, three seeds. Computed here, without any
training: the uniform, unigram and counted-bigram baselines on the same splits, scored on the same
targets as the protocol scores (every character of a split after its first, each exactly once).
"""

import math

import torch

from zoo.book import RunSpec
from zoo.data import load_splits

CORPUS = "tinyshakespeare"
RUNS = [RunSpec("bigram", preset="book", seeds=(0, 1, 2))]
ALPHA = 1.0  # add-one (Laplace) smoothing for the counted baselines, so an unseen pair is not infinitely costly


def _score(log_probs: torch.Tensor) -> dict:
    """log-probabilities (natural log) of every scored target -> the protocol's {tokens, nats, bpc}."""
    nats = -log_probs.double().mean().item()
    return {"tokens": len(log_probs), "nats": nats, "bpc": nats / math.log(2)}


def counts(corpus: str):
    """Unigram counts n[c] and bigram counts n[a, b] of the train split."""
    tokenizer, splits = load_splits(corpus)
    V, train = tokenizer.vocab_size, splits["train"]
    unigram = torch.bincount(train, minlength=V).double()  # (V,)
    bigram = torch.bincount(train[:-1] * V + train[1:], minlength=V * V).double().view(V, V)  # (V, V): row = current
    return tokenizer, splits, unigram, bigram


def compute(corpus: str) -> dict:
    tokenizer, splits, unigram, bigram = counts(corpus)
    V = tokenizer.vocab_size
    p_unigram = (unigram + ALPHA) / (unigram.sum() + ALPHA * V)  # (V,)
    p_bigram = (bigram + ALPHA) / (bigram.sum(1, keepdim=True) + ALPHA * V)  # (V, V): P(next | current)
    out = {"uniform": {}, "unigram": {}, "counted_bigram": {}}
    for name in ("val", "test"):
        tokens = splits[name]
        prev, targets = tokens[:-1], tokens[1:]  # the protocol scores targets 1 .. N-1
        out["uniform"][name] = _score(torch.full((len(targets),), -math.log(V)))
        out["unigram"][name] = _score(p_unigram[targets].log())
        out["counted_bigram"][name] = _score(p_bigram[prev, targets].log())
    # the entropy of the train split's own unigram distribution: what a unigram model pays on the text it counted
    p = unigram / unigram.sum()
    out["data"] = {
        "vocab_size": V,
        "characters": sum(len(s) for s in splits.values()),
        "train": len(splits["train"]), "val": len(splits["val"]), "test": len(splits["test"]),
        "unseen_val_pairs": int((bigram[splits["val"][:-1], splits["val"][1:]] == 0).sum()),
        "train_unigram_entropy_bits": -(p[p > 0] * p[p > 0].log2()).sum().item(),
        "alpha": ALPHA,
    }
    # the rows of the counted table that chapter 00's text cites (raw counts of the train split, no smoothing)
    stoi = tokenizer.stoi
    after = {c: bigram[stoi[c]] / bigram[stoi[c]].sum() for c in (",", "q", "\n")}  # (V,) each: P(next | c)
    capitals = [i for i, c in enumerate(tokenizer.vocab) if c.isupper()]
    out["cited"] = {
        "space_or_newline_after_comma": (after[","][stoi[" "]] + after[","][stoi["\n"]]).item(),
        "u_after_q": after["q"][stoi["u"]].item(),
        "capital_after_newline": after["\n"][capitals].sum().item(),
        "newline_after_newline": after["\n"][stoi["\n"]].item(),
    }
    return out


def figures(results: dict, figdir) -> None:
    import matplotlib.pyplot as plt

    from zoo.book import plot_curves

    values = results["values"]
    # 1. the learned bigram's validation curve against the counted baselines: full scale, then zoomed in
    run = results["runs"]["bigram"]
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [1, 1]})
    for ax in (full, zoom):
        plot_curves(ax, "bigram", run, color="C0", label="learned bigram table")
        for key, label, style in (("uniform", "uniform: log₂ V", ":"), ("unigram", "unigram (counted)", "-."),
                                  ("counted_bigram", "bigram (counted, add-one)", "--")):
            ax.axhline(values[key]["val"]["bpc"], color="0.35", ls=style, lw=1.2, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("training characters seen (log scale)")
        ax.set_ylabel("validation loss (bits per character)")
    full.set_title("all baselines")
    full.legend(fontsize=8, loc="center right")
    curve = [v for seed in run["per_seed"] for _, v in seed["curve"]["val_bpc"]]
    target = values["counted_bigram"]["val"]["bpc"]
    low, high = min(curve + [target]), max(curve + [target])
    pad = max(0.01, 0.15 * (high - low))
    zoom.set_ylim(low - pad, high + pad)
    zoom.set_title("zoomed in: learned vs counted bigram")
    fig.suptitle(f"Baselines on {results['corpus']['name']} (validation estimates during training; mean of seeds, band = min–max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(figdir / "baselines.png")
    plt.close(fig)

    # 2. the counted table P(next | current) for the most frequent characters
    tokenizer, _, unigram, bigram = counts(results["corpus"]["name"])
    top = unigram.argsort(descending=True)[:24]  # (24,)
    p = ((bigram + ALPHA) / (bigram.sum(1, keepdim=True) + ALPHA * tokenizer.vocab_size))[top][:, top]  # (24, 24)
    names = [repr(tokenizer.vocab[i])[1:-1].replace(" ", "␣") for i in top.tolist()]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(p.numpy(), cmap="viridis")
    ax.set_xticks(range(len(names)), names, fontsize=9)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    ax.set_xlabel("next character")
    ax.set_ylabel("current character")
    ax.grid(False)
    ax.set_title("Counted P(next | current), 24 most frequent characters")
    fig.colorbar(im, ax=ax, label="probability")
    fig.tight_layout()
    fig.savefig(figdir / "bigram-table.png")
    plt.close(fig)

    # 3. three rows of the counted table in full: what follows a comma, a q and a line break
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, c in zip(axes, (",", "q", "\n")):
        row = bigram[tokenizer.stoi[c]] / bigram[tokenizer.stoi[c]].sum()  # (V,) raw counts, normalised
        top = row.argsort(descending=True)[:8]  # (8,)
        ax.bar(range(len(top)), row[top].numpy(), color="C0")
        ax.set_xticks(range(len(top)), [repr(tokenizer.vocab[i])[1:-1].replace(" ", "␣") for i in top.tolist()])
        ax.set_ylim(0, 1)
        ax.set_title(f"after {repr(c)[1:-1].replace(' ', '␣')!r} ({int(bigram[tokenizer.stoi[c]].sum()):,} times)", fontsize=10)
        ax.set_xlabel("next character")
    axes[0].set_ylabel("counted P(next | current)")
    fig.suptitle("Three rows of the counted bigram table (train split), the 8 likeliest next characters", fontsize=10)
    fig.tight_layout()
    fig.savefig(figdir / "bigram-rows.png")
    plt.close(fig)
