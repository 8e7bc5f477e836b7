"""Chapter 08: beyond counting — more compute, regularisation, the context a network uses, and mixing.

Runs shared with earlier chapters (trained there, read here): the counted 7-gram (chapter 01), lstm
(chapter 04), vaswani (chapter 06) and gpt (chapter 07) at the ladder's budget of 2,000 steps of 16 × 128
characters, three seeds each. New here, one seed each: gpt at 2× and 4× that budget and lstm at 2× and 8×
(the same recipes, only more steps: the cosine schedule stretches with them), and the chapter's best
pure network, gpt with dropout 0.1 at 8× (chosen on validation bpc among the configurations
benchmarks/sweep_beyond_counting.py tried, on a GPU and then, for the 8× candidates, on this CPU).
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
LADDER_STEPS = 2000
LONGER = {"gpt": (2, 4), "lstm": (2, 8)}  # each network's compute curve past 1×: these multiples of the ladder's steps


def more_steps(rung: str, times: int) -> RunSpec:
    """The rung's book recipe trained ``times`` × the ladder's steps (one seed): a point on its compute curve."""
    return RunSpec(rung, name=f"{rung}-{times}x", label=f"{rung}, {times}× steps",
                   overrides={"trainer": {"max_steps": times * LADDER_STEPS}}, seeds=(0,), leaderboard=False)


RUNS = [
    RunSpec("ngram", seeds=(0,), shared_with="01-ngram", leaderboard=False),
    RunSpec("lstm", shared_with="04-rnn", leaderboard=False),
    RunSpec("vaswani", shared_with="06-vaswani", leaderboard=False),
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    *(more_steps(rung, times) for rung, multiples in LONGER.items() for times in multiples),
    # --8<-- [start:best]
    # the best network: chapter 7's gpt, with dropout 0.1 and eight times the steps (chosen on val)
    RunSpec("gpt", name="best", label="gpt, dropout 0.1, 8× steps", seeds=(0,), leaderboard=True, beyond_budget=True,
            overrides={"model": {"dropout": 0.1}, "trainer": {"max_steps": 8 * LADDER_STEPS}}),
    # --8<-- [end:best]
]

NETWORKS = ("gpt", "lstm", "vaswani")  # each with its compute curve: the shared 1× runs, then the k× runs
WINDOWS = (4, 8, 16, 32, 64, 128)  # evaluation windows for "how much context is used"
ESTIMATOR_DRAWS = 5  # seeds of nanoGPT's random windows, for the estimator's own spread
NANOGPT_NATS = 1.4697  # nanoGPT's README: its 10.7M-parameter shakespeare-char model, val loss after ~3 min on an A100


def analyse(run_dirs: dict, corpus: str) -> dict:
    """Everything measured on the trained runs: the compute curves and where they cross the counts, the
    context each network uses, the network + n-gram mixtures, and nanoGPT's estimator on the best run."""
    import torch

    import zoo
    from zoo.data import load_corpus, split

    text = load_corpus(corpus).text
    runs = {key: [zoo.load_run(d) for d in dirs] for key, dirs in run_dirs.items()}
    splits = split(runs["gpt"][0].tokenizer.encode(text))
    with torch.no_grad():
        found = {"curves": curves(run_dirs), "seen_text": seen_text(runs, splits), "context": context_used(runs, splits["val"]),
                 "mixtures": mixtures(runs, splits), "nanogpt": nanogpt_scores(runs, splits)}
    found["best_margin"] = best_margin(run_dirs, found["curves"]["ngram"])
    m = found["mixtures"]
    return {**found, "leaderboard_extra": [mixture_row(run_dirs, "best + ngram", ("best", "ngram"), m["best"]["val"]["mix"], m["best"]["test"]["mix"]),
                                           mixture_row(run_dirs, "best + gpt-2x + ngram", ("best", "gpt-2x", "ngram"),
                                                       m["three"]["val"]["mix"], m["three"]["test"]["mix"])]}


def best_margin(run_dirs: dict, ngram: dict) -> dict:
    """How far the best run is below the 7-gram on each split, also in units of the seed standard
    deviation of chapter 7's gpt (the best run itself has one seed)."""
    import statistics

    best = _metrics(run_dirs["best"][0])
    out = {}
    for s in ("val", "test"):
        std = statistics.stdev(_metrics(d)[s]["bpc"] for d in run_dirs["gpt"])
        out[s] = ngram[s] - best[s]["bpc"]
        out[f"{s}_spreads"] = out[s] / std
    return out


def mixture_row(run_dirs: dict, name: str, keys: tuple, val: float, test: float) -> dict:
    """A mixture of runs (weights fitted on val) as a row of the home page's leaderboard: sizes and
    training times of its parts added up."""
    from zoo.summary import size_cell, stats

    parts = [_metrics(run_dirs[k][0]) for k in keys]
    return {"name": name, "size": " + ".join(size_cell(p) for p in parts), "wall_s": sum(p["wall_s"] for p in parts),
            "val_bpc": stats([val]), "test_bpc": stats([test]), "seeds": 1}


def _metrics(run_dir) -> dict:
    import json

    return json.loads((run_dir / "metrics.json").read_text())


def curves(run_dirs: dict, longer: dict = LONGER, extra_seeds: dict | None = None) -> dict:
    """Per network and budget (× the ladder's steps): val and test bpc (mean over seeds), training
    characters and CPU-seconds; and the first budget whose val (test) bpc is below the 7-gram's.
    ``longer``: each network's multiples past 1× (runs "NET-Kx"); ``extra_seeds``: {run key: the key of
    more seeds of the same run}, pooled into its point (chapter 9's)."""
    import statistics

    ngram = _metrics(run_dirs["ngram"][0])
    out = {"ngram": {"val": ngram["val"]["bpc"], "test": ngram["test"]["bpc"]}}
    for net in NETWORKS:
        points = []
        for key in [net] + [f"{net}-{times}x" for times in longer.get(net, ())]:
            ms = [_metrics(d) for d in run_dirs[key] + run_dirs.get((extra_seeds or {}).get(key), [])]
            point = {"times": ms[0]["steps"] // LADDER_STEPS, "steps": ms[0]["steps"], "tokens": ms[0]["tokens_seen"],
                     "wall_s": statistics.mean(m["wall_s"] for m in ms), "seeds": len(ms)}
            for s in ("val", "test"):
                values = [m[s]["bpc"] for m in ms]
                point[s] = statistics.mean(values)
                point[f"{s}_std"] = statistics.stdev(values) if len(values) > 1 else None
                point[f"{s}_margin"] = out["ngram"][s] - point[s]  # > 0: below (better than) the counts
            points.append(point)
        best = {s: min(points, key=lambda p: p[s]) for s in ("val", "test")}
        out[net] = {"points": {f"{p['times']}x": p for p in points},
                    "crosses": {s: next((p["times"] for p in points if p[s] < out["ngram"][s]), None) for s in ("val", "test")},
                    "best": {s: {"times": best[s]["times"], "bpc": best[s][s], "margin": best[s][f"{s}_margin"]} for s in ("val", "test")}}
    return out


def seen_text(runs: dict, splits: dict) -> dict:
    """Each run scored by the protocol on text it trained on — the first characters of the train split, as
    many as val has — beside its val score: the gap is how much of what it learned does not carry over."""
    import statistics

    from zoo.evaluate import score

    seen = splits["train"][: len(splits["val"])]
    out = {}
    for key, rs in runs.items():
        train = statistics.mean(score(r.model, seen, r.config.data.block_size)["bpc"] for r in rs)
        val = statistics.mean(_metrics(r.dir)["val"]["bpc"] for r in rs)
        out[key] = {"train": train, "val": val, "gap": val - train}
    return out


def context_used(runs: dict, val) -> dict:
    """val bpc with the evaluation window cut to each of WINDOWS characters, for the book's gpt (three
    seeds), the best run, lstm (fresh state in every window) and the 7-gram (which never looks back
    further than six characters)."""
    import statistics

    from zoo.evaluate import score

    out = {}
    for key in ("gpt", "best", "lstm", "ngram"):
        models = runs[key] if key == "gpt" else runs[key][:1]
        rows = {}
        for w in WINDOWS:
            values = [score(r.model, val, r.config.data.block_size, window=min(w, r.config.data.block_size))["bpc"] for r in models]
            rows[str(w)] = {"bpc": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None}
        full = statistics.mean(_metrics(r.dir)["val"]["bpc"] for r in models)
        out[key] = {"windows": rows, "protocol": full, "gain_32_to_128": rows["32"]["bpc"] - rows["128"]["bpc"],
                    "gain_8_to_32": rows["8"]["bpc"] - rows["32"]["bpc"]}
    return out


def mixtures(runs: dict, splits: dict) -> dict:
    """Each network run + the 7-gram: one λ fitted on val, and one λ per context-count bucket fitted on
    val; both scored on val (where they were fitted) and test (untouched). Per character on test, for
    the best run: where the network beats the counts, by kind of character and by context count."""
    import statistics

    from zoo.mixture import bucket_label, context_buckets, fit, mix, run_predictions, score_rows, target_probs

    ngram = runs["ngram"][0]
    log_b = {s: run_predictions(ngram, splits[s]) for s in ("val", "test")}  # (n-1, V) each
    buckets = {s: context_buckets(ngram, splits[s]) for s in ("val", "test")}
    targets = {s: splits[s][1:] for s in ("val", "test")}
    out = {}
    for key in ("gpt", "gpt-4x", "best"):
        per_seed = []
        for run in runs[key]:
            log_a = {s: run_predictions(run, splits[s]) for s in ("val", "test")}
            pa, pb = target_probs(log_a["val"], splits["val"]), target_probs(log_b["val"], splits["val"])
            one, by = fit(pa, pb), fit(pa, pb, buckets["val"])
            seed = {"weight": one.weight, "by_context": by.describe()["by_context_count"]}
            for s in ("val", "test"):
                seed[s] = {"network": score_rows(log_a[s], targets[s])["bpc"], "ngram": score_rows(log_b[s], targets[s])["bpc"],
                           "mix": score_rows(mix(log_a[s], log_b[s], one.weight), targets[s])["bpc"],
                           "mix_by_context": score_rows(mix(log_a[s], log_b[s], by.per_target(buckets[s], len(targets[s]))), targets[s])["bpc"]}
            per_seed.append(seed)
            if key == "best":
                best_logs = log_a  # the three-way mixture below reuses them
                out["per_character"] = per_character(log_a["test"], log_b["test"], targets["test"], buckets["test"], run.tokenizer)
        summary = {"seeds": len(per_seed), "weight": statistics.mean(p["weight"] for p in per_seed), "by_context": per_seed[0]["by_context"]}
        for s in ("val", "test"):
            summary[s] = {k: statistics.mean(p[s][k] for p in per_seed) for k in per_seed[0][s]}
            if len(per_seed) > 1:
                summary[s]["mix_std"] = statistics.stdev(p[s]["mix"] for p in per_seed)
            summary[s]["gain"] = min(summary[s]["network"], summary[s]["ngram"]) - summary[s]["mix"]
            summary[s]["gain_by_context"] = min(summary[s]["network"], summary[s]["ngram"]) - summary[s]["mix_by_context"]
        out[key.replace("-", "_")] = summary
    out["buckets"] = [bucket_label(k) for k in range(int(max(b.max() for b in buckets.values())) + 1)]
    out["three"] = three_way(runs, splits, best_logs, log_b)
    return out


def three_way(runs: dict, splits: dict, best_logs: dict, log_b: dict) -> dict:
    """The best run, gpt at 2× and the 7-gram, weights on the simplex fitted on val by EM (``zoo eval BEST
    --mix GPT_2X NGRAM``): two networks of different training disagree where each is unsure."""
    import torch

    from zoo.mixture import fit_simplex, mix_simplex, run_predictions, score_rows, target_probs

    parts = {"best": best_logs, "gpt-2x": {s: run_predictions(runs["gpt-2x"][0], splits[s]) for s in ("val", "test")}, "ngram": log_b}
    names = list(parts)
    w = fit_simplex(torch.stack([target_probs(parts[n]["val"], splits["val"]) for n in names]))  # (3,)
    out = {"weights": dict(zip(names, w.tolist()))}
    for s in ("val", "test"):
        targets = splits[s][1:]
        mixed = mix_simplex([parts[n][s] for n in names], w)  # (n-1, V)
        out[s] = {"mix": score_rows(mixed, targets)["bpc"], **{n: score_rows(parts[n][s], targets)["bpc"] for n in names}}
        out[s]["gain"] = min(out[s][n] for n in names) - out[s]["mix"]
    return out


def per_character(log_a, log_b, targets, buckets, tokenizer) -> dict:
    """On test, target by target: how often the network gives the true character more probability than the
    counts do, by kind of character and by how often the counts saw the context; the mean bits of each."""
    import math

    import torch

    from zoo.mixture import bucket_label

    a = -log_a.gather(1, targets[:, None])[:, 0] / math.log(2)  # (N,) bits the network pays
    b = -log_b.gather(1, targets[:, None])[:, 0] / math.log(2)  # (N,) bits the counts pay
    chars = [tokenizer.vocab[int(t)] for t in targets]
    kinds = {"lower": str.islower, "upper": str.isupper, "space": lambda c: c == " ",
             "newline": lambda c: c == "\n", "punctuation": lambda c: not c.isalnum() and not c.isspace()}
    rows = {}
    for kind, test in kinds.items():
        mask = torch.tensor([test(c) for c in chars])
        if mask.any():
            rows[kind] = {"share": mask.double().mean().item(), "network_wins": (a[mask] < b[mask]).double().mean().item(),
                          "network_bits": a[mask].mean().item(), "ngram_bits": b[mask].mean().item()}
    by_count = []
    for k in range(int(buckets.max()) + 1):
        mask = buckets == k
        if mask.any():
            by_count.append({"bucket": bucket_label(k), "share": mask.double().mean().item(),
                             "network_wins": (a[mask] < b[mask]).double().mean().item(),
                             "network_bits": a[mask].mean().item(), "ngram_bits": b[mask].mean().item()})
    unseen = next((r for r in by_count if r["bucket"] == "0"), None)  # contexts the top order never saw
    return {"network_wins": (a < b).double().mean().item(), "by_kind": rows, "by_context_count": by_count, "unseen": unseen,
            "counts_better_buckets": [r["bucket"] for r in by_count if r["ngram_bits"] < r["network_bits"]]}


def nanogpt_scores(runs: dict, splits: dict) -> dict:
    """nanoGPT's estimator (``zoo eval RUN --estimator nanogpt``) on the last 10 % of the text, for the
    book's gpt and the best run: 200 batches of each run's own batch size and window, beside nanoGPT's."""
    import statistics

    import torch

    from zoo.evaluate import nanogpt_estimate

    last_tenth = torch.cat([splits["val"], splits["test"]])  # nanoGPT's validation split
    out = {"reference_nats": NANOGPT_NATS}
    for key in ("gpt", "best"):
        nats = [nanogpt_estimate(r.model, last_tenth, r.config.data.block_size, r.config.data.batch_size, batches=200, seed=0)["nats"]
                for r in runs[key]]
        out[key] = {"nats": statistics.mean(nats), "seeds": len(nats), "above_reference": statistics.mean(nats) - NANOGPT_NATS}
    # the estimator's own noise: the best run under five draws of nanoGPT's random windows
    r = runs["best"][0]
    draws = [nanogpt_estimate(r.model, last_tenth, r.config.data.block_size, r.config.data.batch_size, batches=200, seed=k)["nats"]
             for k in range(ESTIMATOR_DRAWS)]
    out["best_draws"] = {"mean": statistics.mean(draws), "std": statistics.stdev(draws), "min": min(draws), "max": max(draws),
                         "n": len(draws), "below_reference": sum(d < NANOGPT_NATS for d in draws)}
    return out


def figures(results: dict, figdir) -> None:
    """compute.png: val and test bpc against training characters, per network, the counts as a line;
    context.png: val bpc against the evaluation window; mixture.png: network against counts by how often
    the counts saw the context, and the mixing weight fitted for each such bucket."""
    import matplotlib.pyplot as plt

    v = results["values"]
    curves_, colors = v["curves"], {"gpt": "C0", "lstm": "C2", "vaswani": "C1"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=False)
    best = results["runs"]["best"]["summary"]
    for ax, split in zip(axes, ("val", "test")):
        for net in NETWORKS:
            pts = sorted(curves_[net]["points"].values(), key=lambda p: p["times"])
            ax.errorbar([p["tokens"] for p in pts], [p[split] for p in pts], yerr=[p[f"{split}_std"] or 0 for p in pts],
                        marker="o", color=colors[net], capsize=3, label=f"{net} (book recipe)")
        ax.plot([best["tokens_seen"]], [best[split]["bpc"]["mean"]], marker="*", ms=14, color="C3", ls="none",
                label="best: gpt + dropout 0.1")
        ax.axhline(curves_["ngram"][split], color="0.3", ls="--", lw=1, label="counted 7-gram")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training characters")
        ax.set_ylabel(f"{split} bpc")
        ax.set_title(f"{split} split", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("More compute: each network's book recipe trained longer (1× = the ladder's 2,000 steps)", fontsize=11)
    fig.tight_layout()
    fig.savefig(figdir / "compute.png")
    plt.close(fig)

    ctx = v["context"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label, color in (("gpt", "gpt (3 seeds)", "C0"), ("best", "best", "C3"), ("lstm", "lstm", "C2"), ("ngram", "7-gram", "0.3")):
        ws = [int(w) for w in ctx[key]["windows"]]
        ax.errorbar(ws, [ctx[key]["windows"][str(w)]["bpc"] for w in ws], yerr=[ctx[key]["windows"][str(w)]["std"] or 0 for w in ws],
                    marker="o", color=color, capsize=3, label=label, ls="--" if key == "ngram" else "-")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(WINDOWS), [str(w) for w in WINDOWS])
    ax.set_xlabel("evaluation window (characters a prediction may see: between half of it and all of it)")
    ax.set_ylabel("val bpc")
    ax.set_title("How much context each model uses", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "context.png")
    plt.close(fig)

    mix_ = v["mixtures"]
    rows = mix_["per_character"]["by_context_count"]
    labels = [r["bucket"] for r in rows]
    x = range(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    axes[0].plot(x, [r["network_bits"] for r in rows], marker="o", color="C3", label="best network")
    axes[0].plot(x, [r["ngram_bits"] for r in rows], marker="o", color="0.3", ls="--", label="7-gram")
    axes[0].set_ylabel("mean bits per character (test)")
    share = axes[0].twinx()
    share.bar(x, [r["share"] for r in rows], color="0.85", zorder=0)
    share.set_ylabel("share of test characters", color="0.5")
    axes[0].set_zorder(share.get_zorder() + 1)
    axes[0].patch.set_visible(False)
    weights = mix_["best"]["by_context"]
    axes[1].plot(range(len(weights)), list(weights.values()), marker="o", color="C3")
    axes[1].axhline(mix_["best"]["weight"], color="C3", ls=":", label=f"one λ for all: {mix_['best']['weight']:.2f}")
    axes[1].set_xticks(range(len(weights)), list(weights), rotation=45, fontsize=8)
    axes[1].set_ylabel("λ on the network (fitted on val)")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("how often the 7-gram saw the context in training")
        ax.grid(alpha=0.3)
    axes[0].set_xticks(list(x), labels, rotation=45, fontsize=8)
    axes[0].legend(fontsize=8, loc="upper right")
    axes[0].set_title("Where each model is better", fontsize=10)
    axes[1].set_title("The mixing weight, bucket by bucket", fontsize=10)
    fig.tight_layout()
    fig.savefig(figdir / "mixture.png")
    plt.close(fig)
