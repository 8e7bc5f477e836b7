"""Does compiling pay for a rung? `zoo train RUNG` with --trainer.compile on and off, side by side.

    python benchmarks/compile_ab.py RUNG [--preset book] [--steps 2000] [--rounds 1] [--zoo-args "..."] [--json]

A benchmark, not a test: what a rung's ``compile_pays`` claim (``--trainer.compile auto``) rests on. Each round
trains the same run twice at once, compiled and eager, one thread each, so both see the same machine; first,
one short compiled run fills torch's compile cache, so the timed compiled run pays what a user's second run
would (a first run on a fresh machine compiles from scratch: tens of seconds more). Reports each side's
training tokens/s (compilation included), the median of the per-round ratios compiled / eager, and each
run's val bpc and commit. ``--zoo-args`` adds options to both sides, e.g. "--model.dropout 0.1".
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(rung: str, preset: str, steps: int, compile: str, extra: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zoo", "train", rung, "--preset", preset, "--data", "tinyshakespeare",
                             "--trainer.max_steps", str(steps), "--trainer.threads", "1", "--trainer.compile", compile,
                             "--trainer.progress_bar", "false", "--out", str(out), *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, out: Path) -> dict:
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"zoo train failed: {err.strip().splitlines()[-1:]}")
    m = json.loads((out / "metrics.json").read_text())
    return {k: m[k] for k in ("tokens_per_s", "wall_s", "compiled", "git_commit")} | {"val_bpc": m["val"]["bpc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rung")
    ap.add_argument("--preset", default="book")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--zoo-args", default="", help="extra `zoo train` options for both sides")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    extra = args.zoo_args.split()
    tmp = Path(tempfile.mkdtemp(prefix="zoo-compile-ab-"))
    try:
        finish(start(args.rung, args.preset, 20, "on", extra, tmp / "warm"), tmp / "warm")
        rounds = []
        for i in range(args.rounds):
            outs = {c: tmp / f"{c}-{i}" for c in ("on", "off")}
            procs = {c: start(args.rung, args.preset, args.steps, c, extra, out) for c, out in outs.items()}
            rounds.append({c: finish(procs[c], outs[c]) for c in procs})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [r["on"]["tokens_per_s"] / r["off"]["tokens_per_s"] for r in rounds]
    result = {"command": f"zoo train {args.rung} --preset {args.preset} --trainer.max_steps {args.steps} "
                         f"--trainer.threads 1 --trainer.compile on|off {args.zoo_args}".strip(),
              "rounds": rounds, "ratios": ratios, "median_ratio": statistics.median(ratios)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['command']}: {args.rounds} round(s), compiled and eager side by side")
    for r in rounds:
        print("  " + ", ".join(f"{c}: {r[c]['tokens_per_s']:,.0f} tokens/s, val {r[c]['val_bpc']:.4f} bpc" for c in ("on", "off")))
    print(f"compiled / eager: median {result['median_ratio']:.2f}x (per round: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
