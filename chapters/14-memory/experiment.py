"""Chapter 14: memory beyond the window — memory-gpt (a Memorizing Transformer) against gpt and the lstm.

Two experiments, every run at the book's size (4 blocks of 128, 16 × 128 characters a step, 2,000 steps):

* the long-range task ``recall:D`` (zoo.recall): random eight-letter passages, each repeated once, among
  blank filler: half the repeats copy the passage stated last (near, inside any window: what teaches a
  model to copy), half a passage drawn from the eight that wait, about D = RECALL_D characters back on
  average (four windows of 128). ``gpt`` (its window), ``lstm``
  (its truncation), ``memory-gpt`` with a memory of RECALL_MEMORY characters, and ``memory-gpt`` with no
  memory (the same sliding window and stop-gradient cache, so the control isolates the memory), at equal
  steps; each repeat's letters scored on the validation split, by the distance back to its passage. The
  transformers here train with untied embeddings, lr 3e-3 and no weight decay (COPY), a recipe under which
  gpt learns to copy within the budget; ``recall-gpt-book`` is gpt with the book's recipe, the control
  for that choice;
* Shakespeare at the ladder's budget: ``memory-gpt`` (its book preset, memory 1,024, three seeds) against
  chapter 7's ``gpt`` (three seeds), and ``memory-gpt`` with memories of 0 and SMALL (one seed each); and
  where in the text the memory helps: the characters of speakers' names, by how far back the name last
  appeared.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RECALL_D = 512  # mean passage-to-repeat distance of the long-range task, in characters: 4 windows of 128
RECALL_MEMORY = 1024  # memory-gpt's memory on the task: covers all but about e^-2.25 ≈ 1/10 of the distances
MEMORY, SMALL = 1024, 256  # Shakespeare: the book preset's memory, and a small one
CLOSED = -4.0  # the gate's b_h at initialisation in the ablation: the memory starts at σ(-4) ≈ 2 % of the mix
COPY = {"model": {"tie_embeddings": False}, "optim": {"lr": 3e-3, "weight_decay": 0.0}}  # the recall runs' recipe
BINS = (0, 128, 256, 512, 1024, 2048, 1 << 30)  # repeat distance bins, characters


def recall_run(name: str, rung: str, label: str, overrides: dict) -> RunSpec:
    from zoo.config import deep_merge

    return RunSpec(rung, name=name, label=label, seeds=(0,), leaderboard=False,
                   overrides=deep_merge(overrides, {"data": {"corpus": f"recall:{RECALL_D}"}}))


RUNS = [
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    # --8<-- [start:runs]
    RunSpec("memory-gpt", name="memory", label=f"memory-gpt, M = {MEMORY:,}", leaderboard=False),  # book preset: M = 1,024
    RunSpec("memory-gpt", name="memory-0", label="memory-gpt, M = 0", seeds=(0,), leaderboard=False,
            overrides={"model": {"memory_size": 0}}),
    RunSpec("memory-gpt", name=f"memory-{SMALL}", label=f"memory-gpt, M = {SMALL}", seeds=(0,), leaderboard=False,
            overrides={"model": {"memory_size": SMALL}}),
    recall_run("recall-gpt", "gpt", "gpt", COPY),
    recall_run("recall-gpt-book", "gpt", "gpt, the book's recipe", {}),
    recall_run("recall-lstm", "lstm", "lstm", {}),  # its book preset: untied, lr 3e-3, no weight decay already
    recall_run("recall-memory", "memory-gpt", f"memory-gpt, M = {RECALL_MEMORY:,}", {**COPY, "model": {**COPY["model"], "memory_size": RECALL_MEMORY}}),
    recall_run("recall-memory-0", "memory-gpt", "memory-gpt, M = 0", {**COPY, "model": {**COPY["model"], "memory_size": 0}}),
    recall_run("recall-memory-closed", "memory-gpt", f"memory-gpt, M = {RECALL_MEMORY:,}, gate closed at first",
               {**COPY, "model": {**COPY["model"], "memory_size": RECALL_MEMORY, "memory_gate": CLOSED}}),
    # --8<-- [end:runs]
]
RECALL_RUNS = ("recall-gpt-book", "recall-gpt", "recall-lstm", "recall-memory-0", "recall-memory", "recall-memory-closed")


def analyse(run_dirs: dict, corpus: str) -> dict:
    import zoo
    from zoo.data import load_splits

    runs = {key: [zoo.load_run(d) for d in dirs] for key, dirs in run_dirs.items()}
    return {"recall": recall(runs), "shakespeare": shakespeare(runs, run_dirs),
            "names": names(runs, load_splits(corpus)[1])}


# ------------------------------------------------------------------------------------ the recall task
def recall(runs: dict) -> dict:
    """Per recall run, on the val split's repeats whose passage lies inside the split: the share of letters
    3 to 8 of each repeat that are the model's most likely character (teacher-forced; the first two letters
    single a passage out of the eight waiting, so from the third on a model that remembers can copy), and
    their nats: for the far repeats by distance bin and overall, and for the near ones; beside the oracle
    (what the process pays for those letters) and the memoryless baseline (ln 26 nats, 1 in 26)."""
    import math

    import numpy as np

    from zoo.data import load_splits, split_bounds
    from zoo.mixture import run_predictions
    from zoo.recall import RECALL_LETTERS, recall_bounds, recall_task, split_queries

    val = load_splits(f"recall:{RECALL_D}")[1]["val"]
    queries = split_queries(RECALL_D, "val")
    queries = queries[(queries[:, 1] >= 0) & (queries[:, 0] + RECALL_LETTERS <= len(val))]  # answerable, whole
    far = queries[:, 3] == 0
    distance = queries[:, 2]
    letters = queries[:, :1] + np.arange(2, RECALL_LETTERS)  # (Q, 6) positions of letters 3..8
    bounds = recall_bounds(RECALL_D, "val")
    task = recall_task(RECALL_D)
    lo = split_bounds(len(task.text))["val"][0]
    oracle = task.oracle_nats[lo + letters].mean(-1)  # (Q,): what the process pays per letter 3..8
    out = {"D": RECALL_D, "memory": RECALL_MEMORY, "window": 128, "repeats": int(far.sum()), "near": int((~far).sum()),
           "distance_mean": float(distance[far].mean()), "distance_median": float(np.median(distance[far])),
           "near_distance_mean": float(distance[~far].mean()), "beyond_reach": float((distance[far] >= 128 + RECALL_MEMORY).mean()),
           "oracle_bpc": bounds["oracle"] / math.log(2), "memoryless_bpc": bounds["memoryless"] / math.log(2),
           "chance": 1 / 26, "chance_nats": math.log(26), "oracle_nats": float(oracle[far].mean()), "bins": [], "runs": {}}
    inside = [far & (distance >= lo_d) & (distance < hi_d) for lo_d, hi_d in zip(BINS, BINS[1:])]
    for (lo_d, hi_d), m in zip(zip(BINS, BINS[1:]), inside):
        out["bins"].append({"lo": lo_d, "hi": hi_d, "repeats": int(m.sum()), "oracle_nats": float(oracle[m].mean()) if m.any() else None})
    for key in RECALL_RUNS:
        run = runs[key][0]
        log_p = run_predictions(run, val)  # (n-1, V): row p-1 predicts character p
        rows = log_p[letters - 1]  # (Q, 6, V)
        target = val[letters]  # (Q, 6)
        right = (rows.argmax(-1) == target).double().mean(-1).numpy()  # (Q,) share of letters 3..8 right
        nats = (-rows.gather(-1, target[..., None])[..., 0]).double().mean(-1).numpy()  # (Q,) nats per letter
        metrics = run_metrics(run.dir)
        out["runs"][key] = {"accuracy": float(right[far].mean()), "nats": float(nats[far].mean()),
                            "near_accuracy": float(right[~far].mean()), "near_nats": float(nats[~far].mean()),
                            "bins": [{"accuracy": float(right[m].mean()) if m.any() else None,
                                      "nats": float(nats[m].mean()) if m.any() else None} for m in inside],
                            "val_bpc": metrics["val"]["bpc"], "tokens_per_s": metrics["tokens_per_s"], "gate": gate(run.model)}
    return out


def gate(model) -> list | None:
    """σ(b_h) of each head of the memory block at the end of training: the memory's share of its attention."""
    import torch

    attn = model.blocks[model.memory_index].attn if hasattr(model, "memory_index") else None
    return torch.sigmoid(attn.gate).tolist() if attn is not None and hasattr(attn, "gate") else None


def run_metrics(run_dir) -> dict:
    import json
    from pathlib import Path

    return json.loads((Path(run_dir) / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------ Shakespeare
def shakespeare(runs: dict, run_dirs: dict) -> dict:
    """val and test bpc of memory-gpt against gpt (three seeds each), the control and the small memory,
    and the training speed of each (tokens/s of one core)."""
    from zoo.summary import stats

    metrics = {key: [run_metrics(d) for d in run_dirs[key]] for key in ("gpt", "memory", "memory-0", f"memory-{SMALL}")}
    out = {key: {"val": stats([m["val"]["bpc"] for m in ms]), "test": stats([m["test"]["bpc"] for m in ms]),
                 "tokens_per_s": stats([m["tokens_per_s"] for m in ms])} for key, ms in metrics.items()}
    out["gates"] = [gate(r.model) for r in runs["memory"]]
    out["gate_mean"] = sum(sum(g) / len(g) for g in out["gates"]) / len(out["gates"])
    gpt, memory = out["gpt"], out["memory"]
    for split in ("val", "test"):
        diff = memory[split]["mean"] - gpt[split]["mean"]
        spread = max(gpt[split]["std"], memory[split]["std"])
        out[f"{split}_change"] = diff
        out[f"{split}_change_in_spreads"] = diff / spread if spread else None
    # the memory against the same rung without one (what the memory itself changes), in the memory runs' spread
    without = out["memory-0"]["val"]["mean"]
    out["memory_minus_0"] = memory["val"]["mean"] - without
    out[f"memory_{SMALL}_minus_0"] = out[f"memory-{SMALL}"]["val"]["mean"] - without
    seed_vals = [m["val"]["bpc"] for m in metrics["memory"]]
    out["seed0_val"] = seed_vals[0]  # the seed the speaker-name comparison uses
    out["seed0_rank"] = sorted(seed_vals).index(seed_vals[0]) + 1  # 1: the best of the three
    out["gate_min"] = min(min(g) for g in out["gates"])
    out["gate_max"] = max(max(g) for g in out["gates"])
    out["speed_ratio"] = memory["tokens_per_s"]["mean"] / gpt["tokens_per_s"]["mean"]
    out["speed_ratio_0"] = out["memory-0"]["tokens_per_s"]["mean"] / gpt["tokens_per_s"]["mean"]
    return out


def speaker_lines(text: str):
    """(start, end, name) of every speaker line: after a blank line (or at the start), a line that is only a
    name and a colon ("PETRUCHIO:", "First Citizen:"); end is past the colon."""
    import re

    return [(m.start(1), m.end(1) + 1, m.group(1)) for m in re.finditer(r"(?:(?<=\n\n)|^)([A-Z][A-Za-z' ]*):\n", text)]


def names(runs: dict, splits: dict) -> dict:
    """Per-character gain of memory-gpt (M = MEMORY) over the same rung with no memory (seed 0 each, both
    streamed), on the characters of speakers' names in the val split (the colon included, the first letter
    not: which speaker comes next is another question), grouped by how far back that name last began."""
    import torch

    from zoo.mixture import run_predictions

    val = splits["val"]
    text = runs["memory"][0].tokenizer.decode(val)
    with_memory = -run_predictions(runs["memory"][0], val).gather(1, val[1:, None])[:, 0]  # (n-1,): nats of char p at p-1
    without = -run_predictions(runs["memory-0"][0], val).gather(1, val[1:, None])[:, 0]
    gain = (without - with_memory).double()  # (n-1,) positive where the memory helps
    W = runs["memory"][0].config.data.block_size
    groups = {"recent": (0, W), "in_memory": (W, W + MEMORY), "beyond": (W + MEMORY, 1 << 30), "first": None}
    index = {g: [] for g in groups}
    last = {}
    for start, end, name in speaker_lines(text):
        back = start - last[name] if name in last else None
        last[name] = start
        group = "first" if back is None else next(g for g, span in groups.items() if span and span[0] <= back < span[1])
        index[group] += list(range(start + 1, end))  # characters after the first letter, through the colon
    named = set(i for ids in index.values() for i in ids)
    other = torch.tensor([p for p in range(1, len(text)) if p not in named])
    out = {"W": W, "memory": MEMORY, "all": {"characters": len(gain), "gain": float(gain.mean())},
           "memory_share": (MEMORY + W) / sum(map(len, splits.values()))}  # what window and memory see of the whole text
    for g, ids in index.items():
        ids_t = torch.tensor(ids, dtype=torch.long)
        out[g] = {"characters": len(ids), "gain": float(gain[ids_t - 1].mean()) if ids else None,
                  "nats_without": float(without[ids_t - 1].double().mean()) if ids else None}
    out["other"] = {"characters": len(other), "gain": float(gain[other - 1].mean())}
    return out


# ---------------------------------------------------------------------------------------------- figures
def figures(results: dict, figdir) -> None:
    """recall.png: accuracy and nats at the answers against the distance to the fact, one line per rung."""
    import matplotlib.pyplot as plt

    r = results["values"]["recall"]
    labels = {run: results["runs"][run]["label"] for run in RECALL_RUNS}
    xs = [i for i, b in enumerate(r["bins"]) if b["repeats"]]
    ticks = [f"{b['lo']}–{b['hi'] if b['hi'] < 1 << 29 else '∞'}\n({b['repeats']})" for b in r["bins"] if b["repeats"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for run in RECALL_RUNS:
        bins = r["runs"][run]["bins"]
        a.plot(xs, [bins[i]["accuracy"] for i in xs], marker="o", label=labels[run])
        b.plot(xs, [bins[i]["nats"] for i in xs], marker="o", label=labels[run])
    a.axhline(r["chance"], color="grey", ls=":", label="chance (memoryless): 1 in 26")
    a.axhline(1.0, color="k", lw=0.6, label="oracle (letters 3–8 follow from the first two)")
    b.axhline(r["chance_nats"], color="grey", ls=":")
    b.axhline(r["oracle_nats"], color="k", lw=0.6)  # the process: nearly 0 from the third letter on
    for ax, ylabel in ((a, "letters 3–8 of a repeat right (argmax)"), (b, "nats per letter (3–8)")):
        ax.set_xticks(xs, ticks, fontsize=7)
        ax.set_xlabel("characters back to the passage (repeats)")
        ax.set_ylabel(ylabel)
    a.legend(fontsize=7)
    fig.suptitle(f"recall:{r['D']}: the far repeats on the validation split, by their distance back (window 128, memory {r['memory']:,})", fontsize=10)
    fig.tight_layout()
    fig.savefig(figdir / "recall.png", dpi=120)
    plt.close(fig)
