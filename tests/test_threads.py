"""The default thread count: one torch thread per core no other process keeps busy (zoo.parallel.free_threads),
chosen by the CLI, kept by a resumed run, and never overriding a count the user gave."""

import json

import pytest
import torch
from conftest import cli

import zoo
from zoo import parallel


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def cpu_times_from(*snapshots):
    """A fake /proc/stat: successive (idle, total) readings."""
    readings = iter(snapshots)
    return lambda: next(readings)


@pytest.mark.parametrize("idle_share, busy, threads", [(1.0, 0.0, 2), (0.5, 1.0, 1), (0.75, 0.5, 2), (0.0, 2.0, 1)])
def test_free_threads_leaves_busy_cores_to_their_processes(monkeypatch, idle_share, busy, threads):
    """On 2 cores: quiet -> both; one core's worth busy -> one thread; everything busy -> still one."""
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    monkeypatch.setattr(parallel, "cpu_times", cpu_times_from((1000, 5000), (1000 + int(400 * idle_share), 5400)))
    assert parallel.busy_cores(interval=0) == pytest.approx(busy)
    monkeypatch.setattr(parallel, "cpu_times", cpu_times_from((1000, 5000), (1000 + int(400 * idle_share), 5400)))
    assert parallel.free_threads(interval=0) == threads


def test_without_cpu_times_torch_keeps_its_default(monkeypatch):
    monkeypatch.setattr(parallel, "cpu_times", lambda: None)
    assert parallel.busy_cores(interval=0) is None and parallel.free_threads(interval=0) is None


def test_cpu_times_reads_this_machine():
    times = parallel.cpu_times()
    assert times is None or 0 <= times[0] <= times[1]  # None off Linux


def test_zoo_train_uses_the_free_cores_unless_told(tmp_path, tiny_corpus, capsys, monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(parallel, "free_threads", lambda interval=0.2: 1)
    torch.set_num_threads(2)
    common = ["--preset", "quick", "--data", tiny_corpus, "--trainer.max_steps", "2", "--trainer.val_every", "2",
              "--trainer.progress_bar", "false"]
    assert cli(capsys, "train", "bigram", *common, "--out", tmp_path / "auto")[0] == 0
    assert json.loads((tmp_path / "auto" / "metrics.json").read_text())["device"].endswith("(1 threads)")
    torch.set_num_threads(2)
    assert cli(capsys, "train", "bigram", *common, "--trainer.threads", "2", "--out", tmp_path / "asked")[0] == 0
    assert json.loads((tmp_path / "asked" / "metrics.json").read_text())["device"].endswith("(2 threads)")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own setting: the load is not consulted
    monkeypatch.setattr(parallel, "free_threads", lambda interval=0.2: pytest.fail("OMP_NUM_THREADS was set"))
    assert cli(capsys, "train", "bigram", *common, "--out", tmp_path / "env")[0] == 0


def test_a_resumed_run_keeps_the_threads_it_began_with(tmp_path, tiny_corpus, restore_threads):
    """Thread counts round differently, so a resume that picked another count would not equal the run
    uninterrupted: the checkpoint records the count and --trainer.threads 0 takes it."""
    def config(steps):
        return zoo.make_config("gpt", "quick", overrides={
            "data": {"corpus": str(tiny_corpus), "block_size": 16, "batch_size": 4},
            "trainer": {"max_steps": steps, "val_every": steps, "val_batches": 1, "progress_bar": False, "compile": "off"}})

    torch.set_num_threads(1)
    zoo.train(config(2), tmp_path / "run", quiet=True)
    torch.set_num_threads(2)  # the machine got quieter
    metrics = zoo.train(config(4), tmp_path / "run", resume=True, quiet=True)
    assert metrics["steps"] == 4 and metrics["device"].endswith("(1 threads)")
