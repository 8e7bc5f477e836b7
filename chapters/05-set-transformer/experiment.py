"""Chapter 05: attention without order.

Runs: set-transformer at its book preset (4 layers), three seeds. Ablation, one seed: one layer, which
is exactly permutation-invariant over the prefix (tests/test_set_transformer.py pins it), so the model
can only use which characters came before, not where.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("set-transformer", preset="book", seeds=(0, 1, 2)),
    RunSpec("set-transformer", name="one-layer", label="1 layer (a pure set)", overrides={"model": {"n_layer": 1}}, seeds=(0,), leaderboard=False),
]
