"""The `zoo` command end to end on tiny settings, and every bad input: one line, exit code 2, nothing lost."""

import json
import subprocess
import sys

import pytest

from zoo.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"


TINY = ["--data.block_size", "16", "--data.batch_size", "8", "--trainer.max_steps", "30", "--trainer.val_every", "10",
        "--trainer.val_batches", "2", "--trainer.progress_bar", "false"]


@pytest.fixture
def trained(tmp_path, tiny_corpus, capsys):
    code, out, err = run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", *TINY)
    assert code == 0, err
    return tmp_path / "run", out


def test_list_shows_the_ladder_in_order(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names[0] == "bigram"
    assert "00-setup" in out.splitlines()[0]


def test_train_eval_sample(trained, capsys):
    run_dir, out = trained
    assert out.strip().splitlines()[-1].startswith("bigram: val ")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    code, out, _ = run(capsys, "eval", run_dir, "--json")
    assert code == 0
    result = json.loads(out)
    assert result == {"split": "val", **metrics["val"]}  # identical, not approximately equal
    code, out, _ = run(capsys, "eval", run_dir, "--split", "test", "--json")
    assert json.loads(out)["bpc"] == metrics["test"]["bpc"]
    code, out, _ = run(capsys, "sample", run_dir, "--prompt", "the cat", "--tokens", "40", "--top-k", "5", "--top-p", "0.9", "--temperature", "0.8")
    assert code == 0 and out.startswith("the cat") and len(out.rstrip("\n")) >= len("the cat") + 30
    again = run(capsys, "sample", run_dir, "--prompt", "the cat", "--tokens", "40", "--top-k", "5", "--top-p", "0.9", "--temperature", "0.8")[1]
    assert again == out  # same seed, same text


def test_eval_with_nanogpts_estimator_says_so(trained, capsys):
    run_dir, _ = trained
    code, out, err = run(capsys, "eval", run_dir, "--estimator", "nanogpt", "--batches", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["estimator"] == "nanogpt" and result["split"] == "val+test" and result["batches"] == 3
    code, out, _ = run(capsys, "eval", run_dir, "--estimator", "nanogpt", "--batches", "3")
    assert code == 0 and "not the book's protocol" in out
    assert_one_line_error(*run(capsys, "eval", run_dir, "--estimator", "nanogpt", "--split", "test")[::2], "drop --split")
    assert_one_line_error(*run(capsys, "eval", run_dir, "--estimator", "nanogpt", "--batches", "0")[::2], "--batches")
    assert_one_line_error(*run(capsys, "eval", run_dir, "--estimator", "karpathy")[::2], "estimator")
    assert_one_line_error(*run(capsys, "eval", run_dir, "--split", "train")[::2], "--split")


def test_config_round_trip(tmp_path, trained, capsys):
    run_dir, _ = trained
    code, out, _ = run(capsys, "train", "bigram", "--config", run_dir / "config.yaml", "--print_config")
    assert code == 0
    import yaml

    printed = yaml.safe_load(out)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    for section in ("model", "data", "optim", "trainer"):
        assert printed.get(section, {}) == saved[section]


def test_preset_and_overrides_reach_the_config(capsys):
    code, out, _ = run(capsys, "train", "bigram", "--preset", "book", "--optim.lr", "0.05", "--print_config")
    import yaml

    cfg = yaml.safe_load(out)
    assert cfg["preset"] == "book" and cfg["optim"]["lr"] == 0.05 and cfg["trainer"]["max_steps"] == 2000


def test_ladder_writes_a_leaderboard(tmp_path, capsys):
    code, out, err = run(capsys, "ladder", "--preset", "quick", "--rungs", "bigram", "--out", tmp_path / "ladder")
    assert code == 0, err
    board = json.loads((tmp_path / "ladder" / "leaderboard.json").read_text())
    assert [r["rung"] for r in board["rows"]] == ["bigram"]
    assert "| bigram |" in (tmp_path / "ladder" / "leaderboard.md").read_text()
    code, _, err = run(capsys, "ladder", "--rungs", "bigram", "--out", tmp_path / "ladder")
    assert_one_line_error(code, err, "already exists")


# ------------------------------------------------------------------------------------------- bad input
def test_unknown_rung_suggests_the_closest(capsys):
    assert_one_line_error(*run(capsys, "train", "bigrma")[::2], "unknown rung 'bigrma'", "did you mean 'bigram'")


def test_unknown_command(capsys):
    assert_one_line_error(*run(capsys, "trian")[::2], "did you mean 'train'")


def test_missing_empty_and_non_utf8_corpus(tmp_path, capsys):
    assert_one_line_error(*run(capsys, "train", "bigram", "--data", tmp_path / "nope.txt")[::2], "not found")
    (tmp_path / "empty.txt").write_text("")
    assert_one_line_error(*run(capsys, "train", "bigram", "--data", tmp_path / "empty.txt")[::2], "empty")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    assert_one_line_error(*run(capsys, "train", "bigram", "--data", tmp_path / "bin.txt")[::2], "not UTF-8")


def test_corpus_shorter_than_a_window(tmp_path, capsys):
    (tmp_path / "short.txt").write_text("to be or not to be " * 20)
    assert_one_line_error(*run(capsys, "train", "bigram", "--data", tmp_path / "short.txt", "--out", tmp_path / "r")[::2], "too short")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag,value,fragment", [
    ("--trainer.max_steps", "0", "max_steps"),
    ("--optim.lr", "-1", "lr"),
    ("--data.block_size", "0", "block_size"),
    ("--optim.schedule", "exponential", "schedule"),
    ("--model.n_embd", "4", "n_embd"),  # bigram has no such option
])
def test_impossible_hyperparameters(tmp_path, tiny_corpus, capsys, flag, value, fragment):
    assert_one_line_error(*run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "r", flag, value)[::2], fragment)


def test_unknown_characters_in_a_prompt(trained, capsys):
    assert_one_line_error(*run(capsys, "sample", trained[0], "--prompt", "the Zebra§")[::2], "not in the model's vocabulary", "'§'", "'Z'")


def test_existing_run_directory_without_resume(trained, tiny_corpus, capsys):
    run_dir, _ = trained
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert_one_line_error(*run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", run_dir, *TINY)[::2], "already exists", "--resume")
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_checkpoint_from_another_rung(trained, capsys):
    assert_one_line_error(*run(capsys, "train", "ngram", "--resume", trained[0])[::2], "holds a 'bigram' run")


def test_checkpoint_with_another_vocabulary(trained, capsys):
    assert_one_line_error(*run(capsys, "eval", trained[0], "--data", "pydoc")[::2], "not in the model's vocabulary")


def test_corrupt_checkpoint(trained, capsys):
    ckpt = trained[0] / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    assert_one_line_error(*run(capsys, "eval", trained[0])[::2], "corrupt")
    assert_one_line_error(*run(capsys, "sample", trained[0])[::2], "corrupt")


def test_not_a_run_directory(tmp_path, capsys):
    assert_one_line_error(*run(capsys, "eval", tmp_path)[::2], "not a run directory")


def test_bad_sampling_settings(trained, capsys):
    assert_one_line_error(*run(capsys, "sample", trained[0], "--temperature", "0")[::2], "temperature")
    assert_one_line_error(*run(capsys, "sample", trained[0], "--top-p", "1.5")[::2], "top-p")


def test_console_script_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "zoo", "train", "gtp"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
