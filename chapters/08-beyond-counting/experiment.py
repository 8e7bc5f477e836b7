"""Chapter 08: beyond counting — more compute, regularisation, the context a network uses, and mixing.

Runs shared with earlier chapters (trained there, read here): the counted 7-gram (chapter 01), lstm
(chapter 04), vaswani (chapter 06) and gpt (chapter 07) at the ladder's budget of 2,000 steps of 16 × 128
characters, three seeds each. New here, one seed each: gpt at 2× and 4× that budget and lstm at 2×, 4×
and 8× (the same recipes, only more steps: the cosine schedule stretches with them), and the chapter's best
pure network, gpt with dropout 0.1 at 6× (chosen on validation bpc among the configurations
benchmarks/sweep_beyond_counting.py tried).
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
LADDER_STEPS = 2000


def more_steps(rung: str, times: int, **overrides) -> RunSpec:
    """The rung's book recipe trained ``times`` × the ladder's steps (one seed): a point on its compute curve."""
    section = {"trainer": {"max_steps": times * LADDER_STEPS}}
    if overrides:
        section["model"] = overrides
    return RunSpec(rung, name=f"{rung}-{times}x", label=f"{rung}, {times}× steps", overrides=section, seeds=(0,), leaderboard=False)


RUNS = [
    RunSpec("ngram", seeds=(0,), shared_with="01-ngram", leaderboard=False),
    RunSpec("lstm", shared_with="04-rnn", leaderboard=False),
    RunSpec("vaswani", shared_with="06-vaswani", leaderboard=False),
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    more_steps("gpt", 2), more_steps("gpt", 4),
    more_steps("lstm", 2), more_steps("lstm", 4), more_steps("lstm", 8),
    RunSpec("gpt", name="best", label="gpt, dropout 0.1, 6× steps", seeds=(0,), leaderboard=False,
            overrides={"model": {"dropout": 0.1}, "trainer": {"max_steps": 6 * LADDER_STEPS}}),
]
