"""How runs are summarised for tables: statistics over seeds, "mean ± spread", leaderboard rows.

One place for what the book's tables and ``zoo ladder``'s leaderboard both show, so the two cannot
drift apart. Plain Python: the site build imports it without torch.
"""

from __future__ import annotations

import math

PM = "\u00a0±\u00a0"  # mean ± spread, with no-break spaces so a table cell never wraps inside it


def stats(values: list[float]) -> dict:
    """mean, sample standard deviation (n-1; 0 for one value), min, max and n."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(xs), "max": max(xs), "n": n}


def is_stats(value) -> bool:
    return isinstance(value, dict) and {"mean", "std", "n"} <= set(value)


def spread(s: dict | None, spec: str = ".3f") -> str:
    """"mean ± std" of a stats dict; a single seed has no spread to show, so just its value."""
    if not s or s.get("mean") is None:
        return "–"
    if s.get("n", 0) < 2:
        return format(s["mean"], spec)
    return f"{format(s['mean'], spec)}{PM}{format(s['std'], spec)}"


def summarise(per_seed: list[dict]) -> dict:
    """One run over several seeds (each a metrics.json dict) -> the numbers a table shows. Seeds whose
    training diverged (no scores; ``"diverged"`` says why) are counted, not averaged; if every seed
    diverged, the scores are None."""
    elapsed = [m["elapsed_s"] for m in per_seed if "elapsed_s" in m]  # the book's train + score + sample time
    diverged = sum(1 for m in per_seed if "diverged" in m)
    per_seed = [m for m in per_seed if "diverged" not in m]
    if not per_seed:
        return {"val": None, "test": None, "params": None, "stored": None, "steps": None, "tokens_seen": None,
                "tokens_per_step": None, "wall_s": None, "tokens_per_s": None,
                "elapsed_s": stats(elapsed) if elapsed else None, "diverged": diverged}
    first = per_seed[0]
    cfg = first["config"]
    tps = [m["tokens_per_s"] for m in per_seed if m.get("tokens_per_s") is not None]
    return {
        "diverged": diverged,
        "val": {k: stats([m["val"][k] for m in per_seed]) for k in ("bpc", "nats")},
        "test": {k: stats([m["test"][k] for m in per_seed]) for k in ("bpc", "nats")},
        "params": first["params"],
        "stored": first.get("stored"),  # numbers kept (parameters, or a counting rung's tables); absent in older results
        "steps": first["steps"],
        "tokens_seen": first["tokens_seen"],
        "tokens_per_step": cfg["data"]["batch_size"] * cfg["data"]["block_size"],
        "wall_s": stats([m["wall_s"] for m in per_seed]),
        "tokens_per_s": stats(tps) if tps else None,
        "elapsed_s": stats(elapsed) if elapsed else None,
    }


def leaderboard_row(name: str, rung: str, summary: dict, chapter: str | None = None) -> dict:
    """One leaderboard row: a run's name and rung, its size and speed, val and test bpc over seeds."""
    return {"chapter": chapter, "name": name, "rung": rung, "params": summary["params"], "stored": summary.get("stored"),
            "steps": summary["steps"],
            "wall_s": summary["wall_s"]["mean"], "tokens_per_s": (summary["tokens_per_s"] or {}).get("mean"),
            "val_bpc": summary["val"]["bpc"], "test_bpc": summary["test"]["bpc"], "seeds": summary["val"]["bpc"]["n"]}


def size_cell(row: dict) -> str:
    """A table's size column: the parameters of a trained rung; for a counting rung (no parameters) what
    its tables hold, "413,620 n-grams × 6" (numbers kept per n-gram), so the column compares storage honestly."""
    stored = row.get("stored") or {}
    if row["params"] or not stored.get("numbers"):
        return f"{row['params']:,}"
    if stored.get("ngrams"):
        return f"{stored['ngrams']:,} n-grams × {stored['numbers_per_ngram']}"
    return f"{stored['numbers']:,} numbers"


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "59 s", "3 min 05 s", "3 h 07 min"."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
