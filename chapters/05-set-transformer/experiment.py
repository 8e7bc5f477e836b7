"""Chapter 05: the runs behind the chapter's numbers (see chapters/README.md).

Each rung at its book preset on tinyshakespeare, three seeds; `zoo chapter run 05` trains them and
writes results.json and figures/ here. Add ablations as further Run(...) entries with leaderboard=False.
"""

from zoo.book import Run

CORPUS = "tinyshakespeare"
RUNS = [
    Run("set-transformer", preset="book", seeds=(0, 1, 2)),
]
