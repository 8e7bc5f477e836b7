"""The repetition report (issue 13): distinct-n, repeated n-grams and the longest repeated substring on
texts small enough to count by hand or by brute force, the reference bpc through the protocol, and
`zoo repetition`'s bad inputs."""

import json
import random

import numpy as np
import pytest

import zoo
from zoo.data import load_splits
from zoo.evaluate import score
from zoo.repetition import distinct_n, longest_repeat, repeated_share, report, suffix_array

from test_cli import assert_one_line_error, run


def test_distinct_and_repeated_by_hand():
    assert distinct_n("abab", 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert repeated_share("abab", 2) == pytest.approx(2 / 3)  # both ab's belong to a repeated bigram
    assert distinct_n("abcd", 1) == 1.0 and repeated_share("abcd", 1) == 0.0
    assert distinct_n("aaaa", 1) == 0.25 and repeated_share("aaaa", 3) == 1.0
    assert distinct_n("ab", 3) is None and repeated_share("ab", 3) is None


def brute_longest(text):
    for length in range(len(text) - 1, 0, -1):
        seen = set()
        for i in range(len(text) - length + 1):
            if text[i:i + length] in seen:
                return length
            seen.add(text[i:i + length])
    return 0


def test_suffix_array_and_longest_repeat_against_brute_force():
    rng = random.Random(0)
    for _ in range(300):
        text = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 40)))
        sa = suffix_array(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))
        assert [text[i:] for i in sa] == sorted(text[i:] for i in range(len(text)))
        found = longest_repeat(text)
        assert found["length"] == brute_longest(text), text
        if found["length"]:
            a, b = found["first"], found["second"]
            assert a < b and text[a:a + found["length"]] == text[b:b + found["length"]] == found["text"]


def test_a_loop_shows_as_its_length_and_period():
    text = "Once upon a time," + "the state of " * 40  # falls into a loop of period 13 after 17 characters
    found = longest_repeat(text)
    assert found["distance"] == 13 and found["length"] == len(text) - 17 - 13


def test_report_and_reference_bpc(tiny_run):
    run_ = zoo.load_run(tiny_run)
    text = "the cat sat on a mat. the dog ran to it.\n"
    r = report(text, max_n=4, reference=run_)
    assert r["characters"] == len(text) and list(r["distinct"]) == [1, 2, 3, 4]
    expected = score(run_.model, run_.tokenizer.encode(text), run_.config.data.block_size)["bpc"]
    assert r["reference"]["bpc"] == pytest.approx(expected)
    with pytest.raises(zoo.ZooError, match="does not know"):
        report("the Zebra", reference=run_)


@pytest.fixture
def tiny_run(tmp_path, tiny_corpus, capsys):
    code, _, err = run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", "--trainer.max_steps", "3",
                       "--trainer.val_every", "3", "--trainer.val_batches", "1", "--trainer.progress_bar", "false")
    assert code == 0, err
    return tmp_path / "run"


def test_cli_on_a_file_stdin_and_a_corpus(tmp_path, tiny_corpus, tiny_run, capsys, monkeypatch):
    path = tmp_path / "sample.txt"
    path.write_text("the state to the state to the state", encoding="utf-8")
    code, out, err = run(capsys, "repetition", path, "--json", "--reference", tiny_run)
    assert code == 0, err
    got = json.loads(out)
    assert got["longest_repeat"]["distance"] == 13 and got["reference"]["bpc"] > 0
    code, out, _ = run(capsys, "repetition", path)
    assert code == 0 and "distinct-n" in out and "distance 13" in out
    monkeypatch.setattr("sys.stdin", open(path, encoding="utf-8"))
    assert json.loads(run(capsys, "repetition", "-", "--json")[1])["distinct"] == got["distinct"]
    code, out, _ = run(capsys, "repetition", "--corpus", tiny_corpus, "--split", "val", "--json")
    tokenizer, splits = load_splits(str(tiny_corpus))  # the val split every run is scored on
    assert code == 0 and json.loads(out)["characters"] == len(splits["val"])


def test_cli_bad_inputs(tmp_path, tiny_corpus, tiny_run, capsys):
    empty, binary = tmp_path / "empty.txt", tmp_path / "binary.bin"
    empty.write_text("")
    binary.write_bytes(b"\xff\xfe\x00abc")
    (tmp_path / "zebra.txt").write_text("the Zebra", encoding="utf-8")
    for argv, fragments in [
        ([], ["give one text"]),
        ([str(empty), "--corpus", str(tiny_corpus)], ["give one text"]),
        ([str(tmp_path / "missing.txt")], ["no such file"]),
        ([str(binary)], ["not UTF-8"]),
        ([str(empty)], ["empty"]),
        ([str(tmp_path / "zebra.txt"), "--split", "val"], ["--split chooses a part of --corpus"]),
        (["--corpus", str(tiny_corpus), "--split", "dev"], ["--split must be one of"]),
        ([str(tmp_path / "zebra.txt"), "--max-n", "0"], ["--max-n"]),
        ([str(tmp_path / "zebra.txt"), "--reference", str(tiny_run)], ["does not know", "'Z'"]),
        ([str(tmp_path / "zebra.txt"), "--reference", str(tmp_path / "nope")], []),
    ]:
        assert_one_line_error(*run(capsys, "repetition", *argv)[::2], *fragments)


def test_sample_report_is_decode_then_report(tiny_run):
    from zoo.generate import Decoding, decode
    from zoo.repetition import sample_report

    run_ = zoo.load_run(tiny_run)
    got = sample_report(tiny_run, Decoding("greedy"), "the ", 120, seed=0, reference_dir=tiny_run, excerpt=50)
    decoded = decode(run_.model, run_.tokenizer, "the ", 120, Decoding("greedy"), 0, run_.config.data.block_size)
    assert got["excerpt"] == decoded.text[:50] and got["own_bpc"] == pytest.approx(decoded.bpc)
    expected = report(decoded.text, reference=run_)
    assert got["distinct"] == expected["distinct"] and got["reference"]["bpc"] == pytest.approx(expected["reference"]["bpc"])
    lr = expected["longest_repeat"]
    assert got["longest_repeat"]["length"] == lr["length"] and got["longest_repeat"]["unit"] == lr["text"][:lr["distance"]]
    assert got["decoding"] == "greedy"
