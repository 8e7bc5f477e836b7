"""Chapter 10: inside the trained model — the logit lens and the tuned lens, zero layers, tied against
untied embeddings, and the sphere the last norm puts every state on.

Every measurement reads runs through zoo's hook points (``zoo.hooks``) with the tools a user has
(``zoo.lens``, ``zoo.embedding``: ``zoo lens`` and ``zoo embed``). Reused, not retrained: the book runs of
chapters 3, 5, 6 and 7 (three seeds each), chapter 0's trained bigram table and chapter 1's counted
bigram. New: ``gpt`` with untied embeddings at the book size (three seeds), and ``gpt`` with no blocks
at all, tied and untied (three seeds each), at the book's budget.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
LENSED = ("mlp-mixer", "set-transformer", "vaswani", "gpt", "untied")  # every residual-stream run read layer by layer
TUNED_STEPS, TUNED_LR = 600, 3e-3  # the tuned lens: Adam steps on train windows (the run's batch shape), learning rate
PROMPT = "ROMEO:\nGood morrow, neighbour"  # the prompt drawn layer by layer
UNTIED = {"model": {"tie_embeddings": False}}

RUNS = [
    RunSpec("bigram", shared_with="00-setup", leaderboard=False),
    RunSpec("ngram", name="ngram-2", label="order 2", overrides={"model": {"order": 2}}, seeds=(0,), shared_with="01-ngram", leaderboard=False),
    RunSpec("mlp-mixer", shared_with="03-mlp-mixer", leaderboard=False),
    RunSpec("set-transformer", shared_with="05-set-transformer", leaderboard=False),
    RunSpec("vaswani", shared_with="06-vaswani", leaderboard=False),
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    # --8<-- [start:runs]
    RunSpec("gpt", name="untied", label="gpt, untied embeddings", overrides=UNTIED, leaderboard=False),
    RunSpec("gpt", name="zero-tied", label="gpt, no blocks, tied", overrides={"model": {"n_layer": 0}}, leaderboard=False),
    RunSpec("gpt", name="zero-untied", label="gpt, no blocks, untied",
            overrides={"model": {"n_layer": 0, "tie_embeddings": False}}, leaderboard=False),
    # --8<-- [end:runs]
]


def analyse(run_dirs: dict, corpus: str) -> dict:
    """The lens of every residual run, the zero-layer models against the bigrams, the embed → unembed
    read-outs of tied and untied gpt, and the geometry of gpt's last state."""
    import torch

    import zoo
    from zoo.data import load_corpus, split

    runs = {key: [zoo.load_run(d) for d in dirs] for key, dirs in run_dirs.items()}
    tokenizer = runs["gpt"][0].tokenizer
    splits = split(tokenizer.encode(load_corpus(corpus).text))
    torch.manual_seed(0)
    return {"lens": lenses(runs, splits), "zero": zero_layers(runs, splits), "readout": readouts(runs, splits),
            "ball": {key: ball(runs[key][0], splits["val"]) for key in ("gpt", "untied")}}


def lenses(runs: dict, splits: dict) -> dict:
    """Per run and layer: the logit lens over every seed (mean and spread of bpc, KL to the output, top-1
    next and top-1 current) and the tuned lens of seed 0, fitted on train, scored on val; and gpt's
    prompt read layer by layer (both lenses)."""
    from zoo.inside_report import lens_report
    from zoo.lens import score_layers
    from zoo.summary import stats

    out = {}
    for key in LENSED:
        first, *others = runs[key]
        steps = TUNED_STEPS if first.config.trainer.max_steps >= 1000 else 5  # a smoke run's models trained 4 steps
        report = lens_report(first, splits, "val", PROMPT if key == "gpt" else None, 5, steps, TUNED_LR, seed=0)
        per_seed = [report["logit_lens"]] + [score_layers(r.model, splits["val"], r.config.data.block_size) for r in others]
        layers = []
        for i, label in enumerate(report["layers"]):
            row = {"label": label, "tuned": report["tuned_lens"]["layers"][i]}
            for field in ("bpc", "kl_to_final", "top1_next", "top1_current"):
                row[field] = stats([seed[i][field] for seed in per_seed])
            layers.append(row)
        out[key] = {"layers": layers, "tuned_steps": steps, "tuned_first_loss": report["tuned_lens"]["first_loss"],
                    "tuned_last_loss": report["tuned_lens"]["last_loss"]}
        if key == "gpt":
            out["gpt_prompt"] = {"layers": report["layers"], **report["prompt"]}
        out[key]["last_block_gain"] = layers[-2]["bpc"]["mean"] - layers[-1]["bpc"]["mean"]
    return out


def zero_layers(runs: dict, splits: dict) -> dict:
    """The zero-layer models against the counted bigram (chapter 1's order 2): KL(counted ‖ model) per
    character on val, every seed; chapter 0's trained bigram table beside them. (Their bpc on val and
    test are the runs' own scores.)"""
    from zoo.mixture import run_predictions
    from zoo.summary import stats

    counted = run_predictions(runs["ngram-2"][0], splits["val"])  # (n-1, V) log-probabilities
    out = {}
    for key in ("zero-tied", "zero-untied", "bigram"):
        kls = [(counted.exp() * (counted - run_predictions(r, splits["val"]))).sum(-1).mean().item() for r in runs[key]]
        out[key] = {"kl_from_counted": stats(kls)}
    return out


def _table(run):
    """An order-2 run's log p(b | a) for every pair: (V, V)."""
    import torch

    V = run.tokenizer.vocab_size
    with torch.no_grad():
        return run.model(torch.arange(V)[:, None])[:, 0].double().log_softmax(-1)


def readouts(runs: dict, splits: dict) -> dict:
    """embed → unembed for tied and untied gpt (every seed): the share of characters predicting themselves,
    and the share whose read-out's top character is the counted bigram's most likely successor; per
    character (seed 0), what each predicts."""
    import torch

    from zoo.embedding import self_readout
    from zoo.summary import stats

    successor = _table(runs["ngram-2"][0]).argmax(-1)  # (V,): the most likely next character after each
    out = {}
    examples = {}
    for key in ("gpt", "untied"):
        selfs, bigram = [], []
        for r in runs[key]:
            top1 = self_readout(r.model, r.tokenizer.vocab_size).argmax(-1)  # (V,)
            selfs.append((top1 == torch.arange(len(top1))).double().mean().item())
            bigram.append((top1 == successor).double().mean().item())
            if r is runs[key][0]:
                examples[key] = top1
        out[key] = {"predicts_itself": stats(selfs), "predicts_successor": stats(bigram)}
    tok = runs["gpt"][0].tokenizer
    out["examples"] = []
    for c in ("\n", " ", "e", "t", "h", "o", "q", "Q", ",", ":"):
        if c in tok.stoi:
            i = tok.stoi[c]
            out["examples"].append({"char": c, "tied": tok.decode([int(examples["gpt"][i])]),
                                    "untied": tok.decode([int(examples["untied"][i])]), "counted": tok.decode([int(successor[i])])})
    return out


def ball(run, val) -> dict:
    """gpt's residual stream norm by layer, and the sphere after the final RMSNorm — how often the top-1
    character is the one whose output vector w_v has the highest cosine with the state u
    (logit_v = ‖u‖ ‖w_v‖ cos θ_v), and how much of each position's logit spread across characters the
    cosines explain (mean r²) against the lengths ‖w_v‖ — as ``zoo embed`` reads them
    (zoo.embedding.stream_norms and sphere)."""
    from zoo.embedding import sphere, stream_norms

    block = run.config.data.block_size
    return {"norms": stream_norms(run.model, val, block), **sphere(run.model, val, block)}


def figures(results: dict, figdir) -> None:
    """lens.png: bpc by layer, logit lens and tuned lens, for each residual run; prompt.png: gpt's prompt
    read layer by layer (zoo lens's heatmap); norms.png: the residual stream's norm by layer."""
    import matplotlib.pyplot as plt

    from zoo.inside_report import draw

    v = results["values"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, color in zip(LENSED, ("C4", "C5", "C1", "C0", "C9")):
        rows = v["lens"][key]["layers"]
        xs = range(len(rows))
        axes[0].errorbar(xs, [r["bpc"]["mean"] for r in rows], yerr=[r["bpc"]["std"] or 0 for r in rows], marker="o", color=color,
                         capsize=3, label=f"{key}, logit lens")
        axes[0].plot(xs, [r["tuned"]["bpc"] for r in rows], marker="s", ls="--", color=color, alpha=0.7, label=f"{key}, tuned lens")
        axes[1].plot(xs, [r["top1_current"]["mean"] for r in rows], marker="o", color=color, label=key)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("val bpc of the layer's read-out (log scale)")
    axes[1].set_ylabel("top-1 is the current character (share)")
    for ax in axes:
        ax.set_xlabel("layer (0 = embedding)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6.5, ncol=2)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figdir / "lens.png")
    plt.close(fig)

    prompt = v["lens"]["gpt_prompt"]
    target = figdir / "prompt.png"
    target.unlink(missing_ok=True)  # redrawn from these results
    draw({"rung": "gpt", "layers": prompt["layers"], "prompt": prompt}, target)

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for key, color in (("gpt", "C0"), ("untied", "C9")):
        norms = v["ball"][key]["norms"]
        ax.errorbar(range(len(norms)), [r["mean"] for r in norms], yerr=[r["std"] for r in norms], marker="o", capsize=3, color=color, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("layer (0 = embedding)")
    ax.set_ylabel("‖residual stream‖₂ on val (mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "norms.png")
    plt.close(fig)
