"""Small input faults of issue 10, item 9: a byte-order mark, a foreign pickle in place of a checkpoint."""

import pickle
import warnings

import yaml

import zoo
from zoo.cli import main
from zoo.data import TextDataModule, load_corpus


def test_a_byte_order_mark_is_not_a_token(tmp_path):
    text = "the cat sat on the mat.\n" * 40
    plain, marked = tmp_path / "plain.txt", tmp_path / "marked.txt"
    plain.write_text(text, encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # what some editors save
    assert load_corpus(str(marked)).text == text
    a, b = TextDataModule(str(plain), block_size=8), TextDataModule(str(marked), block_size=8)
    assert b.tokenizer.vocab == a.tokenizer.vocab and "\ufeff" not in b.tokenizer.vocab
    assert b.corpus.sha256 == a.corpus.sha256  # the same text, the same corpus
    # only a leading mark is one: elsewhere U+FEFF is a character like any other
    inner = tmp_path / "inner.txt"
    inner.write_text("ab\ufeffc" * 10, encoding="utf-8")
    assert "\ufeff" in load_corpus(str(inner)).text


def test_a_foreign_pickle_checkpoint_is_one_line_without_warnings(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(zoo.make_config("bigram").to_dict()))
    with open(run / "checkpoints" / "last.ckpt", "wb") as f:  # a plain pickle, not torch.save's format
        pickle.dump({"zoo": {"rung": "bigram"}, "state_dict": {}}, f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["eval", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a zoo checkpoint" in err
    assert not caught, [str(w.message) for w in caught]  # torch's "Detected pickle protocol 4" came first
