"""recall:D — the synthetic long-range recall task: deterministic, well-formed, every repeat copies exactly one
passage stated earlier and not yet repeated, the distance is D on average, and the per-character oracle is
what the process says (checked against an independent re-implementation)."""

import math
import re

import numpy as np
import pytest
from conftest import cli, one_line

from zoo.data import TextDataModule, load_corpus, split_bounds
from zoo.errors import ZooError
from zoo.recall import ALPHABET, recall_bounds, recall_task, split_queries

P, L, S = 8, 8, 0.5  # pending passages, letters per passage, share of repeats that copy the newest
N = L + 2  # characters per item
LN26 = math.log(26)
ITEM = re.compile(r"=[a-z]{8} |\?[a-z]{8} | {10}")
TRUNCATED = re.compile(r"[=?][a-z]{0,8}| {1,9}")  # a last item cut short


def items(text):
    return [text[i:i + N] for i in range(0, len(text), N)]


def test_deterministic_and_named():
    a, b = load_corpus("recall:1024"), load_corpus("recall:1024")
    assert a.text == b.text and a.sha256 == b.sha256 and a.name == "recall:1024"
    assert len(a.text) == 400_000 and set(a.text) <= set(ALPHABET) == set("abcdefghijklmnopqrstuvwxyz=? ")
    recall_task.cache_clear()
    assert recall_task(1024).text == a.text  # regenerated, not a cached accident
    assert load_corpus("recall:1025").text != a.text


def test_items_parse():
    parts = items(recall_task(512).text)
    assert all(ITEM.fullmatch(p) for p in parts[:-1])
    assert ITEM.fullmatch(parts[-1]) or TRUNCATED.fullmatch(parts[-1])
    assert all(p[0] == "=" for p in parts[:P])  # the preamble: P passages


@pytest.mark.parametrize("D", [384, 512, 2048])
def test_every_repeat_copies_one_pending_passage(D):
    task = recall_task(D)
    table = iter(task.queries.tolist())
    pending = {}  # passage item -> its letters, for passages stated and not yet repeated
    for i, p in enumerate(items(task.text)):
        if p[0] == "=" and len(p) == N:
            pending[i] = p[1:1 + L]
            assert len(pending) <= P
        elif p[0] == "?" and len(p) >= 2:  # a repeat (the last item may be cut short)
            at, source, distance, on_purpose = next(table)
            assert at == N * i + 1 and distance == at - source and source % N == 1, (i, at, source)
            assert (source - 1) // N in pending and pending[(source - 1) // N].startswith(p[1:1 + L]), (i, p)
            if len(p) == N:
                assert len(pending) == P  # repeats draw from exactly P pending passages
                del pending[(source - 1) // N]
    assert next(table, None) is None  # one row per repeat, in text order


@pytest.mark.parametrize("D", [512, 2048])
def test_far_repeats_lie_D_back_on_average_and_near_ones_inside_a_window(D):
    q = recall_task(D).queries
    far, near = q[q[:, 3] == 0, 2], q[q[:, 3] == 1, 2]
    assert abs(far.mean() / D - 1) < 0.10, far.mean()
    assert near.mean() < 128 and abs(len(near) / len(q) - S) < 0.02
    assert (q[:, 2] % N == 0).all()


def process_prob(state, item_so_far, ch, r):
    """p(ch | text so far) under the process, written out directly: state = (forced passage, pending passages
    in the order they were stated, so the last is the newest)."""
    forced, pending = state
    k = len(item_so_far)
    if k == 0:
        if forced:
            return float(ch == "=")
        return {"?": r, " ": 1 - r}.get(ch, 0.0)
    head = item_so_far[0]
    if head == " ":  # filler
        return float(ch == " ")
    if k <= L:
        if head == "=":
            return 1 / 26 if ch in "abcdefghijklmnopqrstuvwxyz" else 0.0
        prefix = item_so_far[1:]
        weights = [(1 - S) / P + (S if j == len(pending) - 1 else 0.0) for j in range(len(pending))]
        alive = [(p, w) for p, w in zip(pending, weights) if p.startswith(prefix)]
        return sum(w for p, w in alive if p[len(prefix)] == ch) / sum(w for _, w in alive)
    return float(ch == " ")


def walk(text, D):
    """Yield (position, state, item_so_far, r) for every character, keeping the state item by item."""
    r = N * P / (D * (1 - S) - N * P)
    pending, previous_repeat = [], False
    for n, item in enumerate(items(text)):
        forced = n < P or previous_repeat
        state = (forced, list(pending))
        for j, ch in enumerate(item):
            yield N * n + j, state, item[:j], r
        if len(item) < N:
            break
        if item[0] == "=":
            pending.append(item[1:9])
        elif item[0] == "?":
            pending.remove(item[1:9])
        previous_repeat = item[0] == "?"


def test_oracle_is_the_process():
    D = 512
    task = recall_task(D)
    text = task.text
    # the probabilities sum to one over the alphabet: at the start, across the preamble's end, and spread out
    check = set(range(120)) | set(range(P * N - 10, P * N + 200)) | set(range(0, len(text), 997))
    check |= {t + d for t in task.queries[:40, 0] for d in range(-12, 12)}  # around repeats and the passages after them
    expect, seen = np.empty(len(text)), set()
    for t, state, so_far, r in walk(text, D):
        expect[t] = -math.log(process_prob(state, so_far, text[t], r))
        if t in check:
            total = sum(process_prob(state, so_far, ch, r) for ch in ALPHABET)
            assert total == pytest.approx(1.0, abs=1e-12), (t, so_far)
            seen.add((state[0], so_far[:1]))
    np.testing.assert_allclose(task.oracle_nats, expect, rtol=0, atol=1e-12)
    assert task.oracle_nats.dtype == np.float64 and task.oracle_nats.shape == (len(text),)
    assert {(True, ""), (False, ""), (True, "="), (False, "?"), (False, " ")} <= seen
    # memoryless pays ln 26 at every letter of a repeat; the oracle pays less there, and nothing else differs
    at_repeats = np.zeros(len(text), bool)
    for j in range(L):
        at_repeats[np.minimum(task.queries[:, 0] + j, len(text) - 1)] = True
    assert (task.memoryless_nats[at_repeats] == LN26).all()
    assert (task.memoryless_nats[~at_repeats] == task.oracle_nats[~at_repeats]).all()
    assert (task.oracle_nats[at_repeats] < LN26).all()


def test_bounds_and_split_queries():
    D = 1024
    task = recall_task(D)
    lo_hi = split_bounds(len(task.text))
    total = 0
    for name, (lo, hi) in lo_hi.items():
        b = recall_bounds(D, name)
        assert b["oracle"] == pytest.approx(task.oracle_nats[lo + 1:hi].mean(), abs=1e-12)
        assert b["memoryless"] == pytest.approx(task.memoryless_nats[lo + 1:hi].mean(), abs=1e-12)
        q = split_queries(D, name)
        assert q.shape == (b["queries"], 4) and q.dtype == np.int64
        inside = task.queries[(task.queries[:, 0] >= lo) & (task.queries[:, 0] < hi)]
        np.testing.assert_array_equal(q, inside - np.array([lo, lo, 0, 0]))
        assert ((q[:, 0] >= 0) & (q[:, 0] < hi - lo)).all() and (q[:, 0] - q[:, 1] == q[:, 2]).all()
        assert b["answerable"] == int((q[:, 1] >= 0).sum()) <= b["queries"]
        for a, f, _, _ in q[:50]:  # relative positions point at the split's own text
            assert task.text[lo + a:lo + a + L] == task.text[lo + f:lo + f + L]
        total += b["queries"]
    assert total == len(task.queries)
    assert recall_bounds(D, "train")["answerable"] == recall_bounds(D, "train")["queries"]
    assert 0 < recall_bounds(D, "val")["answerable"] < recall_bounds(D, "val")["queries"]  # some facts lie before val
    with pytest.raises(ZooError, match="split"):
        recall_bounds(D, "dev")


@pytest.mark.parametrize("spec", ["recall:", "recall:abc", "recall:256", "recall:4096", "recall:1.5", "recall:-512"])
def test_bad_distance_is_a_clean_error(spec):
    with pytest.raises(ZooError, match="recall:D") as e:
        load_corpus(spec)
    assert "\n" not in str(e.value) and "384" in str(e.value) and "2048" in str(e.value) and "recall:512" in str(e.value)


def test_bad_distance_through_the_cli(capsys):
    code, _out, err = cli(capsys, "train", "bigram", "--data", "recall:abc")
    one_line(code, err, "recall:D", "recall:512")


def test_data_module():
    dm = TextDataModule("recall:512", block_size=32, batch_size=4)
    n = 400_000
    assert dm.split_sizes() == {"train": int(n * 0.9), "val": int(n * 0.05), "test": n - int(n * 0.9) - int(n * 0.05)}
    assert set(dm.tokenizer.vocab) <= set(ALPHABET) and dm.vocab_size <= len(ALPHABET)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 32) and y.shape == (4, 32)
