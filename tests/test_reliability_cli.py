"""Issue 10, items 4-5: an exit status a scheduler can trust, and one line instead of a traceback."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from zoo.runs import CHECKPOINT, LOCK, read_checkpoint
from conftest import cli, one_line

TINY = ["--data.block_size", "16", "--data.batch_size", "8", "--trainer.val_every", "10", "--trainer.val_batches", "2",
        "--trainer.progress_bar", "false", "--trainer.threads", "1"]


@pytest.fixture
def trained(tmp_path, tiny_corpus, capsys):
    code, _, err = cli(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", "--trainer.max_steps", "20", *TINY)
    assert code == 0, err
    return tmp_path / "run"


# ---------------------------------------------------------------------- 4. SIGINT and SIGTERM: save, say, 130/143
def test_ctrl_c_and_sigterm_save_the_run_say_so_and_exit_130_and_143(tmp_path, tiny_corpus, capsys, one_thread):
    args = ["bigram", "--data", str(tiny_corpus), "--seed", "3", "--data.block_size", "16", "--data.batch_size", "8",
            "--trainer.max_steps", "600", "--trainer.checkpoint_every", "5", "--trainer.val_every", "1000",
            "--trainer.progress_bar", "false", "--trainer.threads", "1"]
    victims = {signum: subprocess.Popen([sys.executable, "-m", "zoo", "train", *args, "--out", str(tmp_path / signum.name)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for signum in (signal.SIGINT, signal.SIGTERM)}
    pending, deadline = dict(victims), time.time() + 120
    while pending and time.time() < deadline:
        for signum in [s for s in pending if (tmp_path / s.name / CHECKPOINT).exists()]:
            pending.pop(signum).send_signal(signum)  # mid-run: right after its first checkpoint
        time.sleep(0.01)
    assert cli(capsys, "train", *args, "--out", tmp_path / "whole")[0] == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    for signum, victim in victims.items():
        run_dir = tmp_path / signum.name
        code, err = victim.wait(timeout=120), victim.stderr.read()
        step = read_checkpoint(run_dir / CHECKPOINT)["global_step"]
        assert 0 < step < 600, "the run should have been stopped part way"
        one_line(code, err, f"interrupted at step {step}", f"--resume {run_dir}", status=128 + signum)
        assert not (run_dir / "metrics.json").exists() and not (run_dir / LOCK).exists()
        code, _, err = cli(capsys, "train", "bigram", "--resume", run_dir)
        assert code == 0, err
        assert json.loads((run_dir / "metrics.json").read_text())["val"] == whole["val"]


# -------------------------------------------------------------------------------- 5. one line, not a traceback
def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, tiny_corpus, capsys, monkeypatch, one_thread):
    from lightning.fabric.plugins.io import torch_io

    run_dir, real_save, saved = tmp_path / "run", torch_io._atomic_save, []

    def fills_the_disk(checkpoint, path):
        if saved:  # the second save runs out of space half way
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(checkpoint, path)
        saved.append(open(path, "rb").read())

    monkeypatch.setattr(torch_io, "_atomic_save", fills_the_disk)
    one_line(*cli(capsys, "train", "bigram", "--data", tiny_corpus, "--out", run_dir, "--trainer.max_steps", "40",
                  "--trainer.checkpoint_every", "10", *TINY)[::2], "No space left on device", "previous checkpoint is kept", "--resume")
    assert (run_dir / CHECKPOINT).read_bytes() == saved[0]
    assert read_checkpoint(run_dir / CHECKPOINT)["global_step"] == 10
    assert not (run_dir / CHECKPOINT.with_suffix(".tmp")).exists()
    assert not (run_dir / LOCK).exists()


def test_disk_full_while_writing_metrics(trained, tiny_corpus, capsys, monkeypatch, one_thread):
    from zoo import runs

    real_write = runs._write_atomic

    def fills_the_disk(path, text):
        if path.name == "metrics.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) + ".tmp")
        real_write(path, text)

    monkeypatch.setattr(runs, "_write_atomic", fills_the_disk)
    one_line(*cli(capsys, "train", "bigram", "--resume", trained, "--trainer.max_steps", "30")[::2],
             "No space left on device", "metrics.json", f"--resume {trained}")
    assert not (trained / "metrics.json.tmp").exists()
    monkeypatch.undo()  # space again: the resumed run goes straight to scoring, with the steps it recorded
    code, _, err = cli(capsys, "train", "bigram", "--resume", trained)
    assert code == 0, err
    assert json.loads((trained / "metrics.json").read_text())["steps"] == 30


@pytest.mark.parametrize("kind", ["file", "file/sub", "dangling symlink", "read-only"])
def test_an_out_that_cannot_be_a_run_directory(tmp_path, tiny_corpus, capsys, monkeypatch, kind):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "dangling symlink").symlink_to(tmp_path / "nowhere")
    fragment = {"file": "not a run directory", "file/sub": "not a directory", "dangling symlink": "does not exist",
                "read-only": "Read-only file system"}[kind]
    if kind == "read-only":
        def read_only(path, *args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        monkeypatch.setattr(os, "mkdir", read_only)
    code, _, err = cli(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / kind, *TINY)
    one_line(code, err, fragment)
    assert "--resume" not in err
    assert (tmp_path / "file").read_text() == "mine"
    assert not (tmp_path / "nowhere").exists()


def test_a_config_yaml_that_is_a_plain_string(trained, capsys):
    (trained / "config.yaml").write_text("just a string\n")
    one_line(*cli(capsys, "eval", trained)[::2], "config.yaml", "not a valid run config")
    one_line(*cli(capsys, "train", "bigram", "--resume", trained)[::2], "config.yaml", "not a valid run config")
    one_line(*cli(capsys, "train", "bigram", "--config", trained / "config.yaml")[::2])


def test_a_checkpoint_without_the_vocabulary(trained, capsys):
    checkpoint = torch.load(trained / CHECKPOINT, weights_only=True)
    del checkpoint["zoo"]["vocab"]
    torch.save(checkpoint, trained / CHECKPOINT)
    for argv in (["eval", trained], ["sample", trained], ["train", "bigram", "--resume", trained, "--trainer.max_steps", "30"]):
        one_line(*cli(capsys, *argv)[::2], "no vocabulary")
