"""What training prints and logs (issue 19): plain progress lines where output is not a terminal, --quiet,
TensorBoard beside the CSV log, and zoo ladder taking zoo train's --trainer.* options."""

import json

import pytest
import yaml

import zoo
from zoo import runs

from test_cli import assert_one_line_error, run

STEPS = ["--trainer.max_steps", "40", "--trainer.val_every", "20", "--trainer.val_batches", "1"]


def test_progress_is_lines_when_not_on_a_terminal(tmp_path, tiny_corpus, capsys):
    """capsys's stdout is not a terminal: a line every tenth of the run and one per validation, no redraws."""
    code, out, err = run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", *STEPS)
    assert code == 0, err
    assert "\r" not in out + err
    lines = out.strip().splitlines()
    steps = [line for line in lines if line.startswith("bigram: step") and "train loss" in line]
    vals = [line for line in lines if "val" in line and "quick estimate" in line]
    assert [line.split()[2] for line in steps] == [f"{s}/40" for s in range(4, 41, 4)]
    assert [line.split()[2] for line in vals] == ["20/40", "40/40"]
    assert lines[-1].startswith("bigram: val") and len(lines) == len(steps) + len(vals) + 1


def test_quiet_prints_only_the_result(tmp_path, tiny_corpus, capsys):
    code, out, err = run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", "--quiet", *STEPS)
    assert code == 0, err
    assert out.strip().splitlines() == [out.strip()] and out.startswith("bigram: val")


def test_ladder_takes_trainer_options_and_quiet(tmp_path, tiny_corpus, capsys):
    out_dir = tmp_path / "ladder"
    code, out, err = run(capsys, "ladder", "--preset", "quick", "--data", tiny_corpus, "--rungs", "bigram,ngram", "--out", out_dir,
                         "--quiet", "--trainer.threads", "1", "--trainer.max_steps=30")
    assert code == 0, err
    saved = yaml.safe_load((out_dir / "bigram" / "config.yaml").read_text())
    assert saved["trainer"]["threads"] == 1 and saved["trainer"]["max_steps"] == 30
    assert saved["trainer"]["val_every"] == zoo.make_config("bigram", "quick").trainer.val_every  # the rest stays the preset's
    assert [line.split(":")[0] for line in out.splitlines()[:2]] == ["bigram", "ngram"]
    assert not [line for line in out.splitlines() if ": step " in line]  # no progress
    assert "not to rank them" in out  # the quick preset says what it cannot show


def test_ladder_bad_trainer_options_are_one_line_and_create_nothing(tmp_path, tiny_corpus, capsys):
    for argv, fragment in ((["--trainer.logger", "wandb"], "--trainer.logger must be one of csv, tensorboard"),
                           (["--trainer.threads", "-1"], "--trainer.threads"),
                           (["--trainer.bogus", "1"], "unrecognized arguments")):
        code, _, err = run(capsys, "ladder", "--data", tiny_corpus, "--rungs", "bigram", "--out", tmp_path / "ladder", *argv)
        assert_one_line_error(code, err, fragment)
        assert not (tmp_path / "ladder").exists()


def test_tensorboard_needs_its_extra(tmp_path, tiny_corpus, capsys, monkeypatch):
    monkeypatch.setattr(runs, "_tensorboard_installed", lambda: False)
    code, _, err = run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", "--trainer.logger", "tensorboard", *STEPS)
    assert_one_line_error(code, err, "pip install -e \".[tensorboard]\"")
    assert not (tmp_path / "run").exists()


def test_tensorboard_logs_beside_the_csv(tmp_path, tiny_corpus, capsys):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install -e \".[tensorboard]\")")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, _, err = run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", "--trainer.logger", "tensorboard", *STEPS)
    assert code == 0, err
    assert list((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))  # what zoo and the book read, still there
    (events,) = (tmp_path / "run" / "tensorboard").glob("version_0/events.out.tfevents.*")
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    assert {"train_loss", "val_nats"} <= set(acc.Tags()["scalars"])


def test_runs_from_before_the_logger_option_are_still_reused(tmp_path, tiny_corpus):
    """A finished run's metrics.json written before trainer.logger existed is the same run, not a different config."""
    config = zoo.make_config("bigram", "quick", overrides={"data": {"corpus": str(tiny_corpus)},
                                                           "trainer": {"max_steps": 6, "val_every": 3, "val_batches": 1, "progress_bar": False}})
    zoo.train(config, tmp_path / "run", quiet=True)
    path = tmp_path / "run" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["config"]["trainer"]["logger"]
    path.write_text(json.dumps(metrics))
    again, reused = runs.train_or_reuse(config, tmp_path / "run")
    assert reused and again["val"] == metrics["val"]
