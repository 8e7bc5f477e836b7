"""How repetitive a text is: distinct-n, the share of repeated n-grams, the longest repeated substring, and
(as a quality proxy) its bits per character under a reference model. ``zoo repetition`` prints it.

For a text c_1..c_L and its n-grams g_i = c_i..c_{i+n-1} (i = 1..L-n+1):

* **distinct-n** (Li et al. 2016): |{g_i}| / (L-n+1), the share of n-gram occurrences that are new types.
  1 means no n-gram occurs twice. It falls with length for any text, so compare texts of equal length.
* **repeated share**: the share of occurrences g_i whose n-gram occurs at least twice in the text.
* **longest repeated substring**: the longest string that starts at two different positions (they may
  overlap), with both positions. A text that has fallen into a loop of period P from position s on has
  one of length ≥ L - s - P at distance P: the length says how much of the text is loop, the distance
  its period. Found exactly from the suffix array (prefix doubling) and its LCP array (Kasai et al. 2001).
* **bpc under a reference model**: how likely a stronger model finds the text, through the evaluation
  protocol (``zoo.evaluate.score``). Less repetitive is not better if it is also less likely.
"""

from __future__ import annotations

import numpy as np

from zoo.errors import ZooError

MAX_N = 8


def ngrams(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(len(text) - n + 1)]


def distinct_n(text: str, n: int) -> float | None:
    """|distinct n-grams| / |n-grams|; None for a text shorter than n."""
    grams = ngrams(text, n)
    return len(set(grams)) / len(grams) if grams else None


def repeated_share(text: str, n: int) -> float | None:
    """The share of n-gram occurrences whose n-gram occurs more than once in the text; None if shorter than n."""
    grams = ngrams(text, n)
    if not grams:
        return None
    counts: dict[str, int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    return sum(c for c in counts.values() if c > 1) / len(grams)


def suffix_array(codes: np.ndarray) -> np.ndarray:
    """The start positions (n,) of the suffixes of ``codes`` in lexicographic order (a shorter suffix first
    where one is a prefix of the other), by prefix doubling: sort by the first 2^k symbols, k = 0, 1, ..."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.unique(codes, return_inverse=True)[1].astype(np.int64)  # (n,): rank by the first symbol
    order = np.argsort(rank, kind="stable")
    k = 1
    while True:
        second = np.zeros(n, dtype=np.int64)  # rank of the next 2^k symbols, 0 past the end (shortest first)
        if k < n:
            second[:n - k] = rank[k:] + 1
        order = np.lexsort((second, rank))  # by (first k, next k)
        r, s = rank[order], second[order]
        new = np.empty(n, dtype=np.int64)
        new[order] = np.concatenate([[0], np.cumsum((r[1:] != r[:-1]) | (s[1:] != s[:-1]))])
        rank = new
        if rank.max() == n - 1:  # every suffix has its own rank: sorted (at the latest once 2^k >= n)
            return order
        k *= 2


def longest_repeat(text: str) -> dict:
    """The longest substring that starts at two positions: {"length", "first", "second", "distance", "text"}
    (length 0 and positions None when no character repeats)."""
    n = len(text)
    if n < 2:
        return {"length": 0, "first": None, "second": None, "distance": None, "text": ""}
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    sa = suffix_array(codes)
    where = np.empty(n, dtype=np.int64)
    where[sa] = np.arange(n)
    best, at = 0, (None, None)
    h = 0
    s = text
    for i in range(n):  # Kasai: the LCP with the previous suffix in order drops by at most 1 from i to i + 1
        r = where[i]
        if r == 0:
            h = 0
            continue
        j = int(sa[r - 1])
        while i + h < n and j + h < n and s[i + h] == s[j + h]:
            h += 1
        if h > best:
            best, at = h, (min(i, j), max(i, j))
        if h:
            h -= 1
    if best == 0:
        return {"length": 0, "first": None, "second": None, "distance": None, "text": ""}
    return {"length": best, "first": at[0], "second": at[1], "distance": at[1] - at[0], "text": text[at[0]:at[0] + best]}


def reference_bpc(run, text: str) -> float:
    """Bits per character of ``text`` under a trained run, through the evaluation protocol."""
    from zoo.evaluate import score

    if len(text) < 2:
        raise ZooError("the text needs at least two characters to be scored")
    outside = sorted(set(text) - set(run.tokenizer.stoi))
    if outside:
        shown = ", ".join(repr(c) for c in outside[:5]) + (", ..." if len(outside) > 5 else "")
        raise ZooError(f"the text has characters the reference run {run.dir} does not know ({shown}); it cannot be scored")
    return score(run.model, run.tokenizer.encode(text), run.config.data.block_size)["bpc"]


def report(text: str, max_n: int = MAX_N, reference=None) -> dict:
    """The whole report for one text; ``reference`` is a loaded run (zoo.load_run) or None."""
    if not text:
        raise ZooError("the text is empty")
    if max_n < 1:
        raise ZooError(f"--max-n must be >= 1 (got {max_n})")
    out = {"characters": len(text),
           "distinct": {n: distinct_n(text, n) for n in range(1, max_n + 1)},
           "repeated": {n: repeated_share(text, n) for n in range(1, max_n + 1)},
           "longest_repeat": longest_repeat(text)}
    if reference is not None:
        out["reference"] = {"run": str(reference.dir), "rung": reference.config.rung, "bpc": reference_bpc(reference, text)}
    return out


def format_report(r: dict, name: str = "text") -> str:
    """The report as a few readable lines."""
    lines = [f"{name}: {r['characters']:,} characters"]
    ns = list(r["distinct"])
    cell = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    lines.append("n            " + " ".join(f"{n:>6}" for n in ns))
    lines.append("distinct-n   " + " ".join(cell(r["distinct"][n]) for n in ns))
    lines.append("repeated     " + " ".join(cell(r["repeated"][n]) for n in ns))
    lr = r["longest_repeat"]
    if lr["length"]:
        shown = lr["text"] if len(lr["text"]) <= 60 else lr["text"][:57] + "..."
        lines.append(f"longest repeat: {lr['length']:,} characters at {lr['first']:,} and {lr['second']:,} "
                     f"(distance {lr['distance']:,}): {shown!r}")
    else:
        lines.append("longest repeat: none (no character occurs twice)")
    if "reference" in r:
        lines.append(f"under {r['reference']['rung']} ({r['reference']['run']}): {r['reference']['bpc']:.3f} bpc")
    return "\n".join(lines)


_LOADED: dict = {}


def _load(run_dir):
    """A run loaded once per process (a decoding sweep asks for the same few runs many times)."""
    from zoo.runs import load_run

    key = str(run_dir)
    if key not in _LOADED:
        _LOADED[key] = load_run(run_dir)
    return _LOADED[key]


def sample_report(run_dir, decoding, prompt: str, tokens: int, seed: int = 0, reference_dir=None,
                  max_n: int = MAX_N, excerpt: int = 600) -> dict:
    """Decode ``tokens`` characters from a run and report on them: the repetition report of the continuation
    (with its bpc under ``reference_dir`` if given), its bpc under the run itself, the first ``excerpt``
    characters and one period of its longest repeat (the loop, when it has fallen into one)."""
    from zoo.generate import decode

    run = _load(run_dir)
    decoded = decode(run.model, run.tokenizer, prompt, tokens, decoding, seed, block_size=run.config.data.block_size)
    out = report(decoded.text, max_n, _load(reference_dir) if reference_dir is not None else None)
    lr = out["longest_repeat"]
    out["longest_repeat"] = {**{k: v for k, v in lr.items() if k != "text"},
                             "unit": lr["text"][:lr["distance"]] if lr["length"] else ""}  # one period of the loop
    return {**out, "own_bpc": decoded.bpc, "excerpt": decoded.text[:excerpt], "decoding": decoding.describe()}
