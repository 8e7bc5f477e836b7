"""Runs end to end through the python API: provenance, determinism, exact resume, several devices."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from conftest import StopAt
from lightning.pytorch.callbacks import Callback
from torch import nn

import zoo
from zoo import registry
from zoo.runs import CHECKPOINT, read_checkpoint


def tiny(corpus, rung="bigram", **trainer):
    return zoo.make_config(rung, "quick", seed=3, overrides={
        "data": {"corpus": str(corpus), "block_size": 16, "batch_size": 8},
        "trainer": {"max_steps": 40, "val_every": 10, "val_batches": 2, "checkpoint_every": 10, "progress_bar": False, **trainer}})


def weights(run_dir):
    return read_checkpoint(run_dir / CHECKPOINT)["state_dict"]


def test_run_directory_and_provenance(tmp_path, tiny_corpus):
    metrics = zoo.train(tiny(tiny_corpus), tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    for name in ("config.yaml", "checkpoints/last.ckpt", "metrics.json", "samples.txt"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("val", "test", "rung", "config", "corpus", "splits", "params", "steps", "tokens_seen", "wall_s",
                "tokens_per_s", "seed", "git_commit", "versions", "device"):
        assert key in saved, key
    assert set(saved["val"]) == {"tokens", "nats", "bpc"}
    assert saved["steps"] == 40 and saved["tokens_seen"] == 40 * 8 * 16
    assert len(saved["corpus"]["sha256"]) == 64
    # the checkpoint loads with weights_only=True and carries the vocabulary
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert ckpt["zoo"]["rung"] == "bigram" and ckpt["zoo"]["vocab"]
    # the logged curve exists
    assert list(run.glob("logs/version_*/metrics.csv"))


def test_same_seed_same_numbers(tmp_path, tiny_corpus):
    a = zoo.train(tiny(tiny_corpus), tmp_path / "a", quiet=True)
    b = zoo.train(tiny(tiny_corpus), tmp_path / "b", quiet=True)
    assert a["val"] == b["val"] and a["test"] == b["test"]
    assert all(torch.equal(weights(tmp_path / "a")[k], v) for k, v in weights(tmp_path / "b").items())


def test_existing_run_directory_is_never_overwritten(tmp_path, tiny_corpus):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(zoo.ZooError, match="already exists"):
        zoo.train(tiny(tiny_corpus), tmp_path / "run", quiet=True)
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


# A rung with dropout, so that exact resume must also restore the randomness.
@dataclass(frozen=True)
class DropConfig:
    vocab_size: int = 0
    block_size: int = 0
    n_embd: int = 16


class DropoutRung(nn.Module):
    """Test rung: embedding, dropout, a causal mean, unembedding."""

    Config = DropConfig
    presets = {"quick": {"optim": {"lr": 1e-2}}, "book": {}}
    context_length = None

    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx):
        x = self.drop(self.wte(idx))  # (B, T, C)
        x = x.cumsum(1) / torch.arange(1, idx.shape[1] + 1).view(1, -1, 1)  # (B, T, C)
        return self.head(x)


@pytest.fixture
def dropout_rung():
    registry.register("test-dropout", chapter="99-test")(DropoutRung)
    yield "test-dropout"
    registry._REGISTRY.pop("test-dropout")


@pytest.mark.parametrize("rung", ["bigram", "dropout"])
def test_resume_equals_uninterrupted(tmp_path, tiny_corpus, dropout_rung, rung):
    rung = dropout_rung if rung == "dropout" else rung
    full = zoo.train(tiny(tiny_corpus, rung), tmp_path / "full", quiet=True)
    zoo.train(tiny(tiny_corpus, rung), tmp_path / "half", callbacks=[StopAt(20)], quiet=True)
    assert read_checkpoint(tmp_path / "half" / CHECKPOINT)["global_step"] == 20
    resumed = zoo.train(tiny(tiny_corpus, rung), tmp_path / "half", resume=True, quiet=True)
    assert resumed["steps"] == 40
    a, b = weights(tmp_path / "full"), weights(tmp_path / "half")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    assert resumed["val"] == full["val"]


def test_resume_refuses_another_rung(tmp_path, tiny_corpus, dropout_rung):
    zoo.train(tiny(tiny_corpus), tmp_path / "run", quiet=True)
    with pytest.raises(zoo.ZooError, match="holds a 'bigram' run"):
        zoo.train(tiny(tiny_corpus, dropout_rung), tmp_path / "run", resume=True, quiet=True)


def test_killed_process_resumes_bit_for_bit(tmp_path, tiny_corpus):
    """SIGKILL a real `zoo train` after a checkpoint, resume it, compare with an uninterrupted run."""
    args = [sys.executable, "-m", "zoo", "train", "bigram", "--data", str(tiny_corpus), "--seed", "3",
            "--data.block_size", "16", "--data.batch_size", "8", "--trainer.max_steps", "600",
            "--trainer.checkpoint_every", "5", "--trainer.val_every", "1000", "--trainer.progress_bar", "false"]
    victim = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)  # right after its first checkpoint: mid-run, whatever the load
    victim.wait()
    step = read_checkpoint(tmp_path / "killed" / CHECKPOINT)["global_step"]
    assert 0 < step < 600, "the run should have been killed part way"
    subprocess.run(args + ["--resume", str(tmp_path / "killed")], check=True, capture_output=True)
    subprocess.run(args + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)


class RecordWeights(Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_train_end(self, trainer, module):
        torch.save({k: v.clone() for k, v in module.state_dict().items()}, os.path.join(self.folder, f"rank{trainer.global_rank}.pt"))


def test_two_processes_agree_on_the_weights(tmp_path, tiny_corpus):
    config = tiny(tiny_corpus, strategy="ddp_spawn", devices=2, max_steps=6, val_every=3)
    metrics = zoo.train(config, tmp_path / "run", callbacks=[RecordWeights(str(tmp_path))], quiet=True)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert metrics["tokens_seen"] == 6 * 2 * 8 * 16  # two shards of 8 windows per step
    zoo.train(tiny(tiny_corpus, max_steps=6, val_every=3), tmp_path / "single", quiet=True)  # one process, same seed
    assert not all(torch.equal(r0[f"model.{k}"] if f"model.{k}" in r0 else r0[k], v) for k, v in weights(tmp_path / "single").items() if k in r0)


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_precision_auto_is_bf16_only_where_the_cpu_multiplies_bf16(monkeypatch, native, expected):
    from zoo.runs import auto_precision, resolve

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert auto_precision("cpu") == expected
    config = zoo.make_config("gpt", "quick")  # make_config resolves: "auto" never reaches Lightning
    assert config.trainer.precision == expected
    explicit = zoo.make_config("gpt", "quick", overrides={"trainer": {"precision": "32-true"}})
    assert resolve(explicit).trainer.precision == "32-true"  # an explicit choice is kept


def test_config_yaml_records_what_auto_became(tmp_path, tiny_corpus):
    """A resumed or repeated run trains in the precision the run started with, whatever machine it is on."""
    import dataclasses

    import yaml

    from zoo.runs import auto_precision

    config = tiny(tiny_corpus, rung="mlp-mixer", max_steps=4)
    config = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, precision="auto"))
    zoo.train(config, tmp_path / "run", quiet=True)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == auto_precision("cpu") != "auto"
