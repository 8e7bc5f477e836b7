"""The BPTT horizon, measured: delay D x truncation k -> final val loss on copy:D vs the memoryless baseline.

Corpus ``copy:D`` (zoo/data.py) asks the model to repeat, after every upper-case cue, the letter D steps
back. The bigram-level "memoryless" loss and the oracle's loss are known exactly (``copy_task_bounds``).
A stateful rung trained with truncated BPTT over chunks of k steps gets a gradient from a recall to its
source only when both fall in one chunk: the prediction at chunk position j reads inputs 0..j, and its
target's source is input j + 1 − D, so only positions j >= D − 1 can learn it — none if k < D, a fraction
(k − D + 1)/k of the recalls if k >= D. The horizon is soft, though: every chunk still trains the one
shared W_hh to carry what the incoming state holds through the chunk's first steps, and a state that
keeps things for k steps may keep them a little longer (measured: D = 4 is learnt in part with k = 2,
while D = 8 with k <= 4 is not learnt at all). Windowed (attention) rungs get ``block_size = k``
instead: their window is their horizon, with the same off-by-one (window k reaches back k − 1 inputs
from the last position, so k = D leaves only one position in k able to recall).

Every cell is a real run through the public API (``zoo.train``), the same harness as ``zoo train``;
each step sees ``--tokens-per-step`` tokens (batch = tokens_per_step // k), so every cell trains on
the same number of tokens. Cells print as val bpc and the fraction of the memoryless-to-oracle gap
closed (0 % = memoryless, 100 % = perfect recall).

    python benchmarks/copy_horizon.py                       # rnn, D in {4, 8}, k in {2, 4, 8, 16}
    python benchmarks/copy_horizon.py --rungs rnn,lstm,gpt --delays 8 --truncations 4,8,16,32
    python benchmarks/copy_horizon.py --json horizon.json   # also write every cell as JSON

Each cell is also ``zoo train RUNG --data copy:D --data.block_size k --data.batch_size 512/k ...``
(``--print-commands`` prints them).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# The small models used in every cell: the same for every (D, k), so only the horizon varies.
MODEL = {
    "rnn": {"n_embd": 16, "n_hidden": 64},
    "lstm": {"n_embd": 16, "n_hidden": 64},
}
# Other rungs (attention) run with their quick preset's model.


def overrides(rung: str, D: int, k: int, steps: int, tokens_per_step: int, lr: float) -> dict:
    return {
        "model": MODEL.get(rung, {}),
        "data": {"corpus": f"copy:{D}", "block_size": k, "batch_size": max(1, tokens_per_step // k)},
        "optim": {"lr": lr, "warmup_steps": 50, "weight_decay": 0.0, "schedule": "cosine", "min_lr_ratio": 0.1},
        "trainer": {"max_steps": steps, "val_every": steps, "val_batches": 4, "checkpoint_every": 0, "progress_bar": False},
    }


def command(rung: str, D: int, k: int, steps: int, tokens_per_step: int, lr: float) -> str:
    o = overrides(rung, D, k, steps, tokens_per_step, lr)
    flags = [f"--data copy:{D}", f"--data.block_size {k}", f"--data.batch_size {o['data']['batch_size']}"]
    flags += [f"--model.{key} {v}" for key, v in o["model"].items()]
    flags += [f"--optim.{key} {v}" for key, v in o["optim"].items()]
    flags += [f"--trainer.max_steps {steps}"]
    return f"zoo train {rung} " + " ".join(flags)


def run_cell(args: tuple) -> dict:
    rung, D, k, steps, tokens_per_step, lr, out_root = args
    import torch

    torch.set_num_threads(1)  # cells run side by side, one core each
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import zoo
    from zoo.data import copy_task_bounds

    config = zoo.make_config(rung, "quick", overrides=overrides(rung, D, k, steps, tokens_per_step, lr))
    start = time.perf_counter()
    metrics = zoo.train(config, Path(out_root) / f"{rung}-D{D}-k{k}", quiet=True)
    bounds = copy_task_bounds(D, "val")
    val = metrics["val"]["nats"]
    return {
        "rung": rung, "D": D, "k": k, "steps": steps, "batch_size": config.data.batch_size,
        "val_nats": val, "val_bpc": val / math.log(2),
        "memoryless_nats": bounds["memoryless"], "oracle_nats": bounds["oracle"],
        "gap_closed": (bounds["memoryless"] - val) / (bounds["memoryless"] - bounds["oracle"]),
        "params": metrics["params"], "wall_s": round(time.perf_counter() - start, 1),
    }


def table(cells: list[dict], rungs: list[str], delays: list[int], truncations: list[int]) -> str:
    """One markdown table per rung: rows D, columns k; cell = val bpc (gap closed)."""
    out = []
    by = {(c["rung"], c["D"], c["k"]): c for c in cells}
    for rung in rungs:
        horizon = "k (TBPTT chunk)" if rung in MODEL else "k (window = block_size)"
        out.append(f"\n{rung}: val bpc on copy:D (fraction of the memoryless -> oracle gap closed); columns: {horizon}\n")
        out.append("| D | memoryless | oracle | " + " | ".join(f"k={k}" for k in truncations) + " |")
        out.append("|---|---|---|" + "---|" * len(truncations))
        for D in delays:
            first = by[(rung, D, truncations[0])]
            row = [f"{first['memoryless_nats'] / math.log(2):.3f}", f"{first['oracle_nats'] / math.log(2):.3f}"]
            row += [f"{by[(rung, D, k)]['val_bpc']:.3f} ({by[(rung, D, k)]['gap_closed']:.0%})" for k in truncations]
            out.append(f"| {D} | " + " | ".join(row) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rungs", default="rnn", help="comma-separated rungs (stateful: k is the TBPTT chunk; others: the window)")
    parser.add_argument("--delays", default="4,8", help="comma-separated delays D")
    parser.add_argument("--truncations", default="2,4,8,16", help="comma-separated k")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps per cell")
    parser.add_argument("--tokens-per-step", type=int, default=512, help="batch_size = this // k")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--jobs", type=int, default=2, help="cells trained in parallel (one thread each)")
    parser.add_argument("--out", default=None, help="keep the run directories here (default: a temporary directory)")
    parser.add_argument("--json", default=None, help="also write the cells to this JSON file")
    parser.add_argument("--print-commands", action="store_true", help="print the equivalent zoo train commands and exit")
    a = parser.parse_args(argv)
    rungs = a.rungs.split(",")
    delays = [int(d) for d in a.delays.split(",")]
    truncations = [int(k) for k in a.truncations.split(",")]
    grid = [(r, D, k) for r in rungs for D in delays for k in truncations]
    if a.print_commands:
        for r, D, k in grid:
            print(command(r, D, k, a.steps, a.tokens_per_step, a.lr))
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out_root = a.out or tmp
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
        jobs = [(r, D, k, a.steps, a.tokens_per_step, a.lr, out_root) for r, D, k in grid]
        with ProcessPoolExecutor(max_workers=a.jobs) as pool:
            cells = []
            for cell in pool.map(run_cell, jobs):
                cells.append(cell)
                print(f"{cell['rung']:>8} D={cell['D']:<3} k={cell['k']:<3} val {cell['val_bpc']:.3f} bpc "
                      f"(memoryless {cell['memoryless_nats'] / math.log(2):.3f}, oracle {cell['oracle_nats'] / math.log(2):.3f}) "
                      f"gap closed {cell['gap_closed']:.0%}  [{cell['wall_s']:.0f}s]", flush=True)
    print(table(cells, rungs, delays, truncations))
    print(f"\n{len(cells)} runs, {a.steps} steps x {a.tokens_per_step} tokens each, {time.perf_counter() - start:.0f}s wall "
          f"({a.jobs} at a time; load average at the end {os.getloadavg()[0]:.1f})")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "cells": cells}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
