"""Chapter 07: the modern recipe.

Runs: gpt at its book preset (the vaswani rung's size, window and budget), three seeds. One more run,
one seed: the nanogpt-cpu preset, nanoGPT's laptop configuration, as a check against a published result.
Computed without training: what the zero-initialised model predicts and scores before its first step.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("gpt", preset="book", seeds=(0, 1, 2)),
    RunSpec("gpt", preset="nanogpt-cpu", name="nanogpt-cpu", label="nanoGPT's CPU size", seeds=(0,), leaderboard=False),
]

INIT_SEEDS = (0, 1, 2)


def compute(corpus: str) -> dict:
    """What the zero-initialised, tied gpt predicts before its first step (the book preset, seeds 0-2).

    With every residual branch's output matrix at zero, x_L = x_0 = E[x_t] and the logits are
    RMSNorm(E[x_t]) Eᵀ: a function of the current character alone, a V×V table. Its diagonal is
    ||E_i||·√C (times the norm's gain), so it tends to peak at the current character itself: an echo.
    """
    import math

    import torch

    import zoo
    from zoo.evaluate import score
    from zoo.runs import prepare

    per_seed = []
    for seed in INIT_SEEDS:
        config = zoo.make_config("gpt", "book", seed, {"data": {"corpus": corpus}})
        data, model = prepare(config)  # the model exactly as the run builds it, before any step
        model.eval()
        V = data.vocab_size
        with torch.no_grad():
            table = model(torch.arange(V)[None])[0]  # (V, V): row i = logits after character i, at any position
            val = data.splits["val"]
            follows = torch.bincount(val[:-1], minlength=V).double()  # (V,) how often each character is a context
            echo = (table.argmax(-1) == torch.arange(V)).double()  # (V,) 1 where the top prediction is the character itself
            result = score(model, val, config.data.block_size)
        per_seed.append({"val_bpc": result["bpc"], "echo_share": (echo @ follows / follows.sum()).item(),
                         "echo_rows": int(echo.sum())})
    def mean(key):
        return sum(s[key] for s in per_seed) / len(per_seed)

    return {"init": {"val_bpc": mean("val_bpc"), "echo_share": mean("echo_share"), "echo_rows": min(s["echo_rows"] for s in per_seed),
                     "vocab_size": V, "uniform_bpc": math.log2(V), "seeds": len(per_seed), "per_seed": per_seed}}


def analyse(run_dirs: dict, corpus: str) -> dict:
    """The trained runs scored by nanoGPT's estimator too (``zoo eval RUN --estimator nanogpt``), so the
    chapter can put both protocols side by side: 200 batches of each run's own batch size and window."""
    import torch

    import zoo
    from zoo.data import load_corpus, split
    from zoo.evaluate import nanogpt_estimate

    text, out = load_corpus(corpus).text, {}
    for key in ("nanogpt-cpu", "gpt"):
        per_seed = []
        for run_dir in run_dirs[key]:
            run = zoo.load_run(run_dir)
            splits = split(run.tokenizer.encode(text))
            last_tenth = torch.cat([splits["val"], splits["test"]])  # nanoGPT's validation split
            d = run.config.data
            per_seed.append(nanogpt_estimate(run.model, last_tenth, d.block_size, d.batch_size, batches=200, seed=0)["nats"])
        out[key.replace("-", "_")] = {"nats": sum(per_seed) / len(per_seed), "seeds": len(per_seed)}
    return {"nanogpt_estimator": out}
