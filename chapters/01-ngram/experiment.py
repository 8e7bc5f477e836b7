"""Chapter 01: counting longer contexts.

Runs: the ngram rung at its book preset (order 7, Kneser–Ney), three seeds (counting is deterministic:
the seeds only change the sample), and single-seed runs of every order from 2 to 10, so the chapter can
show where a longer context stops paying. Computed without training: how many validation contexts of
each length never occur in the training split — the sparsity that ends the n-gram's ladder.
"""

import torch

from zoo.book import RunSpec
from zoo.data import load_splits

CORPUS = "tinyshakespeare"
ORDERS = (2, 3, 4, 5, 6, 8, 10)  # order 7 is the book preset's run
RUNS = [RunSpec("ngram", preset="book", seeds=(0, 1, 2))] + [
    RunSpec("ngram", name=f"ngram-{n}", label=f"order {n}", overrides={"model": {"order": n}}, seeds=(0,), leaderboard=False)
    for n in ORDERS
]
SPARSITY_ORDERS = tuple(range(1, 11))  # context lengths; 65**10 < 2**63 keeps the keys exact


def _grams(tokens: torch.Tensor, n: int, V: int) -> torch.Tensor:
    """Every n-gram of tokens as one integer (base V), shape (len - n + 1,)."""
    if V ** n >= 2**63:
        raise ValueError(f"{n}-grams over {V} symbols do not fit in an int64 key")
    key = torch.zeros(len(tokens) - n + 1, dtype=torch.int64)
    for i in range(n):  # exact: V**n < 2**63 (n <= 10 for V = 65)
        key = key * V + tokens[i:len(tokens) - n + 1 + i].long()
    return key


def compute(corpus: str) -> dict:
    tokenizer, splits = load_splits(corpus)
    V = tokenizer.vocab_size
    unseen = {}
    for context in SPARSITY_ORDERS:  # context length = order - 1
        train = torch.unique(_grams(splits["train"], context, V))
        val = _grams(splits["val"], context, V)
        seen = torch.isin(val, train)
        unseen[str(context)] = {"context": context, "val_contexts": len(val), "unseen_share": 1 - seen.double().mean().item()}
    return {"sparsity": unseen}


def figures(results: dict, figdir) -> None:
    import matplotlib.pyplot as plt

    runs = results["runs"]
    orders = sorted([(runs[k]["per_seed"][0]["config"]["model"]["order"], runs[k]["summary"]["val"]["bpc"]["mean"])
                     for k in runs])
    sparsity = results["values"]["sparsity"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot([o for o, _ in orders], [b for _, b in orders], "o-", color="C0")
    left.set_xlabel("order n (the model sees n − 1 characters)")
    left.set_ylabel("validation loss (bits per character)")
    left.set_title("Kneser–Ney n-gram: validation bpc by order")
    ctx = sorted(sparsity.values(), key=lambda r: r["context"])
    right.plot([r["context"] for r in ctx], [100 * r["unseen_share"] for r in ctx], "s-", color="C3")
    right.set_xlabel("context length (characters)")
    right.set_ylabel("validation contexts never seen in training (%)")
    right.set_title("Why it stops: longer contexts are mostly new")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(figdir / "orders.png")
    plt.close(fig)
