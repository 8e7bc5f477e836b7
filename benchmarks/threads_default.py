"""The default thread count against fixed ones, on a quiet machine and beside one busy process.

    python benchmarks/threads_default.py [--rounds 2] [--steps 200] [--json]

A benchmark, not a test. Runs `zoo train gpt --preset nanogpt-cpu` (``--steps`` steps, nothing else
changed) with --trainer.threads left at its default (one thread per core no other process keeps busy,
zoo.parallel.free_threads), with every core's thread (``--trainer.threads N``, torch's own default) and
with one thread, round-robin, first on the machine as it is and then beside one process that spins on
one core. Reports each setting's median tokens/s and, for the default, how many threads it chose.
OMP_NUM_THREADS is removed from the runs' environment (the CLI respects it, so it would choose for them).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from zoo.parallel import usable_cores  # noqa: E402


def run(extra: list[str], steps: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="zoo-threads-")) / "run"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    try:
        done = subprocess.run([sys.executable, "-m", "zoo", "train", "gpt", "--preset", "nanogpt-cpu", "--data", "tinyshakespeare",
                               "--trainer.max_steps", str(steps), "--trainer.val_every", str(steps), "--trainer.progress_bar", "false",
                               "--out", str(out), *extra], env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"zoo train failed: {done.stderr.strip().splitlines()[-1:]}")
        m = json.loads((out / "metrics.json").read_text())
        return {"tokens_per_s": m["tokens_per_s"], "threads": int(m["device"].rsplit("(", 1)[1].split()[0]), "git_commit": m["git_commit"]}
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cores = usable_cores()
    settings = {"default": [], f"{cores} threads": ["--trainer.threads", str(cores)], "1 thread": ["--trainer.threads", "1"]}
    result = {"steps": args.steps, "rounds": args.rounds, "cores": cores}
    for machine in ("quiet", "one busy process"):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if machine != "quiet" else None
        try:
            time.sleep(1 if hog else 0)
            runs = {name: [] for name in settings}
            for _ in range(args.rounds):
                for name, extra in settings.items():
                    runs[name].append(run(extra, args.steps))
        finally:
            if hog:
                hog.kill()
        result[machine] = {name: {"median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                                  "tokens_per_s": [r["tokens_per_s"] for r in rs], "threads": [r["threads"] for r in rs]}
                           for name, rs in runs.items()}
        result["git_commit"] = runs["default"][0]["git_commit"]
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for machine in ("quiet", "one busy process"):
        print(f"{machine}: " + ", ".join(f"{name} {r['median_tokens_per_s']:,.0f} tokens/s (threads {r['threads']})"
                                          for name, r in result[machine].items()))


if __name__ == "__main__":
    main()
