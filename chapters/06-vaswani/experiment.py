"""Chapter 06: positions, heads, residuals.

Runs: vaswani at its book preset (the paper's Adam and warmup/inverse-square-root schedule, no dropout),
three seeds. Ablation, one seed: the paper's label smoothing ε = 0.1, which the rung leaves off.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("vaswani", preset="book", seeds=(0, 1, 2)),
    RunSpec("vaswani", name="label-smoothing", label="label smoothing 0.1", overrides={"optim": {"label_smoothing": 0.1}}, seeds=(0,), leaderboard=False),
]
