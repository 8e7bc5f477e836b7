"""Runs: train a rung into a run directory, and load one back. The public API the CLI and chapters use.

A run directory holds ``config.yaml`` (the full RunConfig), ``checkpoints/last.ckpt``, ``metrics.csv``
(the training curve), ``metrics.json`` (the protocol's val and test scores plus provenance) and
``samples.txt``. An existing directory is never overwritten: continuing it takes ``resume=True``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from zoo import registry
from zoo.config import DEFAULT_PRESET, RunConfig, deep_merge
from zoo.data import CharTokenizer, TextDataModule
from zoo.errors import ZooError
from zoo.evaluate import score
from zoo.generate import default_prompt, sample
from zoo.harness import LanguageModel
from zoo.memory import check_memory

CHECKPOINT = Path("checkpoints") / "last.ckpt"
SAMPLE_TOKENS = 500


# ----------------------------------------------------------------------------------------- callbacks
class AtomicCheckpoint(Callback):
    """Saves checkpoints/last.ckpt every ``every`` steps and at the end, via a temp file + rename,
    so a run killed mid-save still has its previous checkpoint intact."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = Path(path), every

    def save(self, trainer):
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every > 0 and trainer.global_step % self.every == 0:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module):
        self.save(trainer)


class StepProgressBar(TQDMProgressBar):
    """A progress bar over optimiser steps (the loader is endless, so Lightning's epoch bar has no total)."""

    @property
    def total_train_batches(self):
        return self.trainer.max_steps

    def on_train_epoch_start(self, trainer, *args):
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.reset(total=trainer.max_steps)
        self.train_progress_bar.n = trainer.global_step
        self.train_progress_bar.set_description(trainer.lightning_module.meta.get("rung", "train"))


class TrainClock(Callback):
    """Training seconds, validation excluded; survives resume through the checkpoint."""

    def __init__(self):
        self.train_s, self._t = 0.0, None

    def _lap(self):
        if self._t is not None:
            self.train_s += time.perf_counter() - self._t
        self._t = time.perf_counter()

    def on_train_start(self, *args):
        self._t = time.perf_counter()

    def on_train_batch_end(self, *args):
        self._lap()

    def on_validation_start(self, trainer, *args):
        if trainer.training or self._t is not None:
            self._lap()

    def on_validation_end(self, *args):
        self._t = time.perf_counter()

    def state_dict(self):
        return {"train_s": self.train_s}

    def load_state_dict(self, state):
        self.train_s = state["train_s"]


# ---------------------------------------------------------------------------------------- provenance
def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"cpu: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def versions() -> dict:
    import lightning
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__, "numpy": numpy.__version__}


# ------------------------------------------------------------------------------------------- helpers
def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _is_spawned_rank() -> bool:
    """True in the extra processes that Lightning's ddp strategy launches by re-running the command."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prepare(config: RunConfig, tokenizer: CharTokenizer | None = None):
    """Data and model for a run config (model initialised from the run's seed)."""
    info = registry.get(config.rung)
    if config.trainer.threads > 0:
        torch.set_num_threads(config.trainer.threads)
    d = config.data
    data = TextDataModule(d.corpus, d.block_size, d.batch_size, seed=config.seed, streams=info.stateful, tokenizer=tokenizer)
    check_memory(config, data.vocab_size, len(data.splits["train"]))  # before the model exists, and before any file
    L.seed_everything(config.seed, verbose=False)
    model = registry.build(config.rung, vocab_size=data.vocab_size, block_size=d.block_size, **config.model)
    return data, model


def make_config(rung: str, preset: str = DEFAULT_PRESET, seed: int = 0, overrides: dict | None = None) -> RunConfig:
    """The RunConfig of rung + preset, with ``overrides`` ({"model": {...}, "data": {...}, ...}) on top."""
    info = registry.get(rung)
    merged = deep_merge(info.preset(preset), overrides or {})
    return resolve(RunConfig.from_dict({"rung": rung, "preset": preset, "seed": seed, **merged}))


def resolve(config: RunConfig) -> RunConfig:
    """Fill in what a rung derives from its own config: a peak lr left unset (None) comes from the
    rung's ``peak_lr(model_config, optim)`` (the Vaswani rung's is the paper's formula), so it follows
    ``--model.*`` and ``--optim.warmup_steps`` overrides. Everything else is returned as it is."""
    if config.optim.lr is not None:
        return config
    rule = getattr(registry.get(config.rung).cls, "peak_lr", None)
    if rule is None:
        raise ZooError(f"--optim.lr is unset and rung {config.rung!r} has no rule for it (peak_lr); give --optim.lr")
    model_config = registry.model_config(config.rung, vocab_size=1, block_size=config.data.block_size, **config.model)
    return dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=float(rule(model_config, config.optim))))


def _meta(config: RunConfig, data: TextDataModule) -> dict:
    return {"rung": config.rung, "vocab": data.tokenizer.vocab, "config": config.to_dict()}


def check_config(config: RunConfig) -> None:
    t = config.trainer
    if t.max_steps < 1:
        raise ZooError(f"--trainer.max_steps must be >= 1 (got {t.max_steps})")
    if config.optim.lr <= 0:
        raise ZooError(f"--optim.lr must be > 0 (got {config.optim.lr})")
    if t.val_every < 1 or t.val_batches < 0 or t.checkpoint_every < 0:
        raise ZooError("--trainer.val_every must be >= 1, val_batches and checkpoint_every >= 0")


# --------------------------------------------------------------------------------------------- train
def train(config: RunConfig, out: str | os.PathLike, resume: bool = False, callbacks=(), quiet: bool = False) -> dict:
    """Train ``config`` into run directory ``out``; returns the metrics dict also written to metrics.json."""
    out = Path(out)
    config = resolve(config)
    check_config(config)
    ckpt_path = out / CHECKPOINT
    if resume:
        if not ckpt_path.is_file():
            raise ZooError(f"cannot resume: {ckpt_path} does not exist")
        saved = read_checkpoint(ckpt_path)
        if saved["zoo"]["rung"] != config.rung:
            raise ZooError(f"{out} holds a {saved['zoo']['rung']!r} run, not {config.rung!r}")
        tokenizer = CharTokenizer(saved["zoo"]["vocab"])
    else:
        tokenizer = None
        if out.exists() and not _is_spawned_rank():
            raise ZooError(f"run directory {out} already exists; continue it with --resume {out} or choose another --out")
    data, model = prepare(config, tokenizer)
    if not _is_spawned_rank():
        (out / CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    info = registry.get(config.rung)
    clock = TrainClock()
    if info.trainable:
        trainer, rows_per_step = _fit(config, data, model, out, resume, [clock, *callbacks], quiet)
        if not trainer.is_global_zero:
            return {}
        # Read the outcome back from the final checkpoint: with spawn-based strategies the training
        # happened in other processes, and this one only has what they saved.
        final = read_checkpoint(out / CHECKPOINT)
        model.load_state_dict(_model_state(final))
        clock.load_state_dict(final["callbacks"]["TrainClock"])
        steps = final["global_step"]
        tokens_seen = steps * rows_per_step * config.data.block_size
    else:
        steps, tokens_seen = _count(config, data, model, out, clock), len(data.splits["train"])
    return finish(config, data, model, out, steps, tokens_seen, clock.train_s)


def train_or_reuse(config: RunConfig, out: str | os.PathLike, *, force: bool = False, quiet: bool = False) -> tuple[dict, bool]:
    """Bring run directory ``out`` to a finished run of ``config``, whatever an earlier attempt left there.

    Returns (metrics, reused). A finished run (metrics.json) of the same config is reused as it is; one
    of a different config is an error unless ``force``, which retrains it from scratch. An interrupted
    run (a checkpoint, no metrics.json) is resumed, and a directory an aborted start left without a
    checkpoint is started afresh. ``zoo ladder`` and the book both finish their runs through this.
    """
    out = Path(out)
    metrics_path = out / "metrics.json"
    if metrics_path.is_file() and not force:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        if metrics["config"] != config.to_dict():
            raise ZooError(f"{out} holds a finished run with a different config; retrain it with --force or choose another directory")
        return metrics, True
    if force or (out.exists() and not (out / CHECKPOINT).is_file()):
        shutil.rmtree(out, ignore_errors=True)  # nothing worth resuming
    return train(config, out, resume=(out / CHECKPOINT).is_file(), quiet=quiet), False


def _fit(config, data, model, out, resume, callbacks, quiet):
    t = config.trainer
    module = LanguageModel(model, config.optim, t.max_steps, config.seed, meta=_meta(config, data))
    trainer = L.Trainer(
        max_steps=t.max_steps, max_epochs=-1,
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, num_nodes=t.num_nodes, precision=t.precision,
        val_check_interval=t.val_every, check_val_every_n_epoch=None, limit_val_batches=t.val_batches,
        num_sanity_val_steps=0, log_every_n_steps=min(50, t.val_every),
        # logs/version_N/metrics.csv: a resumed run appends a version instead of deleting the curve so far
        logger=CSVLogger(out, name="logs"), enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=t.progress_bar and not quiet,
        callbacks=[AtomicCheckpoint(out / CHECKPOINT, t.checkpoint_every), *callbacks]
        + ([StepProgressBar()] if t.progress_bar and not quiet else []),
    )
    trainer.fit(module, datamodule=data, ckpt_path=str(out / CHECKPOINT) if resume else None, weights_only=True)
    return trainer, config.data.batch_size * trainer.world_size


def _count(config, data, model, out, clock):
    """Count-based rungs: one pass of counting over the train split, saved like any checkpoint."""
    start = time.perf_counter()
    model.fit(data.splits["train"])
    clock.train_s = time.perf_counter() - start
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    checkpoint = {"state_dict": state, "zoo": _meta(config, data), "global_step": 1, "callbacks": {"TrainClock": clock.state_dict()}}
    tmp = out / CHECKPOINT.with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, out / CHECKPOINT)
    return 1


def finish(config: RunConfig, data: TextDataModule, model, out: Path, steps: int, tokens_seen: int, train_s: float) -> dict:
    """Score val and test by the protocol, write samples.txt and metrics.json."""
    model = model.cpu() if config.trainer.accelerator == "cpu" else model
    block = config.data.block_size
    val, test = (score(model, data.splits[s], block) for s in ("val", "test"))
    text = sample(model, data.tokenizer, default_prompt(data.tokenizer), SAMPLE_TOKENS, seed=config.seed, block_size=block)
    _write_atomic(out / "samples.txt", text)
    metrics = {
        "rung": config.rung,
        "preset": config.preset,
        "val": val,
        "test": test,
        "params": count_params(model),
        "steps": steps,
        "tokens_seen": tokens_seen,
        "wall_s": round(train_s, 3),
        "tokens_per_s": round(tokens_seen / train_s, 1) if train_s > 0 else None,
        "seed": config.seed,
        "corpus": {"name": config.data.corpus, "sha256": data.corpus.sha256, "vocab_size": data.vocab_size},
        "splits": data.split_sizes(),
        "config": config.to_dict(),
        "git_commit": git_commit(),
        "versions": versions(),
        "device": device_name(config.trainer.accelerator),
    }
    _write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


# ---------------------------------------------------------------------------------------------- load
def read_checkpoint(path: Path) -> dict:
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle before refusing it: zoo's line says it all
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ZooError(f"checkpoint not found: {path}") from None
    except Exception as e:
        raise ZooError(f"checkpoint {path} is corrupt or not a zoo checkpoint ({e.__class__.__name__})") from None
    if not isinstance(checkpoint, dict) or "zoo" not in checkpoint or "state_dict" not in checkpoint:
        raise ZooError(f"checkpoint {path} is not a zoo checkpoint (no zoo metadata)")
    return checkpoint


def _model_state(checkpoint: dict) -> dict:
    """The rung's own state_dict out of a checkpoint (the harness stores it under 'model.')."""
    return {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ZooError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        return RunConfig.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, TypeError) as e:
        raise ZooError(f"{path} is not a valid run config ({e.__class__.__name__})") from None


@dataclasses.dataclass
class Run:
    dir: Path
    config: RunConfig
    model: torch.nn.Module
    tokenizer: CharTokenizer


def load_run(run_dir: str | os.PathLike) -> Run:
    """The trained model of a run directory, its config and its tokenizer (vocabulary from the checkpoint)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ZooError(f"run directory not found: {run_dir}")
    config = read_config(run_dir)
    checkpoint = read_checkpoint(run_dir / CHECKPOINT)
    meta = checkpoint["zoo"]
    if meta.get("rung") != config.rung:
        raise ZooError(f"checkpoint in {run_dir} is from rung {meta.get('rung')!r}, but its config.yaml says {config.rung!r}")
    tokenizer = CharTokenizer(meta["vocab"])
    model = registry.build(config.rung, vocab_size=tokenizer.vocab_size, block_size=config.data.block_size, **config.model)
    try:
        model.load_state_dict(_model_state(checkpoint))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ZooError(f"checkpoint in {run_dir} does not fit rung {config.rung!r} with this vocabulary/config: {first}") from None
    model.eval()
    return Run(run_dir, config, model, tokenizer)
