"""Chapter 11: decoding — greedy, beam search, temperature, top-k, top-p, min-p and a repetition penalty,
and whether small models repeat themselves more.

Every sample is drawn by ``zoo.generate.decode`` and measured by ``zoo.repetition`` (``zoo sample`` and
``zoo repetition``). Reused, not retrained: the book's counted 7-gram (chapter 1), lstm (chapter 4) and
gpt (chapter 7, three seeds), and chapter 8's best gpt as the reference model whose bits per character
judge every sample. New: gpt at the quick preset's size (2 blocks, 64 wide; three seeds) and a larger gpt
(6 blocks, 192 wide; one seed), both on the book's budget of 2,000 steps of 16 × 128 characters.
"""

from zoo.book import RunSpec
from zoo.generate import Decoding

CORPUS = "tinyshakespeare"
LADDER_STEPS = 2000
TOKENS = 3000  # characters per sample
PROMPTS = ("ROMEO:\n", "First Citizen:\n", "KING RICHARD III:\n")  # sample i: prompt i, sampling seed i, training seed i where there are three
SIZES = ("gpt-small", "gpt", "gpt-large")  # the size ladder, smallest first
MODELS = ("ngram", "lstm", *SIZES)

RUNS = [
    RunSpec("ngram", seeds=(0,), shared_with="01-ngram", leaderboard=False),
    RunSpec("lstm", shared_with="04-rnn", leaderboard=False),
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    RunSpec("gpt", name="best", label="gpt, dropout 0.1, 8× steps", seeds=(0,), shared_with="08-beyond-counting", leaderboard=False,
            beyond_budget=True, overrides={"model": {"dropout": 0.1}, "trainer": {"max_steps": 8 * LADDER_STEPS}}),
    # --8<-- [start:runs]
    RunSpec("gpt", name="gpt-small", label="gpt, 2 blocks × 64", overrides={"model": {"n_layer": 2, "n_head": 4, "n_embd": 64}},
            leaderboard=False),
    # lr 3e-3, not the book's 6e-3: in a 500-step trial of this size 3e-3 reached val 2.41 bpc against 2.51
    RunSpec("gpt", name="gpt-large", label="gpt, 6 blocks × 192", seeds=(0,), leaderboard=False,
            overrides={"model": {"n_layer": 6, "n_head": 6, "n_embd": 192}, "optim": {"lr": 3e-3}}),
    # --8<-- [end:runs]
]

# --8<-- [start:settings]
SETTINGS = {  # drawn from every model
    "greedy": Decoding("greedy"),
    "beam": Decoding("beam", beam=4),
    "penalty": Decoding("greedy", repetition_penalty=1.3),
    "t10": Decoding("sample"),
    "t08": Decoding("sample", temperature=0.8),
    "k5": Decoding("sample", top_k=5),
    "p09": Decoding("sample", top_p=0.9),
    "minp01": Decoding("sample", min_p=0.1),
}
SWEEP = {  # drawn from the book's gpt only: the quality/diversity trade-off as each knob turns
    "t05": Decoding("sample", temperature=0.5), "t065": Decoding("sample", temperature=0.65), "t12": Decoding("sample", temperature=1.2),
    "k2": Decoding("sample", top_k=2), "k20": Decoding("sample", top_k=20),
    "p05": Decoding("sample", top_p=0.5), "p07": Decoding("sample", top_p=0.7), "p097": Decoding("sample", top_p=0.97),
    "minp005": Decoding("sample", min_p=0.05), "minp02": Decoding("sample", min_p=0.2),
}
# --8<-- [end:settings]
METRICS = ("distinct_4", "distinct_8", "repeated_8", "longest", "ref_bpc", "own_bpc")


def analyse(run_dirs: dict, corpus: str) -> dict:
    """Draw every (model, setting, sample), report on each, and summarise over the three samples; the
    corpus's own test text, cut into pieces of the same length, is the reference line."""
    import zoo

    smoke = zoo.load_run(run_dirs["gpt"][0]).config.trainer.max_steps < 100
    tokens = 200 if smoke else TOKENS
    jobs = [(key, name, decoding, i) for key in MODELS for name, decoding in SETTINGS.items() for i in range(len(PROMPTS))]
    jobs += [("gpt", name, decoding, i) for name, decoding in SWEEP.items() for i in range(len(PROMPTS))]
    reports = draw(jobs, run_dirs, tokens)
    samples: dict = {}
    for (key, name, _, i), r in zip(jobs, reports):
        samples.setdefault(key, {}).setdefault(name, []).append(r)
    return {"tokens": tokens, "prompts": list(PROMPTS),
            "samples": {key: {name: summarise(rs) for name, rs in by.items()} for key, by in samples.items()},
            "corpus": corpus_reference(run_dirs, corpus, tokens)}


def draw(jobs, run_dirs: dict, tokens: int) -> list[dict]:
    """zoo.repetition.sample_report for every job, one process per core (each sample is one long loop of
    small forward passes: two cores draw two samples at once)."""
    from zoo.parallel import map_in_processes, usable_cores
    from zoo.repetition import sample_report

    cost = {"gpt-large": 9.0, "gpt": 3.0, "gpt-small": 1.0, "ngram": 1.5, "lstm": 0.3}  # ms per character, measured
    order = sorted(range(len(jobs)), key=lambda j: -cost[jobs[j][0]] * (3.5 if jobs[j][2].strategy == "beam" else 1))
    reference = run_dirs["best"][0]
    calls = []
    for j in order:
        key, _, decoding, i = jobs[j]
        dirs = run_dirs[key]
        calls.append((dirs[i % len(dirs)], decoding, PROMPTS[i], tokens, i, reference))
    drawn = dict(zip(order, map_in_processes(sample_report, calls, usable_cores())))
    return [drawn[j] for j in range(len(jobs))]


def flat(r: dict) -> dict:
    """The numbers of one report that are summarised over samples."""
    return {"distinct_4": r["distinct"][4], "distinct_8": r["distinct"][8], "repeated_8": r["repeated"][8],
            "longest": r["longest_repeat"]["length"], "ref_bpc": r["reference"]["bpc"], "own_bpc": r.get("own_bpc")}


def summarise(reports: list[dict]) -> dict:
    """Mean, spread, min and max over the samples of each metric, and the samples themselves."""
    from zoo.summary import stats

    rows = [flat(r) for r in reports]
    return {"decoding": reports[0].get("decoding"), "samples": reports,
            **{m: stats([row[m] for row in rows]) for m in METRICS if rows[0][m] is not None}}


def corpus_reference(run_dirs: dict, corpus: str, tokens: int) -> dict:
    """The same report on three pieces of the test split, each as long as a sample: where natural text sits."""
    import zoo
    from zoo.data import load_corpus, split_bounds
    from zoo.repetition import report

    text = load_corpus(corpus).text
    lo, hi = split_bounds(len(text))["test"]
    reference = zoo.load_run(run_dirs["best"][0])
    starts = [lo + k * (hi - lo - tokens) // (len(PROMPTS) - 1) for k in range(len(PROMPTS))]
    pieces = [report(text[s:s + tokens], reference=reference) for s in starts]
    return {"starts": starts, **summarise(pieces)}


def figures(results: dict, figdir) -> None:
    """size.png: repetition against model size per strategy; tradeoff.png: quality against diversity."""
    import matplotlib.pyplot as plt

    v = results["values"]
    s, runs, ref = v["samples"], results["runs"], v["corpus"]
    params = [runs[k]["summary"]["params"] for k in SIZES]
    shown = {"greedy": "greedy", "beam": "beam 4", "penalty": "greedy, penalty 1.3", "t08": "sample T=0.8", "t10": "sample T=1",
             "p09": "top-p 0.9"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric, title in ((axes[0], "longest", "longest repeated substring (characters)"),
                              (axes[1], "distinct_4", "distinct 4-grams (share of all 4-grams)")):
        for name, label in shown.items():
            means = [s[k][name][metric]["mean"] for k in SIZES]
            lows = [s[k][name][metric]["mean"] - s[k][name][metric]["min"] for k in SIZES]
            highs = [s[k][name][metric]["max"] - s[k][name][metric]["mean"] for k in SIZES]
            ax.errorbar(params, means, yerr=[lows, highs], marker="o", capsize=3, label=label)
        ax.axhline(ref[metric]["mean"], color="0.3", ls="--", lw=1, label="the test text")
        ax.set_xscale("log")
        ax.set_xlabel("gpt parameters")
        ax.set_title(title, fontsize=10)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Repetition against size: gpt at {', '.join(f'{p:,}' for p in params)} parameters, {v['tokens']:,} characters per sample\n"
                 "mean of three samples (bars: min–max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(figdir / "size.png", dpi=120)
    plt.close(fig)

    g = s["gpt"]
    families = {"temperature": ["t05", "t065", "t08", "t10", "t12"], "top-k": ["k2", "k5", "k20"],
                "top-p": ["p05", "p07", "p09", "p097"], "min-p": ["minp02", "minp01", "minp005"]}
    short = lambda d: d.replace("sample ", "").replace("T=1 ", "")  # noqa: E731  "T=1 top-p 0.9" -> "top-p 0.9"
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for family, names in families.items():
        xs = [g[n]["distinct_4"]["mean"] for n in names]
        ys = [g[n]["ref_bpc"]["mean"] for n in names]
        ax.plot(xs, ys, marker="o", label=family)
        for n, x, y in zip(names, xs, ys):
            ax.annotate(short(g[n]["decoding"]), (x, y), fontsize=7, xytext=(4, -9), textcoords="offset points")
    for name, marker in (("greedy", "s"), ("beam", "D"), ("penalty", "^")):
        ax.plot(g[name]["distinct_4"]["mean"], g[name]["ref_bpc"]["mean"], marker=marker, ls="", color="k", label=g[name]["decoding"])
    ax.plot(ref["distinct_4"]["mean"], ref["ref_bpc"]["mean"], marker="*", ms=13, ls="", color="tab:red", label="the test text")
    ax.set_xlabel("distinct 4-grams (share of all 4-grams; more is more varied)")
    ax.set_ylabel("bpc under chapter 8's best gpt (less is likelier)")
    ax.set_title("The book's gpt: diversity against likelihood, per decoding setting\nmean of three samples of "
                 f"{v['tokens']:,} characters", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(figdir / "tradeoff.png", dpi=120)
    plt.close(fig)
