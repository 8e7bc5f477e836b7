"""Sweep for chapter 08: where networks cross the counts, and which regularised gpt to train for 45 CPU minutes.

Not a book experiment. The chapter's numbers come from its own CPU runs (``zoo chapter run 08``); this
script only chooses what those runs are. It trains many configurations side by side, each in its own
process through ``zoo train`` (the same CLI a user has), on whatever accelerator is given, and prints one
table: val and test bpc, the last logged training loss, and each run's training tokens as a multiple of the
ladder's budget (2,000 steps of 16 × 128 characters).

    python benchmarks/sweep_beyond_counting.py --accelerator gpu --jobs 16 --out /tmp/sweep

Choices are made on val only; test is printed so the chapter can say later how far it moved, not to choose.

Findings (one H200 shared by 16 runs at once, torch 2.11, fp32, one seed each, 2026-11-29; the raw output
is benchmarks/results/sweep_beyond_counting_h200.json). The sweep was cut off after 9 minutes: the 8×
gpt and vaswani candidates (16,000 steps) did not finish. Of those that did, val / test bpc:

    lstm 2×  2.066 / 2.269     gpt 2×  2.031 / 2.268     gpt 4×  2.031 / 2.250     vaswani 4×  2.081 / 2.367
    lstm 4×  2.061 / 2.292     lstm 8×  2.157 / 2.430    gpt 6× dropout 0.1  1.960 / 2.213
    gpt 6× dropout 0.2  2.018 / 2.221    gpt 6 blocks, 4×, dropout 0.2  2.016 / 2.211
    gpt width 192, 3×, dropout 0.2  2.084 / 2.319

So: the plain recipes stop improving on val between 2× and 4× and then overfit (lstm 8× is worse than 2×);
dropout 0.1 at 6× was the best on val, and 6× was about what one CPU core trained in 45 minutes in fp32.

The 8× candidates the GPU sweep did not finish, run afterwards on this 2-core CPU in bf16 (the book's
precision), one thread each, both at once, beside other work (so their wall times are not the rungs'
speed), 2026-11-30 (raw output: benchmarks/results/sweep_beyond_counting_cpu_8x.json):

    python benchmarks/sweep_beyond_counting.py --accelerator cpu --jobs 2 --only gpt-8x-d0.1 gpt-8x-d0.2 --out /tmp/sweep8x

    gpt 8× dropout 0.1  1.955 / 2.174      gpt 8× dropout 0.2  2.012 / 2.253

On val, 8× with dropout 0.1 is below chapter 08's 6× run (1.962, the same recipe at 6×, bf16), so chapter
08's best run became it: in bf16 one core trains 8× in about the time 6× took in fp32.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

LADDER_STEPS = 2000

# name: (rung, {dotted option: value}); every run starts from the rung's book preset on tinyshakespeare
CONFIGS = {
    "gpt-2x": ("gpt", {"trainer.max_steps": 4000}),
    "gpt-4x": ("gpt", {"trainer.max_steps": 8000}),
    "gpt-8x": ("gpt", {"trainer.max_steps": 16000}),
    "lstm-2x": ("lstm", {"trainer.max_steps": 4000}),
    "lstm-4x": ("lstm", {"trainer.max_steps": 8000}),
    "lstm-8x": ("lstm", {"trainer.max_steps": 16000}),
    "vaswani-4x": ("vaswani", {"trainer.max_steps": 8000}),
    "vaswani-8x": ("vaswani", {"trainer.max_steps": 16000}),
    "gpt-6x-d0.1": ("gpt", {"trainer.max_steps": 12000, "model.dropout": 0.1}),
    "gpt-6x-d0.2": ("gpt", {"trainer.max_steps": 12000, "model.dropout": 0.2}),
    "gpt-8x-d0.1": ("gpt", {"trainer.max_steps": 16000, "model.dropout": 0.1}),
    "gpt-8x-d0.2": ("gpt", {"trainer.max_steps": 16000, "model.dropout": 0.2}),
    "gpt-8x-d0.2-lr3e-3": ("gpt", {"trainer.max_steps": 16000, "model.dropout": 0.2, "optim.lr": 3e-3}),
    "gpt-6L-8k-d0.2": ("gpt", {"trainer.max_steps": 8000, "model.n_layer": 6, "model.dropout": 0.2}),
    "gpt-w192-6k-d0.2": ("gpt", {"trainer.max_steps": 6000, "model.n_embd": 192, "model.dropout": 0.2}),
    "gpt-8x-d0.2-wd0.3": ("gpt", {"trainer.max_steps": 16000, "model.dropout": 0.2, "optim.weight_decay": 0.3}),
}


def train(name: str, rung: str, options: dict, out: Path, accelerator: str) -> dict:
    run_dir = out / name
    cmd = [sys.executable, "-m", "zoo", "train", rung, "--preset", "book", "--data", "tinyshakespeare",
           "--out", str(run_dir), "--trainer.accelerator", accelerator, "--trainer.progress_bar", "false",
           "--trainer.threads", "1"]
    for key, value in options.items():
        cmd += [f"--{key}", str(value)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"name": name, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:], "wall_s": wall}
    m = json.loads((run_dir / "metrics.json").read_text())
    curve = (run_dir / "logs").glob("version_*/metrics.csv")
    train_loss = None
    for path in curve:
        rows = [line.split(",") for line in path.read_text().splitlines()]
        header, rows = rows[0], rows[1:]
        i = header.index("train_loss")
        losses = [r[i] for r in rows if len(r) > i and r[i]]
        train_loss = float(losses[-1]) if losses else None
    steps = m["steps"]
    return {"name": name, "rung": rung, "options": options, "budget": steps * m["config"]["data"]["batch_size"]
            * m["config"]["data"]["block_size"] / (LADDER_STEPS * 16 * 128), "params": m["params"],
            "val_bpc": m["val"]["bpc"], "test_bpc": m["test"]["bpc"], "val_nats": m["val"]["nats"],
            "train_loss_nats": train_loss, "wall_s": round(wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--only", nargs="*", help="names from CONFIGS (default: all)")
    args = p.parse_args()
    names = args.only or list(CONFIGS)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(train, n, *CONFIGS[n], args.out, args.accelerator) for n in names]
        for f in as_completed(futures):
            results.append(f.result())
            print(json.dumps(results[-1]), flush=True)
            (args.out / "sweep.json").write_text(json.dumps(results, indent=1))  # kept if the sweep is cut short
    results.sort(key=lambda r: names.index(r["name"]))
    print(f"{'name':24s} {'budget':>6s} {'params':>8s} {'val':>7s} {'test':>7s} {'train':>6s} {'wall':>6s}")
    for r in results:
        if "error" in r:
            print(f"{r['name']:24s} ERROR {r['error']}")
            continue
        tl = f"{r['train_loss_nats']:.3f}" if r["train_loss_nats"] is not None else "-"
        print(f"{r['name']:24s} {r['budget']:6.1f} {r['params']:8d} {r['val_bpc']:7.4f} {r['test_bpc']:7.4f} {tl:>6s} {r['wall_s']:6.0f}")


if __name__ == "__main__":
    main()
