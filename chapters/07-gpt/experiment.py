"""Chapter 07: the modern recipe.

Runs: gpt at its book preset (the vaswani rung's size, window and budget), three seeds. One more run,
one seed: the nanogpt-cpu preset, nanoGPT's laptop configuration, as a check against a published result.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("gpt", preset="book", seeds=(0, 1, 2)),
    RunSpec("gpt", preset="nanogpt-cpu", name="nanogpt-cpu", label="nanoGPT's CPU size", seeds=(0,), leaderboard=False),
]
