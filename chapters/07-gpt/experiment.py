"""Chapter 07: the modern recipe.

Runs: gpt at its book preset (the vaswani rung's size, window and budget), three seeds. One more run,
one seed: the nanogpt-cpu preset, nanoGPT's laptop configuration, as a check against a published result.
The recipe taken apart: nine leave-one-out runs, one seed each, every one of the chapter's changes
turned back to the vaswani rung's choice on its own (GPTConfig's ablation switches, or an optim override).
Computed without training: what the zero-initialised model predicts and scores before its first step.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
# The recipe taken apart: leave-one-out from gpt, each change of the chapter's table turned back to what
# the vaswani rung does, one at a time, at the same budget (one seed each; see the chapter for spreads).
LEAVE_ONE_OUT = {
    "no-rmsnorm": ("LayerNorm instead of RMSNorm", {"model": {"norm": "layernorm"}}),
    "post-norm": ("post-norm instead of pre-norm", {"model": {"prenorm": False}}),
    "no-rope": ("sinusoids added at the input instead of RoPE", {"model": {"positions": "sinusoidal"}}),
    "no-swiglu": ("ReLU MLP (4C) instead of SwiGLU", {"model": {"mlp": "relu"}}),
    "biases": ("biases everywhere", {"model": {"bias": True}}),
    "no-zero-init": ("no zero-initialised projections", {"model": {"zero_init": False}}),
    "no-decay": ("no weight decay", {"optim": {"weight_decay": 0.0}}),
    "beta2-high": ("β₂ 0.98 instead of 0.95", {"optim": {"betas": [0.9, 0.98]}}),
    "inverse-sqrt": ("inverse-square-root schedule instead of cosine", {"optim": {"schedule": "inverse_sqrt"}}),
}
RUNS = [
    RunSpec("gpt", preset="book", seeds=(0, 1, 2)),
    RunSpec("gpt", preset="nanogpt-cpu", name="nanogpt-cpu", label="nanoGPT's CPU size", seeds=(0,), leaderboard=False),
] + [RunSpec("gpt", name=name, label=label, overrides=overrides, seeds=(0,), leaderboard=False)
     for name, (label, overrides) in LEAVE_ONE_OUT.items()]

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
    return {"nanogpt_estimator": out, "leave_one_out": leave_one_out(run_dirs)}


def leave_one_out(run_dirs: dict) -> dict:
    """Each leave-one-out run against the full recipe's seeds: the difference in val bpc from gpt's mean,
    in units of gpt's seed standard deviation, and whether it lies outside gpt's min-max range."""
    import json
    import statistics

    def val(run_dir):
        return json.loads((run_dir / "metrics.json").read_text())["val"]["bpc"]

    base = [val(d) for d in run_dirs["gpt"]]
    mean, std = statistics.mean(base), statistics.stdev(base)
    out = {}
    for name in LEAVE_ONE_OUT:
        if name not in run_dirs:
            continue
        v = val(run_dirs[name][0])
        out[name.replace("-", "_")] = {"val_bpc": v, "delta": v - mean, "spreads": (v - mean) / std,
                                       "outside_range": not min(base) <= v <= max(base)}
    return out


def figures(results: dict, figdir) -> None:
    """ablations.png: each leave-one-out run's val bpc against the full recipe's seeds."""
    import matplotlib.pyplot as plt

    runs = results["runs"]
    base = runs["gpt"]["summary"]["val"]["bpc"]
    names = [n for n in LEAVE_ONE_OUT if n in runs]
    if not names:
        return
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(names) + 1.6))
    y = list(range(len(names)))[::-1]
    ax.axvspan(base["min"], base["max"], color="0.85", label=f"gpt, {base['n']} seeds: min–max")
    ax.axvline(base["mean"], color="0.4", lw=1, label="gpt: mean")
    ax.plot([runs[n]["summary"]["val"]["bpc"]["mean"] for n in names], y, "o", color="C3", label="one change undone (1 seed)")
    ax.set_yticks(y, [runs[n]["label"] for n in names], fontsize=9)
    ax.set_xlabel("validation bits per character (lower is better)")
    ax.set_title("The recipe taken apart: gpt with one change undone", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(figdir / "ablations.png")
    plt.close(fig)

