"""Chapter 04: a state carried through time.

Runs: rnn and lstm at their book presets (k = 64 steps of truncated BPTT, 32 streams), three seeds
each, on the ladder's shared budget. Ablation, one seed: the rnn with k = 8 (256 streams of 8, the same
2,048 characters a step), to show what truncation costs.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("rnn", preset="book", seeds=(0, 1, 2)),
    RunSpec("lstm", preset="book", seeds=(0, 1, 2)),
    RunSpec("rnn", name="rnn-k8", label="rnn, k = 8", overrides={"data": {"block_size": 8, "batch_size": 256}}, seeds=(0,), leaderboard=False),
]
