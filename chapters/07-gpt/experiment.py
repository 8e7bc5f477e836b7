"""Chapter 07: the modern recipe.

Runs: gpt at its book preset (the vaswani rung's size, window and budget), three seeds. One more run,
one seed: the nanogpt-cpu preset, nanoGPT's laptop configuration, as a check against a published result.
"""

from zoo.book import Run

CORPUS = "tinyshakespeare"
RUNS = [
    Run("gpt", preset="book", seeds=(0, 1, 2)),
    Run("gpt", preset="nanogpt-cpu", name="nanogpt-cpu", label="nanoGPT's CPU size", seeds=(0,), leaderboard=False),
]
