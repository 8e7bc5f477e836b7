"""How fast the n-gram rung counts: fit time and characters per second on tinyshakespeare's train split.

    ZOO_DATA_DIR=/work/shared/data python benchmarks/ngram_fit.py [--order 5] [--repeats 3] [--json out.json]

Counting is vectorised (one sort-based ``np.unique`` per order over the whole token array), so the
time grows with n log n and the order, not with a Python loop over characters. The issue's target:
a 5-gram on the train split (1,003,854 characters) in under 2 seconds. Also reports how long scoring
the val split takes (forward over every position, through the evaluation protocol).
"""

import argparse
import json
import statistics
import time

import torch

from zoo import registry
from zoo.data import load_splits
from zoo.evaluate import score


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--smoothing", default="kneser-ney")
    parser.add_argument("--corpus", default="tinyshakespeare")
    parser.add_argument("--repeats", type=int, default=3, help="fits to time; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer, splits = load_splits(args.corpus)
    train = splits["train"]
    model = registry.build("ngram", vocab_size=tokenizer.vocab_size, order=args.order, smoothing=args.smoothing)

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.fit(train)
        times.append(time.perf_counter() - start)
    fit_s = statistics.median(times)

    start = time.perf_counter()
    val = score(model, splits["val"], block_size=128)
    eval_s = time.perf_counter() - start

    result = {
        "corpus": args.corpus, "order": args.order, "smoothing": args.smoothing,
        "train_chars": len(train), "fit_s": round(fit_s, 3), "fit_s_all": [round(t, 3) for t in times],
        "chars_per_s": round(len(train) / fit_s), "stored_ngrams": int(model.offsets[-1]) - 1,
        "val_bpc": round(val["bpc"], 4), "val_eval_s": round(eval_s, 2), "torch_threads": torch.get_num_threads(),
    }
    print(f"{args.order}-gram ({args.smoothing}) on {len(train):,} {args.corpus} train chars: "
          f"fit {fit_s:.3f} s (median of {args.repeats}) = {len(train) / fit_s:,.0f} chars/s; "
          f"{result['stored_ngrams']:,} distinct n-grams; val {val['bpc']:.4f} bpc scored in {eval_s:.2f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
