"""Training speed of the `gpt` rung at nanoGPT's laptop-CPU size: tokens/s, wall time and MFU.

    python benchmarks/gpt_speed.py [--preset nanogpt-cpu] [--steps 10] [--rounds 5] [--variants a,b,...]
                                   [--threads N] [--profile] [--json]
    python benchmarks/gpt_speed.py --nanogpt PATH [--nanogpt-steps 2000] [--rounds 5] [--zoo-args "..."] [--json]

The second form is the end-to-end comparison: zoo's default `zoo train gpt --preset nanogpt-cpu` against
nanoGPT's own train.py at the same size, from a nanoGPT checkout you point at (git clone
https://github.com/karpathy/nanoGPT; prepare its shakespeare_char data once), alternating runs in one
process and printing the median of the per-round ratios, with zoo's val bpc and whether its run compiled. Both
train nanoGPT's 2,000 steps by default (its README's laptop command), so start-up and zoo's compilation count
at the length they would in use. ``--zoo-args "--optim.fused true"`` adds options to
zoo's side, to see what a setting would buy before it becomes a default.

A benchmark, not a test. Each variant is a way of running the same training step (forward, cross-entropy,
backward, gradient clipping, AdamW step) on the same model; the variants run round-robin, ``--steps``
timed steps each per round, so that every variant sees the same mix of machine load. Per variant it
reports the median over rounds of tokens/s, and the median over rounds of its speed relative to the
baseline *in the same round* — on a shared machine only these within-run ratios mean anything.

FLOPs per token use the standard estimate (Kaplan et al. 2020; PaLM, Chowdhery et al. 2022, app. B; nanoGPT's
``estimate_mfu``):  6·N + 12·n_layer·n_embd·T, with N every parameter (the tied embedding counted once: its
use as the output projection is a matmul, its use as a lookup is free) and T = block_size. Model FLOP
utilisation = achieved FLOP/s ÷ this machine's matmul peak, measured in the same run by
benchmarks/matmul_peak.py, fp32 and bf16, before and after the timings: the peak is the best of the
all-threads product and threads × the one-thread product (a one-thread matmul loses little to other
processes, while an all-threads one waits for its slowest thread, so on a busy machine the second is the
better estimate of what the cores can do). 1thread variants are held to the same whole-machine peak.

Variants (``--variants``, comma-separated): "eager" — the harness's default path, fp32, eager PyTorch,
AdamW(foreach), torch's default thread count — is the baseline; any other variant is features joined by "+":
  1thread        torch.set_num_threads(1) while this variant runs: no OpenMP fork/join barrier per op
  sdpa-math      SDPA forced onto its unfused "math" backend instead of the fused CPU flash kernel
  fused-adamw    AdamW(fused=True): the optimiser update as one fused kernel
  bf16           the forward under torch.autocast("cpu", bfloat16)  (what trainer.precision "bf16-mixed" does)
  compile        model.compile(): the whole forward traced by TorchDynamo and fused by Inductor
  compile-blocks GPTConfig(compile=True): each block compiled in place (the rung's config option)
Compile time is reported separately (warm-up steps are not timed).

What it found on the 2-core AMD EPYC (Zen 4, AVX-512 + AVX512_BF16) development machine (`python
benchmarks/gpt_speed.py --json`; ratios are medians of same-round ratios, so they hold across load):
  * Threads depend on the load. On a quiet machine the default 2 threads ran a step ~1.5x faster than
    1 thread. When any other process is runnable, every eager op's OpenMP fork/join waits for a
    descheduled thread and a 2-thread step ran 4-20x slower than a 1-thread one: on a shared machine
    use OMP_NUM_THREADS=1 (or --trainer.threads 1), and run independent jobs side by side instead
    (`zoo book --jobs`).
  * torch.compile (model.compile(), or GPTConfig(compile=True) per block) fuses RMSNorm, RoPE, SwiGLU
    and the residual adds: ~1.15-1.25x, after seconds of compilation (a C++ compiler is needed). The
    harness's default (--trainer.compile auto) compiles gpt in runs of at least 1,000 steps.
  * bf16 autocast (trainer.precision "bf16-mixed"): 1.0-1.2x at this size while the attention call ran in
    bf16, whose CPU kernel is slow (benchmarks/attention_precision.py). Since zoo.nn.sdpa computes that
    call in fp32 under CPU autocast: bf16 1.65x eager, compile+bf16 2.14x, and with fused AdamW (optim.fused,
    the default; its val bpc at 2,000 steps within the seed spread, nanogpt_cpu_fused_quality.json) 2.34x,
    on 2 threads (benchmarks/results/gpt_speed_nanogpt_cpu.json).
  * SDPA's fused CPU kernel vs its math backend: within noise at T = 64.
  * The harness's own per-step cost (Lightning, data, logging, the periodic validation estimate) is
    the difference between this benchmark's eager tokens/s and `zoo train gpt --preset nanogpt-cpu`'s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

DEFAULT_THREADS = torch.get_num_threads()
VOCAB = 65  # tinyshakespeare's character set; the cost of a step does not depend on which tokens it sees
FEATURES = ("1thread", "sdpa-math", "fused-adamw", "bf16", "compile", "compile-blocks")
DEFAULT_VARIANTS = ["eager", "sdpa-math", "fused-adamw", "bf16", "compile", "compile-blocks", "compile+bf16",
                    "1thread", "1thread+bf16", "1thread+compile", "1thread+compile+bf16", "1thread+compile+fused-adamw"]


def features(variant: str) -> set[str]:
    return set() if variant == "eager" else set(variant.split("+"))


def _load_matmul_peak():
    spec = importlib.util.spec_from_file_location("matmul_peak", Path(__file__).with_name("matmul_peak.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _peaks_both(mp) -> dict:
    """Matmul peaks at the default thread count and at one thread."""
    all_threads = mp.peaks(n=2048, repeats=5)
    torch.set_num_threads(1)
    one_thread = mp.peaks(n=2048, repeats=5)
    torch.set_num_threads(DEFAULT_THREADS)
    return {"all": all_threads, "one": one_thread}


def flops_per_token(model, n_layer: int, n_embd: int, T: int) -> int:
    """6·N + 12·n_layer·n_embd·T (forward + backward; attention scores and values at full T×T)."""
    N = sum(p.numel() for p in model.parameters())
    return 6 * N + 12 * n_layer * n_embd * T


class Runner:
    """One variant: its own model (same seed, same weights), optimiser and step function."""

    def __init__(self, name: str, preset: dict, seed: int = 0):
        from zoo.registry import build

        self.name, f = name, features(name)
        model_kw = dict(preset["model"])
        if "compile-blocks" in f:
            model_kw["compile"] = True
        self.T, self.B = preset["data"]["block_size"], preset["data"]["batch_size"]
        torch.manual_seed(seed)
        self.model = build("gpt", vocab_size=VOCAB, block_size=self.T, **model_kw).train()
        if "compile" in f:
            self.model.compile()
        optim = preset["optim"]
        params = list(self.model.parameters())
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": optim.get("weight_decay", 0.1)},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        kw = {"fused": True} if "fused-adamw" in f else {"foreach": True}
        self.opt = torch.optim.AdamW(groups, lr=optim.get("lr", 1e-3), betas=tuple(optim.get("betas", (0.9, 0.95))), **kw)
        self.bf16 = "bf16" in f
        self.math_sdpa = "sdpa-math" in f
        g = torch.Generator().manual_seed(seed)
        self.batches = [torch.randint(0, VOCAB, (self.B, self.T + 1), generator=g) for _ in range(8)]
        self.i = 0
        self.threads = 1 if "1thread" in f else torch.get_num_threads()

    def step(self) -> float:
        batch = self.batches[self.i % len(self.batches)]
        self.i += 1
        idx, targets = batch[:, :-1], batch[:, 1:]  # (B, T) each
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16), _sdpa_backend(self.math_sdpa):
            logits = self.model(idx)  # (B, T, vocab_size)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0, foreach=True)
        self.opt.step()
        return loss.item()

    def timed(self, steps: int) -> float:
        """Tokens per second over ``steps`` steps (on this variant's thread count)."""
        torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        elapsed = time.perf_counter() - t0
        torch.set_num_threads(DEFAULT_THREADS)
        return steps * self.B * self.T / elapsed


def _sdpa_backend(math_only: bool):
    from contextlib import nullcontext

    if not math_only:
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def profile(runner: Runner, steps: int = 10, rows: int = 18) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(3):
        runner.step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            runner.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# nanoGPT's README, "I only have a macbook": train_shakespeare_char.py on a CPU, the size of the nanogpt-cpu preset
NANOGPT_BATCH, NANOGPT_WINDOW = 12, 64
NANOGPT_CPU_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
                    "--log_interval=1", f"--block_size={NANOGPT_WINDOW}", f"--batch_size={NANOGPT_BATCH}", "--n_layer=4",
                    "--n_head=4", "--n_embd=128", "--lr_decay_iters=2000", "--dropout=0.0"]
NANOGPT_ITER = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", re.M)


def nanogpt_tokens_per_s(checkout: Path, steps: int, skip: int = 5) -> float:
    """nanoGPT's own train.py at its CPU configuration: tokens/s over its logged iteration times, the first
    ``skip`` (start-up; iteration 0 also holds an evaluation) left out, so nanoGPT gets its steady state."""
    out_dir = tempfile.mkdtemp(prefix="nanogpt-bench-")
    try:
        done = subprocess.run([sys.executable, "train.py", *NANOGPT_CPU_ARGS, f"--max_iters={steps}",
                               f"--eval_interval={steps + 1000}", f"--out_dir={out_dir}", "--always_save_checkpoint=False"],
                              cwd=checkout, capture_output=True, text=True, timeout=3600)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    times = [float(ms) for it, ms in NANOGPT_ITER.findall(done.stdout) if int(it) >= skip]
    if done.returncode != 0 or not times:
        sys.exit(f"nanoGPT's train.py failed in {checkout}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return NANOGPT_BATCH * NANOGPT_WINDOW * len(times) / (sum(times) / 1000)


def zoo_run(steps: int, corpus: str, extra: list[str] = ()) -> dict:
    """`zoo train gpt --preset nanogpt-cpu` with zoo's defaults: its metrics.json, whose tokens/s counts every
    training step with its start-up and any compilation (validation excluded)."""
    out_dir = Path(tempfile.mkdtemp(prefix="zoo-bench-")) / "run"
    try:
        done = subprocess.run([sys.executable, "-m", "zoo", "train", "gpt", "--preset", "nanogpt-cpu", "--data", corpus,
                               "--trainer.max_steps", str(steps), "--trainer.val_every", str(steps), "--out", str(out_dir), *extra],
                              capture_output=True, text=True, timeout=3600, cwd=Path(__file__).resolve().parents[1])
        if done.returncode != 0:
            sys.exit(f"zoo train failed: {done.stderr.strip().splitlines()[-1:]}")
        return json.loads((out_dir / "metrics.json").read_text())
    finally:
        shutil.rmtree(out_dir.parent, ignore_errors=True)


def versus_nanogpt(checkout: Path, steps: int, rounds: int, corpus: str, as_json: bool, extra: list[str] = ()) -> None:
    """zoo's default `zoo train` against nanoGPT's train.py at the same size, A B A B in one run: the median
    of the per-round ratios (and their range), since only ratios taken side by side survive a shared machine."""
    if not (checkout / "train.py").is_file() or not (checkout / "config" / "train_shakespeare_char.py").is_file():
        sys.exit(f"--nanogpt {checkout}: not a nanoGPT checkout (no train.py and config/train_shakespeare_char.py); "
                 "git clone https://github.com/karpathy/nanoGPT")
    if not (checkout / "data" / "shakespeare_char" / "train.bin").is_file():
        sys.exit(f"--nanogpt {checkout}: its data is not prepared; run `python data/shakespeare_char/prepare.py` there "
                 "(with $ZOO_DATA_DIR/tinyshakespeare.txt copied to data/shakespeare_char/input.txt, it downloads nothing)")
    zoo_runs, nano_rates = [], []
    for _ in range(rounds):
        nano_rates.append(nanogpt_tokens_per_s(checkout, steps))
        zoo_runs.append(zoo_run(steps, corpus, extra))
    zoo_rates = [m["tokens_per_s"] for m in zoo_runs]
    ratios = [z / n for z, n in zip(zoo_rates, nano_rates)]
    result = {"steps": steps, "rounds": rounds, "zoo_tokens_per_s": zoo_rates, "nanogpt_tokens_per_s": nano_rates,
              "ratios": ratios, "median_ratio": statistics.median(ratios), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "zoo_args": list(extra),
              "zoo_val_bpc": [m["val"]["bpc"] for m in zoo_runs], "zoo_compiled": [m.get("compiled", False) for m in zoo_runs],
              "zoo_device": zoo_runs[-1]["device"], "zoo_git_commit": zoo_runs[-1]["git_commit"]}
    if as_json:
        print(json.dumps(result))
        return
    print(f"gpt @ nanogpt-cpu, {steps} steps a run, {rounds} rounds (nanoGPT, zoo, nanoGPT, zoo, ...), torch {torch.__version__}")
    print(f"nanoGPT train.py (--device=cpu --compile=False): median {statistics.median(nano_rates):,.0f} tokens/s")
    print(f"zoo train gpt --preset nanogpt-cpu {' '.join(extra) or '(defaults)'}: median {statistics.median(zoo_rates):,.0f} tokens/s "
          f"({result['zoo_device']}; compiled: {', '.join(map(str, result['zoo_compiled']))}; "
          f"val bpc {', '.join(f'{b:.4f}' for b in result['zoo_val_bpc'])})")
    print(f"zoo / nanoGPT: median {statistics.median(ratios):.2f}x (per round: {', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="nanogpt-cpu", help="the gpt preset whose model/data/optim sizes to use")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (compilation happens here)")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of the eager baseline")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--nanogpt", type=Path, default=None, metavar="PATH",
                    help="instead: zoo's default `zoo train` against nanoGPT's train.py from the checkout at PATH")
    ap.add_argument("--nanogpt-steps", type=int, default=2000, help="training steps of each run in --nanogpt mode (nanoGPT's max_iters)")
    ap.add_argument("--corpus", default="tinyshakespeare", help="zoo's corpus in --nanogpt mode")
    ap.add_argument("--zoo-args", default="", help="extra `zoo train` options in --nanogpt mode (default: none, zoo's defaults)")
    args = ap.parse_args()
    if args.nanogpt is not None:
        return versus_nanogpt(args.nanogpt.resolve(), args.nanogpt_steps, args.rounds, args.corpus, args.json, args.zoo_args.split())
    global DEFAULT_THREADS
    if args.threads:
        torch.set_num_threads(args.threads)
    DEFAULT_THREADS = torch.get_num_threads()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from zoo.registry import get

    preset = get("gpt").preset(args.preset)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set().union(*(features(v) for v in variants)) - set(FEATURES)
    if unknown:
        ap.error(f"unknown features {sorted(unknown)}; variants are 'eager' or features joined by '+' from {FEATURES}")
    if "eager" not in variants:
        variants.insert(0, "eager")
    mp = _load_matmul_peak()
    peak_runs = [_peaks_both(mp)]

    runners, compile_s = {}, {}
    for v in variants:
        runners[v] = Runner(v, preset)
        t0 = time.perf_counter()
        runners[v].timed(args.warmup)
        compile_s[v] = time.perf_counter() - t0
    if args.profile:
        print(profile(runners["eager"]))

    rates = {v: [] for v in variants}
    t_start = time.perf_counter()
    for _ in range(args.rounds):
        for v in variants:
            rates[v].append(runners[v].timed(args.steps))
    wall = time.perf_counter() - t_start
    peak_runs.append(_peaks_both(mp))
    peak = {dt: max(max(r["all"][dt]["best_gflops"], DEFAULT_THREADS * r["one"][dt]["best_gflops"]) for r in peak_runs)
            for dt in ("float32", "bfloat16")}
    measured = {f"{which}_threads_{dt}": max(r[which][dt]["best_gflops"] for r in peak_runs)
                for which in ("all", "one") for dt in ("float32", "bfloat16")}

    base = runners["eager"]
    m = preset["model"]
    fpt = flops_per_token(base.model, m["n_layer"], m["n_embd"], base.T)
    rows = []
    for v in variants:
        tok_s = statistics.median(rates[v])
        ratio = statistics.median(r / b for r, b in zip(rates[v], rates["eager"]))
        gflops = fpt * tok_s / 1e9
        rows.append({"variant": v, "tokens_per_s": tok_s, "vs_eager": ratio, "model_gflops": gflops,
                     "mfu_fp32": gflops / peak["float32"], "mfu_bf16": gflops / peak["bfloat16"],
                     "step_ms": 1000 * base.B * base.T / tok_s, "warmup_s": compile_s[v],
                     "all_tokens_per_s": rates[v]})
    steps_in_preset = preset["trainer"].get("max_steps", 0)
    result = {"preset": args.preset, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "params": sum(p.numel() for p in base.model.parameters()), "flops_per_token": fpt,
              "flops_formula": "6*N + 12*n_layer*n_embd*T", "B": base.B, "T": base.T,
              "peak_gflops": peak, "peak_measured_gflops": measured, "timed_wall_s": wall, "rows": rows}
    if args.json:
        print(json.dumps(result))
        return
    print(f"gpt @ {args.preset}: {result['params']:,} params, B={base.B} T={base.T}, "
          f"{fpt / 1e6:.2f} MFLOP/token (6N + 12·L·C·T), torch {torch.__version__}, {result['threads']} threads")
    print(f"matmul peak: fp32 {peak['float32']:.1f} GFLOP/s, bf16 {peak['bfloat16']:.1f} GFLOP/s  (measured best, "
          f"{DEFAULT_THREADS} threads: {measured['all_threads_float32']:.1f} / {measured['all_threads_bfloat16']:.1f}; "
          f"1 thread: {measured['one_threads_float32']:.1f} / {measured['one_threads_bfloat16']:.1f})")
    print(f"{args.rounds} rounds × {args.steps} steps per variant, round-robin, {wall:.1f} s timed in all")
    print(f"{'variant':<30}{'tokens/s':>10}{'vs eager':>10}{'ms/step':>9}{'GFLOP/s':>9}{'MFU fp32':>10}{'MFU bf16':>10}"
          f"{'warmup s':>10}{f'  {steps_in_preset} steps':>14}")
    for r in rows:
        print(f"{r['variant']:<30}{r['tokens_per_s']:>10.0f}{r['vs_eager']:>9.2f}×{r['step_ms']:>9.1f}{r['model_gflops']:>9.2f}"
              f"{r['mfu_fp32']:>9.1%} {r['mfu_bf16']:>9.1%}{r['warmup_s']:>10.1f}"
              f"{steps_in_preset * r['step_ms'] / 1000 / 60:>11.1f} min")


if __name__ == "__main__":
    main()
