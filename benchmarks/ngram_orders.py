"""Val bits per character of the n-gram rung by order and smoothing: where more context stops helping.

    ZOO_DATA_DIR=/work/shared/data python benchmarks/ngram_orders.py [--orders 1-10] [--json out.json]

Each cell fits on tinyshakespeare's train split and scores the val split by the evaluation protocol
(zoo.evaluate.score, windows of 128). Kneser-Ney keeps improving while the counts support the longer
context and then flattens; add-k gets worse past a small order, because every seen-but-rare context
spreads k over all V characters and there is no lower order mixed in. Sanity check: add-0.1 at order
2 is 2.473 nats/char (3.568 bpc).
"""

import argparse
import json
import math
import time

import torch

from zoo import registry
from zoo.data import load_corpus, load_splits
from zoo.evaluate import score

SMOOTHINGS = {"kneser-ney": {"smoothing": "kneser-ney"}, "add-1": {"smoothing": "add-k", "k": 1.0},
              "add-0.1": {"smoothing": "add-k", "k": 0.1}, "add-0.01": {"smoothing": "add-k", "k": 0.01}}


def parse_orders(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(v) for v in text.split(",")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", default="1-10", help="e.g. 1-10 or 2,4,6")
    parser.add_argument("--corpus", default="tinyshakespeare")
    parser.add_argument("--block_size", type=int, default=128, help="evaluation window (the book preset's)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the table here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer, splits = load_splits(args.corpus)
    rows = []
    print(f"val bpc on {args.corpus} ({len(splits['val']) - 1:,} tokens)")
    print("| order | " + " | ".join(SMOOTHINGS) + " | distinct n-grams |")
    print("|---:|" + "---:|" * (len(SMOOTHINGS) + 1))
    for order in parse_orders(args.orders):
        row = {"order": order}
        for name, overrides in SMOOTHINGS.items():
            model = registry.build("ngram", vocab_size=tokenizer.vocab_size, order=order, **overrides)
            start = time.perf_counter()
            model.fit(splits["train"])
            fit_s = time.perf_counter() - start
            result = score(model, splits["val"], args.block_size)
            row[name] = {"bpc": result["bpc"], "nats": result["nats"], "fit_s": round(fit_s, 3)}
        row["distinct_ngrams"] = int(model.offsets[-1] - model.offsets[-2])  # of the top order
        rows.append(row)
        print(f"| {order} | " + " | ".join(f"{row[name]['bpc']:.3f}" for name in SMOOTHINGS) + f" | {row['distinct_ngrams']:,} |", flush=True)
    best = min(rows, key=lambda r: r["kneser-ney"]["bpc"])
    print(f"best Kneser-Ney order: {best['order']} ({best['kneser-ney']['bpc']:.4f} bpc)")
    if args.json:
        out = {"corpus": args.corpus, "sha256": load_corpus(args.corpus).sha256, "val_tokens": len(splits["val"]) - 1,
               "block_size": args.block_size, "rows": rows, "ln2": math.log(2)}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
