"""Chapter 02: learned, shared embeddings.

Runs: bengio-mlp at its book preset (8 characters of context), three seeds, on the ladder's shared
budget (2,000 steps of 2,048 characters). Ablations, one seed each: 4 and 16 characters of context,
where the n-gram could not go past 6 before sparsity won.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("bengio-mlp", preset="book", seeds=(0, 1, 2)),
    RunSpec("bengio-mlp", name="context-4", label="4 characters", overrides={"model": {"context": 4}}, seeds=(0,), leaderboard=False),
    RunSpec("bengio-mlp", name="context-16", label="16 characters", overrides={"model": {"context": 16}}, seeds=(0,), leaderboard=False),
]
