"""bf16 mixed precision against fp32 for every trained rung of the book: speed and final scores.

Not a test and not a chapter: the measurement behind ``--trainer.precision auto`` (zoo.runs.auto_precision),
which trains in bf16-mixed where the CPU multiplies bf16 natively. For each rung it trains the book preset on
tinyshakespeare at ``--seeds`` in bf16-mixed, one PyTorch thread per run and ``--jobs`` runs side by side
(as ``zoo book`` does), and sets the runs' val / test bpc and training time beside the fp32 runs the book
committed at git revision ``--fp32-rev`` (read from that revision's chapters/*/results.json, trained the
same way, with the same code but for precision).

    python benchmarks/precision_quality.py --fp32-rev 8d05ac6 --out /tmp/precision --jobs 2 \\
        --json benchmarks/results/precision_bf16_cpu.json

A run directory already in ``--out`` is reused, not retrained. Quote ratios of training time, not absolute
times: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_OF = {"bengio-mlp": "02-bengio-mlp", "mlp-mixer": "03-mlp-mixer", "rnn": "04-rnn", "lstm": "04-rnn",
              "set-transformer": "05-set-transformer", "vaswani": "06-vaswani", "gpt": "07-gpt"}


def train(rung: str, seed: int, out: Path) -> dict:
    run_dir = out / f"{rung}-bf16-{seed}"
    if not (run_dir / "metrics.json").is_file():
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-m", "zoo", "train", rung, "--preset", "book", "--data", "tinyshakespeare",
                               "--seed", str(seed), "--trainer.precision", "bf16-mixed", "--trainer.threads", "1",
                               "--trainer.progress_bar", "false", "--out", str(run_dir)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{rung} seed {seed}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads((run_dir / "metrics.json").read_text())


def committed(rev: str, rung: str) -> list[dict]:
    path = f"chapters/{CHAPTER_OF[rung]}/results.json"
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], capture_output=True, text=True, check=True).stdout
    return json.loads(text)["runs"][rung]["per_seed"]


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None, "values": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32-rev", required=True, help="git revision whose committed chapter results are the fp32 runs")
    ap.add_argument("--out", type=Path, required=True, help="folder for the bf16 run directories")
    ap.add_argument("--rungs", default=",".join(CHAPTER_OF))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the comparison here")
    args = ap.parse_args()
    rungs = [r for r in args.rungs.split(",") if r]
    unknown = [r for r in rungs if r not in CHAPTER_OF]
    if unknown:
        ap.error(f"unknown rung(s) {unknown}; choose from {list(CHAPTER_OF)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = {(r, s): pool.submit(train, r, s, args.out) for r in rungs for s in seeds}
        runs = {key: f.result() for key, f in runs.items()}
    rows = []
    for rung in rungs:
        bf16 = [runs[(rung, s)] for s in seeds]
        fp32 = committed(args.fp32_rev, rung)
        row = {"rung": rung, "seeds": seeds, "bf16_commit": sorted({m["git_commit"] for m in bf16})}
        for split in ("val", "test"):
            row[split] = {"fp32": spread([m[split]["bpc"] for m in fp32]), "bf16": spread([m[split]["bpc"] for m in bf16])}
        row["train_s"] = {"fp32": statistics.median(m["wall_s"] for m in fp32), "bf16": statistics.median(m["wall_s"] for m in bf16)}
        row["speedup"] = row["train_s"]["fp32"] / row["train_s"]["bf16"]
        rows.append(row)
    print(f"{'rung':<16}{'val fp32':>16}{'val bf16':>16}{'test fp32':>16}{'test bf16':>16}{'train s fp32→bf16':>22}")
    for r in rows:
        cells = [f"{r[s][p]['mean']:.4f}±{r[s][p]['std'] or 0:.4f}" for s in ("val", "test") for p in ("fp32", "bf16")]
        print(f"{r['rung']:<16}" + "".join(f"{c:>16}" for c in cells)
              + f"{r['train_s']['fp32']:>10.0f} → {r['train_s']['bf16']:>4.0f} ({r['speedup']:.2f}×)")
    if args.json:
        args.json.write_text(json.dumps({"fp32_rev": args.fp32_rev, "threads_per_run": 1, "jobs": args.jobs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
