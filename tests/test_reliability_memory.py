"""Issue 10, item 6: a model too large for the machine is refused before it is built, with one line that
gives its size and what sets it; the limit follows the available memory and ZOO_MAX_MEMORY_GB."""

import random
import time

import pytest
import torch

import zoo
from zoo import memory
from zoo.cli import main
from zoo.memory import check_memory, estimate
from zoo.models.ngram import NGram
from zoo.registry import build


@pytest.fixture
def wide_text(tmp_path):
    """120 KB of text with 40,000 distinct characters: a bigram's V×V table alone is 6.4 GB."""
    points = [c for c in range(0x4E00, 0x4E00 + 45000) if not 0xD800 <= c < 0xE000][:40000]
    random.Random(0).shuffle(points)
    path = tmp_path / "wide.txt"
    path.write_text("".join(map(chr, points)), encoding="utf-8")
    return path


def one_line_error(capsys, *argv):
    start = time.perf_counter()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert time.perf_counter() - start < 30  # refused before anything big is allocated
    return lines[0]


def test_bigram_of_a_huge_vocabulary_is_refused(tmp_path, wide_text, capsys, monkeypatch):
    monkeypatch.setenv("ZOO_MAX_MEMORY_GB", "8")
    line = one_line_error(capsys, "train", "bigram", "--data", wide_text, "--out", tmp_path / "run")
    assert "bigram would need about 29.5 GB" in line and "limit of 8.0 GB" in line
    assert "table.weight, is 40000 × 40000" in line and "vocabulary" in line and "ZOO_MAX_MEMORY_GB" in line
    assert not (tmp_path / "run").exists()


def test_ngram_of_a_high_order_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ZOO_MAX_MEMORY_GB", "2")
    line = one_line_error(capsys, "train", "ngram", "--model.order", "100", "--out", tmp_path / "run")
    assert "ngram would need about" in line and "--model.order 100" in line
    assert not (tmp_path / "run").exists()


def test_the_default_limit_is_a_share_of_the_available_memory(monkeypatch):
    monkeypatch.delenv("ZOO_MAX_MEMORY_GB", raising=False)
    monkeypatch.setattr(memory, "available_bytes", lambda: 10e9)
    config = zoo.make_config("bigram")
    check_memory(config, vocab_size=1000, train_tokens=10_000)  # 16 MB: fine
    with pytest.raises(zoo.ZooError, match=r"limit of 8\.0 GB \(80% of the 10\.0 GB available\)"):
        check_memory(config, vocab_size=40_000, train_tokens=10_000)
    monkeypatch.setenv("ZOO_MAX_MEMORY_GB", "inf")  # the way to turn it off
    check_memory(config, vocab_size=40_000, train_tokens=10_000)
    monkeypatch.setenv("ZOO_MAX_MEMORY_GB", "lots")
    with pytest.raises(zoo.ZooError, match="ZOO_MAX_MEMORY_GB must be a positive number"):
        check_memory(config, vocab_size=1000, train_tokens=10_000)


def test_available_memory_is_read_from_the_machine():
    available = memory.available_bytes()
    assert available is not None and available > 1e6


def test_a_trainable_rung_counts_weights_gradients_and_adam_moments():
    V, T = 1000, 8
    need, what = estimate("bigram", {}, vocab_size=V, block_size=T, batch_size=4, train_tokens=10_000)
    assert need == 4 * (V * V * 4) + 64 * T * V * 24  # the table four times, one scoring batch of logits
    assert what.startswith("its largest tensor, table.weight")
    model = build("bigram", vocab_size=V)
    assert need >= 4 * sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize("order", [1, 3, 6, 12])
def test_the_ngram_estimate_bounds_its_tables(order):
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))[:3000]
    vocab = sorted(set(text))
    x = torch.tensor([vocab.index(ch) for ch in text])
    model = build("ngram", vocab_size=len(vocab), order=order).fit(x)
    need, what = NGram.estimate_memory(model.config, len(x))
    grams = len(model.keys) - 1  # every distinct j-gram, j = 1..N, has a row (plus the empty gram)
    saved = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert need >= 128 * grams > saved
    assert what == f"--model.order {order} over 3,000 training characters"


def test_a_refused_resume_changes_nothing(tmp_path, tiny_corpus, one_thread, monkeypatch):
    config = zoo.make_config("bigram", overrides={
        "data": {"corpus": str(tiny_corpus), "block_size": 8, "batch_size": 4},
        "trainer": {"max_steps": 2, "val_every": 2, "val_batches": 1, "progress_bar": False}})
    run = tmp_path / "run"
    zoo.train(config, run, quiet=True)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    monkeypatch.setenv("ZOO_MAX_MEMORY_GB", "0.000001")
    longer = zoo.make_config("bigram", overrides={  # more steps: a resume that would train (a finished run is left alone)
        "data": {"corpus": str(tiny_corpus), "block_size": 8, "batch_size": 4},
        "trainer": {"max_steps": 4, "val_every": 2, "val_batches": 1, "progress_bar": False}})
    with pytest.raises(zoo.ZooError, match="would need about"):
        zoo.train(longer, run, resume=True, quiet=True)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
