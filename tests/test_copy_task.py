"""copy:D — the synthetic recall task: deterministic, the rule holds, the information sits exactly D steps back."""

import math

import numpy as np
import pytest

from zoo.data import TextDataModule, copy_task_bounds, copy_task_text, load_corpus, split
from zoo.errors import ZooError


def codes(D):
    text = copy_task_text(D)
    return text, np.frombuffer(text.encode("ascii"), dtype=np.uint8)


def test_deterministic_and_named():
    a, b = load_corpus("copy:8"), load_corpus("copy:8")
    assert a.text == b.text and a.sha256 == b.sha256 and a.name == "copy:8"
    assert len(a.text) == 200_000 and set(a.text) == set("abcdABCD")
    assert copy_task_text(8) == a.text  # the same generator, not a cached accident
    assert load_corpus("copy:9").text != a.text


@pytest.mark.parametrize("D", [1, 3, 8, 33])
def test_every_cue_is_followed_by_the_letter_D_back(D):
    text, c = codes(D)
    cue = np.flatnonzero(c[:-1] < ord("a"))  # positions of upper-case letters
    assert cue.min() >= D - 1
    recall = cue + 1
    assert all(text[t] == text[t - D].lower() for t in recall[:2000])  # readable form of the rule
    np.testing.assert_array_equal(c[recall], c[recall - D] | 0x20)  # all of them (ASCII: | 0x20 lowers)
    assert (c[recall] >= ord("a")).all()  # a recall is never a cue
    assert abs(len(recall) / len(text) - 1 / 3) < 0.01  # p/(1+p) of positions are recalls
    free = np.ones(len(c), bool)
    free[recall] = False
    letters = np.char.lower(np.array(list(text)))[free]
    freq = np.unique(letters, return_counts=True)[1] / free.sum()
    assert np.allclose(freq, 0.25, atol=0.01)  # free letters are uniform


def test_bounds_match_the_docstring():
    b = copy_task_bounds(8, "val")
    assert b["memoryless_theory"] / math.log(2) == pytest.approx(8 / 3)
    assert b["oracle_theory"] / math.log(2) == pytest.approx(2.0)
    for split_name in ("train", "val", "test"):
        b = copy_task_bounds(8, split_name)
        assert abs(b["memoryless"] - b["memoryless_theory"]) < 0.02
        assert abs(b["oracle"] - b["oracle_theory"]) < 0.03


def table_nats(c, D, lag, n_train):
    """Cross-entropy on val of a count table P(s[t] | s[t-1], s[t-lag]) fit on train (lag=1: a bigram)."""
    ids = np.searchsorted(np.array(sorted(set(c.tolist()))), c)  # 0..7
    t = np.arange(max(lag, 1), len(c))
    keys = ids[t - 1] * 8 + ids[t - lag]
    counts = np.full((64, 8), 0.01)
    train = t < n_train
    np.add.at(counts, (keys[train], ids[t[train]]), 1)
    logp = np.log(counts / counts.sum(1, keepdims=True))
    val = (t > n_train) & (t < n_train + len(c) // 20)
    return -logp[keys[val], ids[t[val]]].mean()


def test_only_the_character_D_back_helps():
    """A table that sees s[t-1] and s[t-j] reaches the oracle for j = D and the memoryless bound for every other j:
    the bigram is the memoryless baseline, and no shorter context carries the recalled letter."""
    D = 8
    text, c = codes(D)
    n_train = len(split(np.arange(len(text)))["train"])
    b = copy_task_bounds(D, "val")
    for lag in [1, 2, 5, D - 1, D + 1]:
        assert table_nats(c, D, lag, n_train) == pytest.approx(b["memoryless"], abs=0.01), lag
    assert table_nats(c, D, D, n_train) == pytest.approx(b["oracle"], abs=0.01)


@pytest.mark.parametrize("spec", ["copy:0", "copy:-3", "copy:x", "copy:", "copy:99999"])
def test_bad_delay_is_a_clean_error(spec):
    with pytest.raises(ZooError, match="copy:D"):
        load_corpus(spec)


def test_streams_for_tbptt():
    dm = TextDataModule("copy:8", block_size=4, batch_size=8, streams=True)
    assert dm.vocab_size == 8
    x, y, reset = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (8, 4) and bool(reset)


@pytest.mark.slow
def test_the_bptt_horizon(tmp_path, one_thread):
    """Through the real harness, same budget: truncation k > D learns the recall; k = D/2, where no gradient
    ever links a recall to its source, stays near the memoryless baseline. (Train much longer and a state that
    learnt to carry things for k steps starts to carry them for D: benchmarks/copy_horizon.py measures that.)"""
    import zoo

    D = 4
    b = copy_task_bounds(D, "val")
    closed = {}
    for k in (2, 8):
        overrides = {"model": {"n_embd": 8, "n_hidden": 32},
                     "data": {"corpus": f"copy:{D}", "block_size": k, "batch_size": 256 // k},
                     "optim": {"lr": 1e-2, "warmup_steps": 20, "weight_decay": 0.0},
                     "trainer": {"max_steps": 300, "val_every": 300, "val_batches": 1, "checkpoint_every": 0, "progress_bar": False}}
        val = zoo.train(zoo.make_config("rnn", "quick", overrides=overrides), tmp_path / f"k{k}", quiet=True)["val"]["nats"]
        closed[k] = (b["memoryless"] - val) / (b["memoryless"] - b["oracle"])
    assert closed[8] > 0.8 and closed[2] < 0.3, closed
