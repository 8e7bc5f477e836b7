"""Where the train, val and test splits of a text lie: one rule for every corpus, real or synthetic.

Torch-free, so a synthetic corpus's generator (``zoo.recall``) can say where its splits fall without
importing ``zoo.data``, which registers it.
"""

SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # train, val, test: contiguous, in this order


def split_bounds(n: int) -> dict[str, tuple[int, int]]:
    """Where each split of an n-token text begins and ends: contiguous train / val / test = first 90 %,
    next 5 %, last 5 %."""
    n_train, n_val = int(n * SPLIT_FRACTIONS[0]), int(n * SPLIT_FRACTIONS[1])
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
