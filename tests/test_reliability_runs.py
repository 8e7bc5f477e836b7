"""Issue 10, items 1-3: no run is lost or corrupted by a bad --resume, a race, or a run that fails early."""

import json
import os
import subprocess
import sys

import pytest
import yaml

import zoo
from zoo.cli import main
from zoo.runs import CHECKPOINT, LOCK, RunLock, read_checkpoint
from conftest import cli, one_line

TINY = ["--data.block_size", "16", "--data.batch_size", "8", "--trainer.val_every", "10", "--trainer.val_batches", "2",
        "--trainer.progress_bar", "false", "--trainer.threads", "1"]
GPT = ["--model.n_layer", "1", "--model.n_embd", "16", "--model.n_head", "2"]


def files(run_dir):
    """Every file of a run, by content: what must not change when a command is refused."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished bigram run and a finished (one-layer) gpt run; tests that use them must leave them unchanged."""
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]
    root = tmp_path_factory.mktemp("finished")
    corpus = root / "tiny.txt"
    corpus.write_text("\n".join(" ".join(words[(i * 7 + k) % 11] for k in range(3 + i % 4)) for i in range(500)) + "\n")
    runs = {}
    for rung, extra in (("bigram", []), ("gpt", GPT)):
        assert main(["train", rung, "--data", str(corpus), "--out", str(root / rung), "--trainer.max_steps", "20", *TINY, *extra]) == 0
        runs[rung] = root / rung
    return runs


# ----------------------------------------------------------------------------- 1. resume never rewrites a run
@pytest.mark.parametrize("rung,flag,value,named", [
    ("gpt", "--model.n_embd", "32", "model.n_embd"),
    ("gpt", "--data", "copy:8", "data.corpus"),
    ("bigram", "--data.block_size", "8", "data.block_size"),
    ("bigram", "--optim.lr", "0.5", "optim.lr"),
    ("bigram", "--seed", "7", "seed"),
])
def test_resume_with_other_settings_is_refused_before_anything_is_written(finished, capsys, rung, flag, value, named):
    run_dir = finished[rung]
    before = files(run_dir)
    one_line(*cli(capsys, "train", rung, "--resume", run_dir, flag, value)[::2], "cannot resume", named, "--out")
    assert files(run_dir) == before
    code, out, err = cli(capsys, "eval", run_dir, "--json")  # the run is still whole
    assert code == 0, err
    assert json.loads(out)["bpc"] == json.loads((run_dir / "metrics.json").read_text())["val"]["bpc"]


def test_resume_of_a_finished_run_rewrites_nothing(finished, capsys):
    run_dir = finished["bigram"]
    before = files(run_dir)
    code, out, err = cli(capsys, "train", "bigram", "--resume", run_dir)
    assert code == 0, err
    assert "already finished" in out and "--trainer.max_steps" in out
    assert files(run_dir) == before


def test_resume_through_the_python_api_is_checked_too(finished):
    run_dir = finished["bigram"]
    before = files(run_dir)
    config = zoo.runs.read_config(run_dir)
    config.optim.weight_decay = 0.5
    with pytest.raises(zoo.ZooError, match="optim.weight_decay"):
        zoo.train(config, run_dir, resume=True, quiet=True)
    config.optim.weight_decay = zoo.runs.read_config(run_dir).optim.weight_decay
    assert zoo.train(config, run_dir, resume=True, quiet=True) == json.loads((run_dir / "metrics.json").read_text())
    assert files(run_dir) == before


def test_resume_accepts_more_steps_and_records_them(finished, tmp_path, capsys, one_thread):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished["bigram"], run_dir)
    one_line(*cli(capsys, "train", "bigram", "--resume", run_dir, "--trainer.max_steps", "10")[::2], "already at step 20")
    code, out, err = cli(capsys, "train", "bigram", "--resume", run_dir, "--trainer.max_steps", "30", "--trainer.val_every", "5")
    assert code == 0, err
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["max_steps"] == 30 and saved["trainer"]["val_every"] == 5
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 30
    assert read_checkpoint(run_dir / CHECKPOINT)["zoo"]["config"]["trainer"]["max_steps"] == 30


# ------------------------------------------------------------------------ 2. one directory, one training process
def test_two_trainings_into_one_directory_do_not_both_succeed(tmp_path, tiny_corpus, capsys, monkeypatch):
    """Another `zoo train --out RUN` passes the same "does RUN exist?" check and creates RUN while this one
    loads its data: this one must then refuse, and leave the other's directory alone."""
    run_dir, real_prepare = tmp_path / "run", zoo.runs.prepare

    def the_other_process_wins(*args, **kwargs):
        result = real_prepare(*args, **kwargs)
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text("theirs")
        return result

    monkeypatch.setattr(zoo.runs, "prepare", the_other_process_wins)
    one_line(*cli(capsys, "train", "bigram", "--data", tiny_corpus, "--out", run_dir, "--trainer.max_steps", "20", *TINY)[::2],
             "already exists")
    assert files(run_dir) == {"config.yaml": b"theirs"}


def test_a_run_being_trained_refuses_resume_but_serves_eval_and_sample(finished, capsys):
    run_dir = finished["bigram"]
    before = files(run_dir)
    lock = RunLock(run_dir).acquire()  # as a training process would hold it (another open file: flock conflicts)
    try:
        one_line(*cli(capsys, "train", "bigram", "--resume", run_dir, "--trainer.max_steps", "40")[::2],
                 "being trained by process", str(os.getpid()))
        assert cli(capsys, "eval", run_dir)[0] == 0
        assert cli(capsys, "sample", run_dir, "--tokens", "5")[0] == 0
    finally:
        lock.release()
    assert files(run_dir) == before


def test_a_stale_lock_is_taken_over(finished, tmp_path, capsys, one_thread):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished["bigram"], run_dir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / LOCK).write_text(f"{dead.pid}\n")  # left by a run that was killed -9
    code, _, err = cli(capsys, "train", "bigram", "--resume", run_dir, "--trainer.max_steps", "25")
    assert code == 0, err
    assert not (run_dir / LOCK).exists()


def test_ddp_ranks_launched_by_rank_zero_take_no_lock(finished, tmp_path, monkeypatch, one_thread):
    """Lightning's ddp re-runs the command once per extra rank, into the directory rank 0 created and locked."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished["bigram"], run_dir)
    config = zoo.runs.read_config(run_dir)
    config.trainer.max_steps = 25
    lock = RunLock(run_dir).acquire()
    try:
        monkeypatch.setenv("LOCAL_RANK", "1")
        zoo.train(config, run_dir, resume=True, quiet=True)
    finally:
        lock.release()


# ----------------------------------------------------------------- 3. a run that fails early leaves no debris
def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_directory(tmp_path, tiny_corpus, capsys, one_thread):
    run_dir = tmp_path / "run"
    one_line(*cli(capsys, "train", "bigram", "--data", tiny_corpus, "--out", run_dir, "--trainer.max_steps", "20",
                  "--optim.lr", "1e38", *TINY)[::2], "loss became", "--optim.lr", "removed")
    assert not run_dir.exists()
    code, _, err = cli(capsys, "train", "bigram", "--data", tiny_corpus, "--out", run_dir, "--trainer.max_steps", "20", *TINY)
    assert code == 0, err


def test_a_setting_refused_at_fit_time_is_one_line_and_leaves_no_directory(tmp_path, tiny_corpus, capsys, monkeypatch):
    """The boundary behind check_config: torch's own refusal inside fit becomes one line, and no directory stays."""
    monkeypatch.setattr(zoo.runs, "check_config", lambda config: None)
    one_line(*cli(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", "--optim.betas", "[2,3]",
                  *TINY)[::2], "refused by torch", "beta")
    assert not (tmp_path / "run").exists()


def test_a_directory_without_a_checkpoint_resumes_from_step_zero(tmp_path, tiny_corpus, capsys, one_thread):
    """What kill -9 in a run's first seconds leaves: config.yaml and no checkpoint."""
    args = ["--data", tiny_corpus, "--trainer.max_steps", "20", "--seed", "5", *TINY]
    assert cli(capsys, "train", "bigram", *args, "--out", tmp_path / "whole")[0] == 0
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "config.yaml").write_text((tmp_path / "whole" / "config.yaml").read_text())
    one_line(*cli(capsys, "train", "bigram", *args, "--out", tmp_path / "killed")[::2], "no checkpoint", "--resume")
    one_line(*cli(capsys, "eval", tmp_path / "killed")[::2], "no checkpoint yet")
    code, _, err = cli(capsys, "train", "bigram", "--resume", tmp_path / "killed")
    assert code == 0, err
    whole, killed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "killed"))
    assert killed["val"] == whole["val"] and killed["steps"] == 20


@pytest.mark.parametrize("flag,value,fragment", [
    ("--optim.betas", "[2,3]", "betas"),
    ("--optim.betas", "[0.9]", "betas"),
    ("--optim.label_smoothing", "2", "label_smoothing"),
    ("--optim.weight_decay", "-1", "weight_decay"),
    ("--optim.eps", "0", "eps"),
    ("--optim.grad_clip", "-1", "grad_clip"),
    ("--optim.warmup_steps", "-1", "warmup_steps"),
    ("--optim.min_lr_ratio", "2", "min_lr_ratio"),
    ("--optim.optimizer", "sgd", "optimizer"),
    ("--trainer.precision", "foo", "precision"),
    ("--trainer.strategy", "foo", "strategy"),
    pytest.param("--trainer.accelerator", "gpu", "gpu", marks=pytest.mark.skipif(
        __import__("torch").cuda.is_available(), reason="this machine has a GPU")),
])
def test_every_setting_is_checked_before_the_directory_is_created(tmp_path, tiny_corpus, capsys, flag, value, fragment):
    one_line(*cli(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", flag, value, *TINY)[::2], fragment)
    assert not (tmp_path / "run").exists()
