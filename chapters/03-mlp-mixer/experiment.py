"""Chapter 03: the runs behind the chapter's numbers (see chapters/README.md).

Each rung at its book preset on tinyshakespeare, three seeds; `zoo chapter run 03` trains them and
writes results.json and figures/ here. Add ablations as further RunSpec(...) entries with leaderboard=False.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("mlp-mixer", preset="book", seeds=(0, 1, 2)),
]
