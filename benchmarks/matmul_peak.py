"""Measure this machine's matmul peak: torch.matmul on large square matrices, fp32 and bf16.

    python benchmarks/matmul_peak.py [--n 2048] [--repeats 10] [--threads N] [--json]

Reports, per dtype, the best and median throughput in GFLOP/s over ``--repeats`` timed products
(2·n³ floating-point operations each, after warm-up). The best is the number to quote as the peak: on a
shared machine the median shows how much of it other processes left you. Model FLOP utilisation
(benchmarks/gpt_speed.py) divides achieved training FLOP/s by these peaks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def measure(dtype: torch.dtype, n: int, repeats: int) -> dict:
    """Best and median GFLOP/s of an n×n by n×n product in ``dtype``."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(2):  # warm-up: thread pool, kernel selection, page faults
        torch.matmul(a, b, out=out)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "best_gflops": max(rates), "median_gflops": statistics.median(rates)}


def peaks(n: int = 2048, repeats: int = 10) -> dict:
    """{"float32": {...}, "bfloat16": {...}} for the current thread count."""
    return {r["dtype"]: r for r in (measure(dt, n, repeats) for dt in (torch.float32, torch.bfloat16))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="matrix side (default 2048: 17 GFLOP a product)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), **peaks(args.n, args.repeats)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"torch {result['torch']}, {result['threads']} threads, CPU capability {result['cpu_capability']}")
    for dt in ("float32", "bfloat16"):
        r = result[dt]
        print(f"{dt:>9} matmul {r['n']}×{r['n']}: best {r['best_gflops']:8.1f} GFLOP/s   median {r['median_gflops']:8.1f} GFLOP/s")


if __name__ == "__main__":
    main()
