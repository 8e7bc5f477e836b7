"""One causal attention layer's forward and backward on a CPU: PyTorch's SDPA in bf16 (what bf16 autocast
hands it) against SDPA in fp32 (what ``zoo.nn.sdpa`` runs under CPU autocast).

    python benchmarks/attention_precision.py [--rounds 5] [--steps 20] [--threads 1] [--json]

A benchmark, not a test. For each size (the book's gpt, B 16 × T 128, and nanoGPT's laptop size, B 12 × T 64;
4 heads of 32) it times ``F.scaled_dot_product_attention(q, k, v, is_causal=True)`` forward and backward on
random q, k, v of each dtype, the two kinds alternating round by round, and reports the median milliseconds
and the median of the per-round ratios bf16 / fp32. What it found on the development machine's AMD EPYC
(Zen 4, AVX512-BF16), one thread: bf16 ~2.5x slower at the book size, which made attention half of a bf16 gpt
training step; hence ``zoo.nn.sdpa``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.nn import functional as F

SIZES = {"book": (16, 4, 128, 32), "nanogpt-cpu": (12, 4, 64, 32)}  # B, heads, T, head_dim


def time_layer(B: int, h: int, T: int, d: int, dtype: torch.dtype, steps: int) -> float:
    """Milliseconds per forward + backward of one causal SDPA call on (B, h, T, d) inputs of ``dtype``."""
    q, k, v = (torch.randn(B, h, T, d, dtype=dtype, requires_grad=True) for _ in range(3))

    def step():
        F.scaled_dot_product_attention(q, k, v, is_causal=True).float().sum().backward()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="timed forward+backward calls per dtype per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "torch": torch.__version__, "rounds": args.rounds, "steps": args.steps, "sizes": {}}
    for name, (B, h, T, d) in SIZES.items():
        ms = {"bf16": [], "fp32": []}
        for _ in range(args.rounds):
            ms["bf16"].append(time_layer(B, h, T, d, torch.bfloat16, args.steps))
            ms["fp32"].append(time_layer(B, h, T, d, torch.float32, args.steps))
        result["sizes"][name] = {"B": B, "heads": h, "T": T, "head_dim": d, "ms": ms,
                                 "median_ms": {k: statistics.median(v) for k, v in ms.items()},
                                 "bf16_over_fp32": statistics.median(b / f for b, f in zip(ms["bf16"], ms["fp32"]))}
    if args.json:
        print(json.dumps(result))
        return
    print(f"causal SDPA forward + backward, one layer, {args.threads} thread(s), torch {torch.__version__}")
    for name, r in result["sizes"].items():
        print(f"{name:12s} B={r['B']} h={r['heads']} T={r['T']} d={r['head_dim']}: bf16 {r['median_ms']['bf16']:.2f} ms, "
              f"fp32 {r['median_ms']['fp32']:.2f} ms, bf16/fp32 {r['bf16_over_fp32']:.2f}x")


if __name__ == "__main__":
    main()
