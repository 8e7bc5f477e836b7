"""``zoo lens RUN_DIR`` and ``zoo embed RUN_DIR``: the logit lens (and the tuned lens), and the embedding
read-outs, on a trained run, as a table, JSON and a figure.

The methods are in ``zoo.lens`` and ``zoo.embedding``; this module runs them on a run and shows the result.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.errors import ZooError
from zoo.hooks import require_residual_stream
from zoo.embedding import neighbours, self_readout, sphere, stream_norms
from zoo.hooks import hook_names
from zoo.lens import fit_tuned_lens, prompt_readouts, score_layers

PROMPT_LENGTH = 32  # the default prompt: the first characters of the scored split


def layer_label(i: int, n_points: int) -> str:
    return "embedding" if i == 0 else f"block {i}" + (" (output)" if i == n_points - 1 else "")


def check_args(tuned_steps: int, top_k: int, lr: float) -> None:
    if tuned_steps < 0:
        raise ZooError(f"--tuned-steps must be >= 0 (0: the logit lens only), got {tuned_steps}")
    if top_k < 1:
        raise ZooError(f"--top-k must be >= 1, got {top_k}")
    if not lr > 0:
        raise ZooError(f"--lr must be > 0, got {lr}")


def lens_report(run, splits: dict, split: str, prompt: str | None, top_k: int, tuned_steps: int = 0, lr: float = 1e-3,
                seed: int = 0, batch_size: int | None = None) -> dict:
    """Every layer's read-out of ``run`` on ``splits[split]`` (logit lens; tuned lens when tuned_steps > 0,
    its translators trained on ``splits["train"]``), and the top-k characters per layer on ``prompt``."""
    model, block = run.model, run.config.data.block_size
    stream = require_residual_stream(model, run.config.rung)
    if top_k > run.tokenizer.vocab_size:
        raise ZooError(f"--top-k must be at most the vocabulary's {run.tokenizer.vocab_size} characters, got {top_k}")
    tokens = splits[split]
    if len(tokens) < 2:
        raise ZooError(f"the {split} split has fewer than two characters")
    text = prompt if prompt is not None else run.tokenizer.decode(tokens[:PROMPT_LENGTH])
    if not text:
        raise ZooError("--prompt is empty")
    prompt_ids = run.tokenizer.encode(text)[-block:]  # unknown characters: one clear line
    lens, history = None, []
    if tuned_steps:
        if len(splits["train"]) <= block:
            raise ZooError(f"the train split is shorter than one window ({block} characters) to fit the tuned lens on")
        lens, history = fit_tuned_lens(model, splits["train"], block, tuned_steps, batch_size or run.config.data.batch_size, lr, seed)
    n = len(stream)
    report = {"run": str(run.dir), "rung": run.config.rung, "split": split, "layers": [layer_label(i, n) for i in range(n)],
              "hook_points": [f"resid.{i}" for i in range(n)], "logit_lens": score_layers(model, tokens, block), "tuned_lens": None}
    if lens is not None:
        report["tuned_lens"] = {"steps": tuned_steps, "lr": lr, "seed": seed, "fitted_on": "train",
                                "first_loss": history[0], "last_loss": history[-1], "layers": score_layers(model, tokens, block, lens)}
    report["prompt"] = {"text": run.tokenizer.decode(prompt_ids), **_prompt(run, prompt_ids, top_k, None)}
    if lens is not None:
        report["prompt"]["tuned"] = _prompt(run, prompt_ids, top_k, lens)
    return report


def _prompt(run, ids: torch.Tensor, k: int, lens) -> dict:
    out = prompt_readouts(run.model, ids, k, lens)
    decode = run.tokenizer.decode
    return {"top": [[[[decode([int(i)]), float(p)] for i, p in zip(ids_t, probs_t)] for ids_t, probs_t in zip(ids_l, probs_l)]
                    for ids_l, probs_l in zip(out["top_ids"], out["top_probs"])],  # [layer][position][rank] = [char, p]
            "p_next": out["p_next"].tolist()}  # [layer][position]: the probability of the character that follows


def shown(ch: str) -> str:
    """A character as one visible cell: newline ⏎, space ␣, other control characters by code."""
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(ch, ch if ch.isprintable() else f"\\x{ord(ch):02x}")


def format_report(report: dict) -> str:
    n_tokens = report["logit_lens"][0]["tokens"]
    tuned = report["tuned_lens"]
    head = f"{'layer':18s} {'bpc':>8s} {'KL to final':>12s} {'top-1 next':>11s} {'top-1 current':>14s}"
    if tuned:
        head += f"   {'tuned bpc':>9s} {'tuned KL':>9s}"
    lines = [f"{report['rung']} on {report['split']} ({n_tokens:,} characters): each layer's read-out by the evaluation protocol "
             f"(logit lens{'; tuned lens fitted on train for ' + str(tuned['steps']) + ' steps' if tuned else ''})", head]
    for i, (label, row) in enumerate(zip(report["layers"], report["logit_lens"])):
        line = f"{label:18s} {row['bpc']:8.3f} {row['kl_to_final']:12.3f} {row['top1_next']:10.1%} {row['top1_current']:13.1%}"
        if tuned:
            t = tuned["layers"][i]
            line += f"   {t['bpc']:9.3f} {t['kl_to_final']:9.3f}"
        lines.append(line)
    lines.append("KL in nats per character; the last layer is the model's own prediction (zoo eval's bpc).")
    p = report["prompt"]
    lines += ["", "top-1 character each layer predicts after each prompt position (logit lens):",
              f"{'prompt':18s} " + " ".join(shown(c) for c in p["text"])]
    for label, top in zip(report["layers"], p["top"]):
        lines.append(f"{label:18s} " + " ".join(shown(pos[0][0]) for pos in top))
    lines += ["", f"top-{len(p['top'][0][-1])} after the whole prompt:"]
    for label, top in zip(report["layers"], p["top"]):
        lines.append(f"{label:18s} " + "  ".join(f"{shown(c)} {q:.2f}" for c, q in top[-1]))
    return "\n".join(lines)


def draw(report: dict, path: Path) -> None:
    """A heatmap per lens in the manner of the logit-lens post: one row per layer, one column per prompt
    position, the top-1 character written in each cell, coloured by the probability that layer gives the
    character that actually comes next."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = report["prompt"]
    panels = [("logit lens", p)] + ([("tuned lens", p["tuned"])] if "tuned" in p else [])
    T = len(p["text"]) - 1  # positions whose next character is known
    if T < 1:
        raise ZooError("the prompt needs at least two characters to draw what comes next")
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6, 0.42 * T + 2.5), 0.55 * len(report["layers"]) * len(panels) + 1.4), squeeze=False)
    for ax, (title, data) in zip(axes[:, 0], panels):
        grid = torch.tensor(data["p_next"])  # (L, T)
        im = ax.imshow(grid, cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower")
        for layer, top in enumerate(data["top"]):
            for t in range(T):
                ax.text(t, layer, shown(top[t][0][0]), ha="center", va="center", fontsize=8,
                        color="white" if grid[layer, t] > 0.6 else "black")
        ax.set_yticks(range(len(report["layers"])), report["layers"], fontsize=8)
        ax.set_xticks(range(T), [shown(c) for c in p["text"][:T]], fontsize=8)
        ax.set_xlabel("input character (the cell shows the top-1 prediction of the next)", fontsize=8)
        ax.set_title(f"{report['rung']}: {title}, colour = probability of the true next character", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- embed
def embed_report(run, tokens: torch.Tensor, split: str, k: int) -> dict:
    """Each character embedded and read straight out (top-k, the rank and probability of itself), its k
    nearest characters by embedding cosine, and the residual stream's norm per layer on ``tokens``."""
    model, V = run.model, run.tokenizer.vocab_size
    stream = require_residual_stream(model, run.config.rung)
    if not 1 <= k < V:
        raise ZooError(f"--top-k must be between 1 and {V - 1} (the vocabulary has {V} characters), got {k}")
    logp = self_readout(model, V)  # (V, V)
    top = logp.topk(k, dim=-1)
    rank = (logp > logp.diagonal()[:, None]).sum(-1)  # (V,): how many characters score above c itself
    near_ids, near_cos = neighbours(model, V, k)
    chars = []
    decode = run.tokenizer.decode
    for c in range(V):
        chars.append({"char": decode([c]), "top": [[decode([int(i)]), float(p)] for i, p in zip(top.indices[c], top.values[c].exp())],
                      "self_rank": int(rank[c]) + 1, "self_p": float(logp[c, c].exp()),
                      "neighbours": [[decode([int(i)]), float(x)] for i, x in zip(near_ids[c], near_cos[c])]})
    n = len(stream)
    ball = sphere(model, tokens, run.config.data.block_size) if "readout" in hook_names(model) else None
    return {"run": str(run.dir), "rung": run.config.rung, "model": dict(run.config.model), "sphere": ball,
            "self_top1_share": sum(ch["self_rank"] == 1 for ch in chars) / V, "characters": chars,
            "norms": {"split": split, "layers": [{"label": layer_label(i, n), **row} for i, row in enumerate(stream_norms(model, tokens, run.config.data.block_size))]}}


def format_embed_report(report: dict) -> str:
    V = len(report["characters"])
    lines = [f"{report['rung']}: each character alone, embedded (resid.0 at position 0) and read straight out (unembed), every block skipped",
             f"predicts itself first: {round(report['self_top1_share'] * V)} of {V} characters ({report['self_top1_share']:.1%})",
             f"{'char':5s} {'self rank':>9s} {'p(self)':>8s}   {'read out (top)':30s} nearest embeddings (cosine)"]
    for ch in report["characters"]:
        top = " ".join(f"{shown(c)} {p:.2f}" for c, p in ch["top"])
        near = " ".join(f"{shown(c)} {x:.2f}" for c, x in ch["neighbours"])
        lines.append(f"{shown(ch['char']):5s} {ch['self_rank']:9d} {ch['self_p']:8.3f}   {top:30s} {near}")
    norms = report["norms"]
    lines += ["", f"residual stream norm on {norms['split']} (L2, mean ± std over positions):"]
    lines += [f"{row['label']:18s} {row['mean']:8.2f} ± {row['std']:.2f}" for row in norms["layers"]]
    b = report["sphere"]
    if b is None:
        lines += ["", "the sphere: this rung declares no `readout` hook point (the state its output projection reads)"]
    else:
        lines += ["", f"the state the output projection reads (hook point readout): norm {b['state_norm']['mean']:.2f} ± {b['state_norm']['std']:.2f}; "
                      f"output vectors w_v from {b['w_norm']['min']:.2f} to {b['w_norm']['max']:.2f} long",
                  f"top-1 is the character at the smallest angle: {b['top1_is_nearest_angle']:.1%} of positions; "
                  f"the logits' spread explained by the cosines r² = {b['r2_cos']:.2f}, by the lengths ‖w_v‖ r² = {b['r2_norm']:.2f}"]
    return "\n".join(lines)
