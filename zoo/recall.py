"""``recall:D`` — a synthetic long-range recall corpus: random passages, each repeated once, D characters later.

Passages ``=qkzvbmwe`` (eight random letters) are stated in the text, and each is repeated once, ``?qkzvbmwe``,
on average D characters later, among blank filler. Everything is drawn by a known process, so the score a
model could reach at every character is known exactly: the *oracle* (the generating process, which
remembers every passage) and the *memoryless* baseline (the same, but guessing each repeated letter
uniformly). The difference sits in the repeats; ``split_queries`` says where they are.

This module needs only numpy, the standard library and ``zoo.splits`` (the split rule every run uses);
``zoo.data`` registers it as the corpus ``recall:D``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from zoo.errors import ZooError
from zoo.splits import split_bounds

RECALL_PENDING = 8  # P: passages stated but not yet repeated, at every point after the preamble
RECALL_NEWEST = 0.5  # s: the share of repeats that copy the passage stated last (near: what teaches copying)
RECALL_LETTERS = 8  # letters per passage
RECALL_LENGTH = 400_000  # characters per generated text
RECALL_SEED = 7  # the generator's fixed seed (combined with D): the same D always gives the same text
RECALL_MIN_D, RECALL_MAX_D = 384, 2048  # D > 20P / (1 − s) keeps the repeat rate r below 1
RECALL_ITEM = RECALL_LETTERS + 2  # characters per item: marker, letters, space

LETTERS = "abcdefghijklmnopqrstuvwxyz"
ALPHABET = LETTERS + "=? "  # every character recall:D can contain

_FILLER, _FACT, _QUERY = 0, 1, 2  # item kinds


def query_rate(D: int) -> float:
    """The probability r that a free decision is a repeat: r = 10P/(D(1 − s) − 10P) (see ``recall_task``)."""
    return RECALL_ITEM * RECALL_PENDING / (D * (1 - RECALL_NEWEST) - RECALL_ITEM * RECALL_PENDING)


def parse_recall_argument(argument: str) -> int:
    """D from the ``argument`` of ``recall:argument``: a whole number 384 <= D <= 2048, else one-line ZooError."""
    text = argument.strip()
    if text.isascii() and text.isdigit() and RECALL_MIN_D <= int(text) <= RECALL_MAX_D:
        return int(text)
    raise ZooError(f"corpus recall:D needs a whole-number mean distance {RECALL_MIN_D} <= D <= {RECALL_MAX_D}, "
                   f"got {argument!r} (e.g. recall:512)")


@dataclass(frozen=True, eq=False)
class RecallTask:
    """The text of ``recall:D`` and, per character, what the generating process pays for it (read-only arrays).

    ``oracle_nats[t]`` = −ln p(text[t] | text[:t]) under the generating process; ``memoryless_nats`` the same,
    except that each letter of a repeat costs ln 26. ``queries`` holds one row per repeat, in text order:
    (position of the repeat's first letter, position of its passage's first letter, distance = their
    difference, 1 if it copied the newest passage on purpose and 0 if it drew one from all that wait); the
    other letters follow each.
    """

    D: int
    r: float
    text: str
    oracle_nats: np.ndarray  # (len(text),) float64
    memoryless_nats: np.ndarray  # (len(text),) float64
    queries: np.ndarray  # (n_queries, 4) int64


@functools.lru_cache(maxsize=8)
def recall_task(D: int) -> RecallTask:
    """Generate ``recall:D``: passages repeated, on average, D characters after they were stated.

    **Items.** The text is a sequence of 10-character items over the alphabet ``a–z = ? ␣``:

    * a passage: ``=``, eight letters drawn uniformly, a space (``=qkzvbmwe ``);
    * a repeat: ``?``, the eight letters of a passage stated earlier and not yet repeated, a space;
    * filler: ten spaces.

    For example ``=qkzvbmwe =tyrnoplc           ?tyrnoplc =hhagxuei …``. Recalling a repeat is the
    copying that attention does by "induction" (Elhage et al. 2021; Olsson et al. 2022): once its first
    letters single out one earlier passage, find where the current letter followed the same letters there,
    and copy the letter that came next. A model that cannot see the passage can only guess.

    **State.** ``pending``: exactly P = 8 passages stated but not yet repeated; the *newest* is the one stated
    last (it is always pending). The text opens with P passages (the preamble). After that, each item is a
    passage if the previous item was a repeat (so ``pending`` is refilled to P at once); otherwise it is a
    repeat with probability r, filler with probability 1 − r. A repeat copies, with probability s = 1/2, the
    newest passage, and otherwise a passage drawn uniformly from all P that wait (the newest among them); the
    passage copied leaves ``pending``.

    **Near and far.** The newest passage is a few items back, inside any window: these repeats are what a
    model can learn copying from at all (a text whose repeats all lie beyond its window gives a windowed
    model nothing to learn it from; with s = 0 none of the book's transformers learned to copy in 2,000
    steps). The others are the long-range task. A passage stops being the newest at the next repeat (a new
    passage follows it), and from then on it is drawn with probability r(1 − s)/P at each decision.

    **The distance D** of those far repeats. Call "a decision" each step after the preamble that emits either
    one filler item (probability 1 − r) or a repeat and the passage after it (probability r): 1 + r items on
    average. A passage that is no longer the newest waits P/(r(1 − s)) decisions on average,
    P(1 + r)/(r(1 − s)) items, 10P(1 + r)/(r(1 − s)) characters; setting r = 10P/(D(1 − s) − 10P) makes
    about D (since (1 + r)/r = D(1 − s)/(10P)): a little less, because in the first decisions of its life a
    passage is still the newest and can leave by either draw (the empirical mean is a few per cent below D).
    The wait is geometric, so these distances spread from a few characters to several times D. (A uniform draw that happens to pick the newest passage, 1 time in P, is
    near too; the fourth column of ``queries`` says which draw a repeat came from, not how far it is.)

    **What each character costs** (nats, −ln p under the process, which knows the whole text before it and
    therefore ``pending`` and the item layout):

    * the first character of an item that must be a passage (in the preamble, or after a repeat): ``=``, 0;
      otherwise ``?`` costs −ln r and a filler's space −ln(1 − r);
    * a passage's letters ln 26 each;
    * a repeat's letter c after the letters x so far: −ln(w(x + c)/w(x)), with w(x) the summed weight of the
      pending passages that begin with x, each weighing (1 − s)/P and the newest s + (1 − s)/P: the first
      letters narrow the pending passages down to one, and from then on every letter costs 0;
    * every other character (the space that ends an item, a filler's other spaces) 0.

    At every position these probabilities sum to one over the alphabet. ``memoryless_nats`` charges ln 26
    for every letter of a repeat instead: what a model that cannot see the passage pays there. (At an item's
    start it still knows the layout; over the whole text it is a bound, at the repeats the uniform guess.)

    The text is 400,000 characters (40,000 items), generated from ``np.random.default_rng([7, D])``:
    deterministic, no download.
    """
    parse_recall_argument(str(D))  # the corpus name's own check: a whole number in range, or one line
    P, L, r, s_newest = RECALL_PENDING, RECALL_LETTERS, query_rate(D), RECALL_NEWEST
    n_items = -(-RECALL_LENGTH // RECALL_ITEM)
    rng = np.random.default_rng([RECALL_SEED, D])
    u_decide = (rng.random(n_items) < r).tolist()  # a free decision is a repeat
    u_pick = rng.random(n_items).tolist()  # which pending passage a uniform draw copies
    u_newest = (rng.random(n_items) < s_newest).tolist()  # a repeat copies the newest passage on purpose
    letters = rng.integers(0, 26, (n_items, L))  # a passage's letters

    kind = np.empty(n_items, np.int8)
    content = np.zeros((n_items, L), np.int64)  # the letters of each passage or repeat
    nats = np.zeros((n_items, RECALL_ITEM))  # what each character of each item costs the oracle
    pending: list[int] = []  # the items of the pending passages (swap-remove)
    queries: list[tuple[int, int]] = []  # (repeat item, passage item)
    log, ln26 = math.log, math.log(26)

    previous = _FACT
    for i in range(n_items):
        if i < P or previous == _QUERY:  # a passage, for sure: "=" costs nothing, each letter ln 26
            content[i] = letters[i]
            nats[i, 1:1 + L] = ln26
            pending.append(i)
            newest = i
            kind[i] = _FACT
        elif u_decide[i]:  # a repeat: "?" costs −ln r, its letters what narrowing the pending passages costs
            j = pending.index(newest) if u_newest[i] else int(u_pick[i] * P)
            source = pending[j]
            content[i] = content[source]
            weight = np.full(P, (1 - s_newest) / P)
            weight[pending.index(newest)] += s_newest
            candidates = content[pending]  # (P, L)
            alive = np.ones(P, bool)
            nats[i, 0] = -log(r)
            for c in range(L):
                before = weight[alive].sum()
                alive &= candidates[:, c] == content[i, c]
                nats[i, 1 + c] = log(before / weight[alive].sum())
            pending[j] = pending[-1]
            pending.pop()
            queries.append((i, source, int(u_newest[i])))
            kind[i] = _QUERY
        else:  # filler: its first space costs −ln(1 − r), the rest nothing
            nats[i, 0] = -log(1 - r)
            kind[i] = _FILLER
        previous = kind[i]

    # characters, item by item (n_items, 10), as ASCII codes
    is_filler, is_fact = kind == _FILLER, kind == _FACT
    codes = np.full((n_items, RECALL_ITEM), ord(" "), np.uint8)
    codes[:, 0] = np.where(is_filler, ord(" "), np.where(is_fact, ord("="), ord("?")))
    codes[:, 1:1 + L] = np.where(is_filler[:, None], ord(" "), ord("a") + content)
    oracle = nats.reshape(-1)[:RECALL_LENGTH]
    memoryless = nats.copy()
    memoryless[kind == _QUERY, 1:1 + L] = ln26
    memoryless = memoryless.reshape(-1)[:RECALL_LENGTH]

    rows = np.array(queries, dtype=np.int64).reshape(-1, 3)
    q = rows[:, :2] * RECALL_ITEM + 1  # first letter positions
    keep = q[:, 0] < RECALL_LENGTH  # a last item cut short before its first letter
    table = np.column_stack([q[keep], q[keep, 0] - q[keep, 1], rows[keep, 2]]).astype(np.int64)
    text = codes.reshape(-1)[:RECALL_LENGTH].tobytes().decode("ascii")
    for array in (oracle, memoryless, table):
        array.setflags(write=False)  # shared by the cache
    return RecallTask(D, r, text, oracle, memoryless, table)


def _split_range(n: int, split_name: str) -> tuple[int, int]:
    """[lo, hi) of a split of an n-character text, as every run splits it (``zoo.splits``)."""
    bounds = split_bounds(n)
    if split_name not in bounds:
        raise ZooError(f"unknown split {split_name!r} (train, val or test)")
    return bounds[split_name]


def split_queries(D: int, split_name: str = "val") -> np.ndarray:
    """The repeats of ``recall:D`` whose first letter lies in a split, positions relative to the split's start.

    Shape (n, 4), the columns of ``RecallTask.queries``: the repeat's first letter, its passage's first
    letter (negative when the passage lies before the split: a model that starts reading at the split's start
    cannot recall it), the distance, and whether it copied the newest passage on purpose.
    """
    task = recall_task(D)
    lo, hi = _split_range(len(task.text), split_name)
    q = task.queries
    inside = q[(q[:, 0] >= lo) & (q[:, 0] < hi)]
    return np.column_stack([inside[:, 0] - lo, inside[:, 1] - lo, inside[:, 2], inside[:, 3]]).astype(np.int64)


def recall_bounds(D: int, split_name: str = "val") -> dict[str, float]:
    """Exact nats/char of the oracle and of the memoryless baseline on one split of ``recall:D``.

    Averaged over the split's characters after its first (each predicted from everything before it, as in
    every evaluation), with the generating process's probabilities (see ``recall_task``). Also: ``queries``,
    how many repeats begin in the split; ``answerable``, how many of those have their passage inside the
    split too (the others need text from before the split's start).
    """
    task = recall_task(D)
    lo, hi = _split_range(len(task.text), split_name)
    q = split_queries(D, split_name)
    return {
        "oracle": float(task.oracle_nats[lo + 1:hi].mean()),
        "memoryless": float(task.memoryless_nats[lo + 1:hi].mean()),
        "queries": len(q),
        "answerable": int((q[:, 1] >= 0).sum()),
    }
