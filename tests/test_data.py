import hashlib

import pytest
import torch

from conftest import have_tinyshakespeare
from zoo import ZooError
from zoo import data as zdata
from zoo.data import CharTokenizer, StepBatches, TextDataModule, load_corpus, split, stream_batch, window_batch


def test_pydoc_corpus_is_embedded_and_deterministic():
    a, b = load_corpus("pydoc"), load_corpus("pydoc")
    assert a.text == b.text and len(a.text) > 100_000
    assert a.sha256 == hashlib.sha256(a.text.encode()).hexdigest()


@pytest.mark.skipif(not have_tinyshakespeare(), reason="tinyshakespeare not available in $ZOO_DATA_DIR or ../shared/data")
def test_tinyshakespeare_checksum_and_splits():
    corpus = load_corpus("tinyshakespeare")
    assert corpus.sha256 == zdata.TINYSHAKESPEARE_SHA256
    tok = CharTokenizer.from_text(corpus.text)
    assert tok.vocab_size == 65
    s = split(tok.encode(corpus.text))
    assert [len(s[k]) for k in ("train", "val", "test")] == [1_003_854, 55_769, 55_771]
    # nanoGPT's train split is the first 90 %; its val split is our val + test
    assert tok.decode(s["train"][-20:]) == corpus.text[1_003_854 - 20 : 1_003_854]


def test_tinyshakespeare_rejects_a_wrong_file(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare.txt").write_text("not shakespeare")
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    with pytest.raises(ZooError, match="is not tinyshakespeare"):
        load_corpus("tinyshakespeare")


def test_tinyshakespeare_offline_message_names_three_ways(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(zdata.urllib.request, "urlopen", offline)
    with pytest.raises(ZooError) as e:
        load_corpus("tinyshakespeare")
    message = str(e.value)
    assert "--data" in message and "ZOO_DATA_DIR" in message and str(tmp_path / "cache") in message


def test_download_is_verified_and_cached(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    class FakeResponse:
        def __init__(self, data):
            self.data = data

        def read(self):
            return self.data

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(zdata.urllib.request, "urlopen", lambda *a, **k: FakeResponse(b"tampered"))
    with pytest.raises(ZooError, match="is not tinyshakespeare"):
        load_corpus("tinyshakespeare")
    assert not (tmp_path / "zoo" / "tinyshakespeare.txt").exists(), "an unverified download must not be cached"


def test_file_corpus_errors(tmp_path):
    with pytest.raises(ZooError, match="not found"):
        load_corpus(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ZooError, match="empty"):
        load_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ZooError, match="not UTF-8"):
        load_corpus(str(tmp_path / "latin1.txt"))


def test_corpus_shorter_than_a_window(tmp_path):
    (tmp_path / "short.txt").write_text("abcdefghij" * 30)
    with pytest.raises(ZooError, match="too short"):
        TextDataModule(str(tmp_path / "short.txt"), block_size=64)


def test_tokenizer_round_trip_and_unknown_characters():
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab == " dehlorw"
    assert tok.decode(tok.encode("low hello")) == "low hello"
    with pytest.raises(ZooError, match="'x'.*'z'|'z'.*'x'"):
        tok.encode("xyz")


def test_splits_are_contiguous_90_5_5():
    tokens = torch.arange(1000)
    s = split(tokens)
    assert torch.equal(torch.cat([s["train"], s["val"], s["test"]]), tokens)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (900, 50, 50)


def test_batches_are_a_pure_function_of_seed_and_step():
    tokens = torch.arange(5000)
    x1, y1 = window_batch(tokens, 8, 4, seed=1, step=7)
    x2, y2 = window_batch(tokens, 8, 4, seed=1, step=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(y1[:, :-1], x1[:, 1:])  # targets are the inputs shifted by one
    assert not torch.equal(window_batch(tokens, 8, 4, seed=1, step=8)[0], x1)
    assert not torch.equal(window_batch(tokens, 8, 4, seed=2, step=7)[0], x1)
    # an iterator started at step k yields what an iterator from 0 yields at step k (resume)
    from_zero, from_five = iter(StepBatches(tokens, 8, 4, 1, False)), iter(StepBatches(tokens, 8, 4, 1, False, start_step=5))
    batches = [next(from_zero) for _ in range(7)]
    assert all(torch.equal(a, b) for a, b in zip(batches[5], next(from_five)))


def test_ranks_shard_the_same_global_batch():
    tokens = torch.arange(5000)
    whole = StepBatches(tokens, 8, 6, 3, False).batch(4)[0]
    shards = [StepBatches(tokens, 8, 3, 3, False, rank=r, world_size=2).batch(4)[0] for r in range(2)]
    assert torch.equal(torch.stack([shards[0], shards[1]], 1).reshape(6, 8), whole)


def test_streams_are_contiguous_chunks_with_reset():
    tokens = torch.arange(1001)
    x0, y0, reset0 = stream_batch(tokens, 10, 4, step=0)
    x1, _, reset1 = stream_batch(tokens, 10, 4, step=1)
    assert bool(reset0) and not bool(reset1)
    assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # the next chunk continues each stream
    assert len(set(x0[:, 0].tolist())) == 4  # four different streams
    chunks = (1000 // 4) // 10
    assert bool(stream_batch(tokens, 10, 4, step=chunks)[2])  # wraps to the start, state reset


def test_datamodule_state_detects_another_corpus(tiny_corpus):
    dm = TextDataModule(str(tiny_corpus), block_size=16)
    other = TextDataModule("pydoc", block_size=16)
    with pytest.raises(ZooError, match="different corpus"):
        other.load_state_dict(dm.state_dict())
