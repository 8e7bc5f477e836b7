"""Runs: train a rung into a run directory, and load one back. The public API the CLI and chapters use.

A run directory holds ``config.yaml`` (the full RunConfig), ``checkpoints/last.ckpt``, ``metrics.csv``
(the training curve), ``metrics.json`` (the protocol's val and test scores plus provenance) and
``samples.txt``. An existing directory is never overwritten: continuing it takes ``resume=True``.

A training process holds ``train.lock`` in its run directory (an flock, with the owner's pid) from the
moment it creates or resumes the directory until it exits; a second ``train`` of the same directory is
refused. Every setting is checked before the directory is created, and a run that fails before its first
checkpoint removes the directory it created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from zoo import corruption, registry, selection
from zoo.config import DEFAULT_PRESET, RunConfig, deep_merge
from zoo.data import CharTokenizer, TextDataModule
from zoo.errors import Interrupted, ZooError
from zoo.evaluate import score
from zoo.generate import default_prompt, sample
from zoo.harness import OPTIMIZERS, LanguageModel, lr_factor
from zoo.memory import check_memory

try:
    import fcntl
except ImportError:  # Windows has no flock: run directories are not locked there
    fcntl = None

# Lightning announces a SIGTERM on this logger (at INFO, which its import enables); Interrupts says it in zoo's one line.
logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)

CHECKPOINT = Path("checkpoints") / "last.ckpt"
LOCK = "train.lock"
SAMPLE_TOKENS = 500


# ----------------------------------------------------------------------------------------- callbacks
class AtomicCheckpoint(Callback):
    """Saves checkpoints/last.ckpt every ``every`` steps and at the end, via a temp file + rename,
    so a run killed mid-save still has its previous checkpoint intact. With ``keep_every`` it also keeps
    checkpoints/step-NNNNNN.ckpt at step 0 and every ``keep_every`` steps (the weights along training, for
    analyses such as ``zoo landscape --checkpoint``); a resumed run keeps them on the same steps."""

    def __init__(self, path: Path, every: int, keep_every: int = 0):
        self.path, self.every, self.keep_every = Path(path), every, keep_every

    def kept(self, step: int) -> Path:
        return self.path.parent / f"step-{step:06d}.ckpt"

    def save(self, trainer, path: Path | None = None):
        path = path or self.path
        tmp = path.with_suffix(".tmp")
        try:
            trainer.save_checkpoint(tmp, weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, path)
        except BaseException as e:  # a full disk, a second Ctrl-C: drop the partial file, keep the previous checkpoint
            tmp.unlink(missing_ok=True)
            if not isinstance(e, OSError):
                raise
            kept = (f"; the previous checkpoint is kept: free some space, then continue with --resume {self.path.parent.parent}"
                    if self.path.is_file() else "")
            raise ZooError(f"cannot write checkpoint {tmp} at step {trainer.global_step}: {e.strerror or e}{kept}") from None

    def on_train_start(self, trainer, pl_module):
        if self.keep_every > 0 and trainer.global_step == 0:
            self.save(trainer, self.kept(0))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every > 0 and trainer.global_step % self.every == 0:
            self.save(trainer)
        if self.keep_every > 0 and trainer.global_step % self.keep_every == 0:
            self.save(trainer, self.kept(trainer.global_step))

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

    def get_metrics(self, trainer, pl_module):
        """The logged metrics, with this step's training loss (the logs get it every log_every_n_steps only)."""
        metrics = super().get_metrics(trainer, pl_module)
        loss = getattr(pl_module, "last_train_loss", None)
        return metrics if loss is None else {**metrics, "train_loss": f"{float(loss):.3f}"}


class LineProgress(ProgressBar):
    """Progress as plain lines, for output that is not a terminal (a log file, CI, ``nohup``): one line every
    1/LINES of the run and one per validation. A bar there writes a carriage-return redraw every step (the
    quick ladder redirected to a file was 380 kB of them)."""

    LINES = 10

    def __init__(self):
        super().__init__()
        self._enabled, self._start = True, None

    def disable(self):
        self._enabled = False

    def enable(self):
        self._enabled = True

    def _say(self, trainer, text):
        if self._enabled and trainer.is_global_zero:
            print(f"{trainer.lightning_module.meta.get('rung', 'train')}: step {trainer.global_step:,}/{trainer.max_steps:,}  {text}", flush=True)

    def on_train_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step, every = trainer.global_step, max(1, math.ceil(trainer.max_steps / self.LINES))
        if step % every == 0 or step == trainer.max_steps:
            loss = getattr(pl_module, "last_train_loss", None)
            self._say(trainer, (f"train loss {float(loss):.3f}  " if loss is not None else "") + f"{time.perf_counter() - self._start:.1f} s")

    def on_validation_end(self, trainer, pl_module):
        val = trainer.callback_metrics.get("val_nats")
        if not trainer.sanity_checking and val is not None:
            self._say(trainer, f"val {float(val):.4f} nats/char ({float(val) / math.log(2):.4f} bpc, a quick estimate)")


def progress_bar():
    """The bar on a terminal, lines anywhere else."""
    return StepProgressBar() if sys.stdout.isatty() else LineProgress()


LOGGERS = ("csv", "tensorboard")


def loggers(config, out: Path) -> list:
    """logs/version_N/metrics.csv always (zoo's tools and the book read it; a resumed run appends a
    version instead of deleting the curve so far), and TensorBoard's event files in tensorboard/ when
    --trainer.logger tensorboard asks for them."""
    chosen = [CSVLogger(out, name="logs")]
    if config.trainer.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        chosen.append(TensorBoardLogger(out, name="tensorboard", default_hp_metric=False))
    return chosen


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


class Interrupts(Callback):
    """Ctrl-C (SIGINT) or SIGTERM while training: finish the current step, save it, stop; outside the training
    loop, or on a second signal, stop at once. Either way ``train`` ends with Interrupted (exit 130 / 143).

    Lightning's own handling would end a run without saving (Ctrl-C: exit 1, nothing said; SIGTERM: exit 0).
    Lightning still adds its SIGTERM handler in front of this one; it makes fit raise SIGTERMException after
    the step, by which time the step is saved."""

    def __init__(self):
        self.signum, self.fitting, self._previous = None, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # Python sets signal handlers there only
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None or not self.fitting:
            raise Interrupted("interrupted", signum)
        self.signum = signum

    def on_train_start(self, trainer, pl_module):
        self.fitting = True

    def on_train_end(self, trainer, pl_module):
        self.fitting = False

    def on_exception(self, trainer, pl_module, exception):
        self.fitting = False

    def on_train_batch_end(self, trainer, *args):
        # every rank stops at the same step if any was signalled (a no-op on one device)
        if trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            next(c for c in trainer.callbacks if isinstance(c, AtomicCheckpoint)).save(trainer)
            trainer.should_stop = True


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
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _is_spawned_rank() -> bool:
    """True in the extra processes that Lightning's ddp strategy launches by re-running the command."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_embedding_params(model: torch.nn.Module) -> int:
    """Parameters in the model's embedding tables (every ``nn.Embedding``: tokens, and positions where they
    are learned), each counted once, so a tied output projection counts here. Kaplan et al. 2020's scaling
    laws are stated in the parameters that are *not* these (``params_non_embedding`` in metrics.json); an
    untied output projection is a matrix like any other and counts there."""
    seen = {id(p): p for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in seen.values())


def count_stored(model: torch.nn.Module) -> dict:
    """What a model keeps: every number of its state_dict (trained parameters and the tables a counting
    rung fills), plus whatever the rung's optional ``storage()`` adds (the n-gram: how many n-grams)."""
    stored = {"numbers": sum(t.numel() for t in model.state_dict().values())}
    if hasattr(model, "storage"):
        stored.update(model.storage())
    return stored


def prepare(config: RunConfig, tokenizer: CharTokenizer | None = None):
    """Data and model for a run config (model initialised from the run's seed)."""
    info = registry.get(config.rung)
    if config.trainer.threads > 0:
        torch.set_num_threads(config.trainer.threads)
    d = config.data
    data = TextDataModule(d.corpus, d.block_size, d.batch_size, seed=config.seed, streams=info.stateful, tokenizer=tokenizer,
                          noise=d.noise, noise_fraction=d.noise_fraction, noise_span=d.noise_span, select=d.select, select_drop=d.select_drop)
    check_memory(config, data.vocab_size, len(data.splits["train"]))  # before the model exists, and before any file
    L.seed_everything(config.seed, verbose=False)
    model = registry.build(config.rung, vocab_size=data.vocab_size, block_size=d.block_size, **config.model)
    return data, model


def _require_causal(config: RunConfig, model, vocab_size: int) -> None:
    """Refuse, before anything is written, a model whose logits at t depend on a later token: every
    score it would earn is meaningless. A perturbation check on one tiny window (zoo.conformance)."""
    from zoo.causality import causality_leak

    leak = causality_leak(model, vocab_size, config.data.block_size, seed=config.seed)
    if leak is not None:
        raise ZooError(f"rung {config.rung!r} sees the future: {leak}; nothing was trained "
                       f"(`zoo check {config.rung}` runs every conformance check)")


def make_config(rung: str, preset: str = DEFAULT_PRESET, seed: int = 0, overrides: dict | None = None) -> RunConfig:
    """The RunConfig of rung + preset, with ``overrides`` ({"model": {...}, "data": {...}, ...}) on top."""
    info = registry.get(rung)
    merged = deep_merge(info.preset(preset), overrides or {})
    return resolve(RunConfig.from_dict({"rung": rung, "preset": preset, "seed": seed, **merged}))


def auto_precision(accelerator: str) -> str:
    """What ``--trainer.precision auto`` becomes: "bf16-mixed" where the device multiplies bfloat16 natively
    (a CPU with AVX512-BF16 or AMX tiles, a CUDA GPU that supports bf16), else "32-true".

    Mixed precision (Micikevicius et al. 2018) keeps fp32 weights, gradients and optimiser state and runs the
    forward's matmuls in bf16 under autocast. On the development CPU (Zen 4, AVX512-BF16) it trained every
    book rung 1.3-2.8x faster at one thread, with final val bpc within the seed spread for six of the seven
    (set-transformer: 0.013 worse; the measurement is in docs/guides/reproduce.md). A CPU without native
    bf16 was not measured, so it stays in fp32. Scoring (zoo.evaluate) always runs in fp32."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    if accelerator in ("cpu", "auto"):
        native = [getattr(torch.cpu, name, lambda: False) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return "bf16-mixed" if any(f() for f in native) else "32-true"
    return "32-true"  # another accelerator (mps, tpu, ...): full precision unless asked otherwise


def resolve(config: RunConfig) -> RunConfig:
    """Fill in what a run derives from its own config and machine: ``precision: auto`` becomes the concrete
    precision this machine trains with (``auto_precision``; config.yaml records the concrete value, so a
    resumed or repeated run keeps it), and a peak lr left unset (None) comes from the rung's
    ``peak_lr(model_config, optim)`` (the Vaswani rung's is the paper's formula), so it follows ``--model.*``
    and ``--optim.warmup_steps`` overrides. Everything else is returned as it is."""
    if config.trainer.precision == "auto":
        trainer = dataclasses.replace(config.trainer, precision=auto_precision(config.trainer.accelerator))
        config = dataclasses.replace(config, trainer=trainer)
    if config.optim.lr is not None:
        return config
    rule = getattr(registry.get(config.rung).cls, "peak_lr", None)
    if rule is None:
        raise ZooError(f"--optim.lr is unset and rung {config.rung!r} has no rule for it (peak_lr); give --optim.lr")
    model_config = registry.model_config(config.rung, vocab_size=1, block_size=config.data.block_size, **config.model)
    return dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=float(rule(model_config, config.optim))))


COMPILE_MODES = ("off", "on", "auto")
# "auto" compiles runs at least this long, of rungs that declare compile_pays: a first (uncached) compilation of
# gpt at the book size took ~13 s and saved ~20 ms a step, so it pays after ~650 steps
COMPILE_MIN_STEPS = 1000


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (Inductor) would build its kernels with, if there is one."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _on_cpu(config: RunConfig) -> bool:
    return config.trainer.accelerator == "cpu" or not torch.cuda.is_available()


def compiles(config: RunConfig) -> bool:
    """Whether a run compiles its training forward: --trainer.compile on (refused in one line on a CPU without a
    C++ compiler), off, or auto: on for a rung that declares ``compile_pays`` (measured faster compiled; vaswani
    and set-transformer were slower), in a run of at least COMPILE_MIN_STEPS steps, where a compiler is found."""
    mode = config.trainer.compile
    if mode == "off":
        return False
    have_compiler = cxx_compiler() is not None or not _on_cpu(config)
    if mode == "auto":
        return have_compiler and registry.get(config.rung).compile_pays and config.trainer.max_steps >= COMPILE_MIN_STEPS
    if not have_compiler:
        raise ZooError("--trainer.compile on needs a C++ compiler on a CPU (none of $CXX, c++, g++, clang++ was found); "
                       "install one or use --trainer.compile off")
    return True


def _meta(config: RunConfig, data: TextDataModule) -> dict:
    # threads: the count it trained with, which a resume with --trainer.threads 0 keeps (thread counts round differently)
    return {"rung": config.rung, "vocab": data.tokenizer.vocab, "config": config.to_dict(), "threads": torch.get_num_threads()}


def check_config(config: RunConfig) -> None:
    """Every setting that can be checked without data or devices, so that a bad one fails before anything is
    created. (Comparisons are written ``not (x >= 0)`` so that NaN fails them too.)"""
    t, o = config.trainer, config.optim
    if t.max_steps < 1:
        raise ZooError(f"--trainer.max_steps must be >= 1 (got {t.max_steps})")
    if not 0 < o.lr < math.inf:
        raise ZooError(f"--optim.lr must be > 0 (got {o.lr})")
    corruption.check(config.data.noise, config.data.noise_fraction, config.data.noise_span)
    selection.check(config.data.select, config.data.select_drop)
    if config.data.select != "none" and registry.get(config.rung).stateful:
        raise ZooError(f"--data.select draws chosen windows; rung {config.rung!r} reads contiguous streams instead (use a windowed rung)")
    if t.val_every < 1 or t.val_batches < 0 or t.checkpoint_every < 0 or t.keep_every < 0:
        raise ZooError("--trainer.val_every must be >= 1, val_batches, checkpoint_every and keep_every >= 0")
    if o.optimizer not in OPTIMIZERS:
        raise ZooError(f"unknown optimizer {o.optimizer!r} (valid: {', '.join(OPTIMIZERS)})")
    if t.compile not in COMPILE_MODES:
        raise ZooError(f"--trainer.compile must be one of {', '.join(COMPILE_MODES)} (got {t.compile!r})")
    lr_factor(o.schedule, 1, o.warmup_steps, t.max_steps, o.min_lr_ratio)  # names the valid schedules
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise ZooError(f"--optim.betas must be two numbers in [0, 1) (got {o.betas})")
    if not 0 < o.eps < math.inf:
        raise ZooError(f"--optim.eps must be > 0 (got {o.eps})")
    if not 0 <= o.weight_decay < math.inf:
        raise ZooError(f"--optim.weight_decay must be >= 0 (got {o.weight_decay})")
    if not 0 <= o.label_smoothing < 1:
        raise ZooError(f"--optim.label_smoothing must be in [0, 1) (got {o.label_smoothing})")
    if not 0 <= o.grad_clip < math.inf:
        raise ZooError(f"--optim.grad_clip must be >= 0, 0 = no clipping (got {o.grad_clip})")
    if o.warmup_steps < 0:
        raise ZooError(f"--optim.warmup_steps must be >= 0 (got {o.warmup_steps})")
    if not 0 <= o.min_lr_ratio <= 1:
        raise ZooError(f"--optim.min_lr_ratio must be in [0, 1] (got {o.min_lr_ratio})")
    if t.threads < 0:
        raise ZooError(f"--trainer.threads must be >= 0, 0 = torch's default (got {t.threads})")
    if t.logger not in LOGGERS:
        raise ZooError(f"--trainer.logger must be one of {', '.join(LOGGERS)} (got {t.logger!r})")
    if t.logger == "tensorboard" and not _tensorboard_installed():
        raise ZooError("--trainer.logger tensorboard needs the tensorboard package: pip install -e \".[tensorboard]\" (or pip install tensorboard)")


def _tensorboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


# ------------------------------------------------------------------------------------ run directories
class RunLock:
    """The lock a training process holds on its run directory: an flock on ``train.lock``, which names the
    owner's pid. The kernel drops an flock when its process dies, however it dies (kill -9 included), so the
    lock file a dead run leaves behind is stale by construction and the next process simply takes it over."""

    def __init__(self, run_dir: Path):
        self.path, self.fd = Path(run_dir) / LOCK, None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise ZooError(f"cannot lock run directory {self.path.parent}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise ZooError(f"run directory {self.path.parent} is being trained by process {owner} (see {self.path}); "
                               "wait for it to finish or stop it first") from None
            try:  # the owner may have released and deleted the file between our open and our flock: open it again
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return self
            os.close(fd)
        raise ZooError(f"could not lock run directory {self.path.parent}: its lock file keeps changing")

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: whoever opens the old file next sees it is gone
            os.close(self.fd)
            self.fd = None


def _check_out(out: Path) -> None:
    """Refuse an ``out`` that cannot become a new run directory, before anything is computed or written."""
    if out.is_symlink() and not out.exists():
        raise ZooError(f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist; choose another --out")
    if out.exists():
        if not out.is_dir():
            raise ZooError(f"--out {out} is an existing file, not a run directory; choose another --out")
        if (out / "config.yaml").is_file() and not (out / CHECKPOINT).is_file():
            raise ZooError(f"run directory {out} already exists but holds no checkpoint (it stopped before its first save); "
                           f"start it again with --resume {out}, or delete it")
        raise ZooError(f"run directory {out} already exists; continue it with --resume {out} or choose another --out")
    ancestor = next((p for p in out.absolute().parents if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise ZooError(f"cannot create run directory {out}: {ancestor} is a file, not a directory")


def _make_run_dir(out: Path) -> None:
    """Create the run directory. os.mkdir is atomic: of two processes creating the same run, one fails here."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(out)
    except FileExistsError:
        raise ZooError(f"run directory {out} already exists (another process just created it); choose another --out") from None
    except OSError as e:  # a read-only file system, no permission, ...
        raise ZooError(f"cannot create run directory {out}: {e.strerror}") from None


# What --resume may change: how long to train, how often to look and save, where and how fast to run. The rest
# (rung, preset, seed, model, data, optimiser, precision, devices and strategy, which set the global batch) would
# make the checkpoint continue a different run than its config.yaml describes, so it is refused. A larger
# max_steps re-stretches the cosine schedule from the step reached (the lr is continuous only at max_steps).
RESUME_MAY_CHANGE = ("trainer.max_steps", "trainer.val_every", "trainer.val_batches", "trainer.checkpoint_every", "trainer.keep_every",
                     "trainer.progress_bar", "trainer.threads", "trainer.accelerator", "trainer.logger", "trainer.compile")


def _settings(config: dict) -> dict:
    """A run config as {dotted name: value}, with the rung's model options filled in from their defaults (a
    config.yaml written by the CLI lists them all, one from the python API only those a preset sets)."""
    fields = dataclasses.fields(registry.get(config["rung"]).cls.Config)
    model = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    model.update({f.name: f.default_factory() for f in fields if f.default_factory is not dataclasses.MISSING})
    model.update(config.get("model") or {})
    for name in ("vocab_size", "block_size"):  # set by the data, never by the config
        model.pop(name, None)
    flat = {k: v for k, v in config.items() if not isinstance(v, dict)}
    for section in ("model", "data", "optim", "trainer"):
        flat.update({f"{section}.{k}": v for k, v in (model if section == "model" else config.get(section) or {}).items()})
    return flat


def check_resume(config: RunConfig, out: str | os.PathLike) -> dict | None:
    """Refuse to continue run directory ``out`` with ``config`` unless they differ only in RESUME_MAY_CHANGE.
    Returns the run's metrics if it is already finished with this config (nothing to do), else None. Reads only."""
    return _resume_state(config, Path(out))[1]


def _resume_state(config: RunConfig, out: Path) -> tuple[dict | None, dict | None]:
    """check_resume's work: (the run's checkpoint or None if it has none yet, its metrics if it is finished)."""
    if not out.is_dir():
        raise ZooError(f"cannot resume: no run directory {out}")
    saved = read_checkpoint(out / CHECKPOINT) if (out / CHECKPOINT).is_file() else None
    if saved is not None:  # the checkpoint's own config is the truth about the weights it holds
        step, run = saved.get("global_step", 0), saved["zoo"].get("config") or read_config(out).to_dict()
    elif (out / "config.yaml").is_file():  # stopped before its first checkpoint: resumable from step 0
        step, run = 0, read_config(out).to_dict()
    else:
        raise ZooError(f"cannot resume: {out} is not a run directory (no config.yaml)")
    if run.get("rung") != config.rung:
        raise ZooError(f"{out} holds a {run.get('rung')!r} run, not {config.rung!r}")
    before, after = _settings(run), _settings(config.to_dict())
    refused = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and k not in RESUME_MAY_CHANGE)
    if refused:
        shown = ", ".join(f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in refused[:3]) + (", ..." if len(refused) > 3 else "")
        allowed = "--trainer." + ", ".join(k.removeprefix("trainer.") for k in RESUME_MAY_CHANGE)
        raise ZooError(f"cannot resume {out} with other settings ({shown}): a resumed run keeps its own; only {allowed} "
                       "may change. Train a new run with --out instead")
    trainable = registry.get(config.rung).trainable
    if trainable and config.trainer.max_steps < step:
        raise ZooError(f"{out} is already at step {step}; --trainer.max_steps must be at least that (got {config.trainer.max_steps})")
    if saved is not None and (out / "metrics.json").is_file() and (not trainable or step >= config.trainer.max_steps):
        try:
            metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        except ValueError:  # a damaged metrics.json: finishing again rewrites it
            metrics = None
        # metrics.json may still be that of the run before it was extended (its scoring failed or was interrupted)
        if isinstance(metrics, dict) and metrics.get("steps") == step:
            return saved, metrics
    return saved, None


# --------------------------------------------------------------------------------------------- train
def train(config: RunConfig, out: str | os.PathLike, resume: bool = False, callbacks=(), quiet: bool = False) -> dict:
    """Train ``config`` into run directory ``out``; returns the metrics dict also written to metrics.json.

    With ``resume``, continue the run in ``out`` (from step 0 if it stopped before its first checkpoint);
    ``config`` may differ from the run's own only in RESUME_MAY_CHANGE, and a finished run is left as it is
    (its metrics are returned). Nothing is written until every setting has been checked."""
    out = Path(out)
    config = resolve(config)
    check_config(config)
    spawned = _is_spawned_rank()  # ddp's extra processes: rank 0 owns the directory and its lock
    lock, created, started, interrupts = None, False, False, Interrupts()
    try:
        with interrupts:
            if resume:
                if not spawned:
                    if not out.is_dir():
                        raise ZooError(f"cannot resume: no run directory {out}")
                    lock = RunLock(out).acquire()
                saved, finished = _resume_state(config, out)
                if finished is not None:
                    return finished
                if saved and config.trainer.threads == 0 and saved["zoo"].get("threads"):
                    torch.set_num_threads(saved["zoo"]["threads"])  # the run goes on as it began: same rounding
                tokenizer = CharTokenizer(saved["zoo"]["vocab"]) if saved else None
            else:
                saved = tokenizer = None
                if not spawned:
                    _check_out(out)
            data, model = prepare(config, tokenizer)
            info = registry.get(config.rung)
            _require_causal(config, model, data.vocab_size)
            compile_forward = compiles(config)  # before the run directory exists: "on" without a compiler is refused here
            clock = TrainClock()
            trainer = _make_trainer(config, out, [clock, interrupts, *callbacks], quiet) if info.trainable else None
            # every setting has been checked: from here on the run directory changes
            started = True
            if not spawned:
                if not resume:
                    _make_run_dir(out)
                    created = True
                    lock = RunLock(out).acquire()
                (out / CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
            if info.trainable:
                rows_per_step = _fit(config, data, model, out, saved is not None, trainer, compile_forward)
                if interrupts.signum is not None:
                    raise Interrupted("interrupted", interrupts.signum)
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
            return finish(config, data, model, out, steps, tokens_seen, clock.train_s, compile_forward)
    except BaseException as e:
        removed = created and not (out / CHECKPOINT).is_file()
        if removed:  # nothing was saved: leave no directory that neither --out nor --resume would take
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(e, (Interrupted, OSError)):
            raise _explain(e, config, out, removed if started else None) from None
        if removed and isinstance(e, ZooError):  # the same kind of error (a Diverged stays one), with what happened
            raise type(e)(f"{e}; nothing had been saved, so {out} was removed") from None
        raise
    finally:
        if lock is not None:
            lock.release()


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
        if RunConfig.from_dict(metrics["config"]).to_dict() != config.to_dict():  # older runs lack newer options: their defaults
            raise ZooError(f"{out} holds a finished run with a different config; retrain it with --force or choose another directory")
        return metrics, True
    if force or (out.exists() and not (out / CHECKPOINT).is_file()):
        shutil.rmtree(out, ignore_errors=True)  # nothing worth resuming
    return train(config, out, resume=(out / CHECKPOINT).is_file(), quiet=quiet), False


def _explain(e: BaseException, config: RunConfig, out: Path, removed: bool | None) -> BaseException:
    """An interruption or an OSError of a run, in one line that says what is left and how to go on
    (``removed`` None: it came before the run directory was touched, so nothing is left to say)."""
    if removed is None:
        left = "nothing was written"
    elif removed:
        left = f"nothing had been saved, so {out} was removed"
    elif (out / CHECKPOINT).is_file():
        step = read_checkpoint(out / CHECKPOINT).get("global_step", 0)
        left = f"{'at' if isinstance(e, Interrupted) else 'checkpoint kept at'} step {step}; continue with `zoo train {config.rung} --resume {out}`"
    else:
        left = f"no checkpoint yet; start again with `zoo train {config.rung} --resume {out}`"
    if isinstance(e, Interrupted):
        return Interrupted(f"interrupted {left}" if left.startswith("at ") else f"interrupted; {left}", e.signum)
    where = f": {e.filename}" if e.filename else ""
    return ZooError(f"{e.strerror or e}{where}; {left}")


def _make_trainer(config, out, callbacks, quiet):
    """The Lightning Trainer of a run, built before the run directory exists: Lightning is the judge of
    accelerator, devices, strategy and precision, and its refusals become one line."""
    t = config.trainer
    try:
        return L.Trainer(
            max_steps=t.max_steps, max_epochs=-1,
            accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, num_nodes=t.num_nodes, precision=t.precision,
            val_check_interval=t.val_every, check_val_every_n_epoch=None, limit_val_batches=t.val_batches,
            num_sanity_val_steps=0, log_every_n_steps=min(50, t.val_every),
            logger=loggers(config, out), enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=t.progress_bar and not quiet,
            callbacks=[AtomicCheckpoint(out / CHECKPOINT, t.checkpoint_every, t.keep_every), *callbacks]
            + ([progress_bar()] if t.progress_bar and not quiet else []),
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as e:
        raise ZooError(f"--trainer settings refused by Lightning: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (its class name if it has none), for a one-line error."""
    text = str(e).strip()
    return text.splitlines()[0] if text else e.__class__.__name__


@contextlib.contextmanager
def compiled_fit(on_cpu: bool):
    """The settings a compiled fit runs under, restored afterwards.

    * Deterministic algorithms, on a CPU: Inductor's multi-threaded CPU kernels otherwise accumulated some
      gradients (the embedding's) in an order that varied from run to run — the same seed gave val
      2.6977-2.7083 bpc at 600 steps on 2 threads; deterministic kernels gave one number, the one-thread
      number, at the same speed (issue 18's notes). Not on a GPU, where cuBLAS would refuse without
      CUBLAS_WORKSPACE_CONFIG; warn_only: an op without a deterministic kernel warns rather than stopping.
    * Dropout draws its masks from eager's generator (``fallback_random``), the one on_train_batch_start
      reseeds every step, so a compiled forward drops the units an eager one would, and not from Inductor's
      in-kernel random numbers, with which a book-size gpt step with dropout 0.1 was 1.4x slower than eager
      on a CPU (300 steps, one thread: 11.5k against 16.0k tokens/s;
      benchmarks/results/gpt_dropout_compile_inductor_random_cpu.json); with eager's generator it is faster
      than eager (benchmarks/results/gpt_dropout_compile_cpu.json).
    """
    import torch._inductor.config as inductor_config

    was_deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if on_cpu:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with inductor_config.patch(fallback_random=True):
            yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic[0], warn_only=was_deterministic[1])


def _fit(config, data, model, out, from_checkpoint, trainer, compile_forward=False):
    t = config.trainer
    module = LanguageModel(model, config.optim, t.max_steps, config.seed, meta=_meta(config, data), compile=compile_forward)
    try:
        with compiled_fit(_on_cpu(config)) if compile_forward else contextlib.nullcontext():
            trainer.fit(module, datamodule=data, ckpt_path=str(out / CHECKPOINT) if from_checkpoint else None, weights_only=True)
    except SIGTERMException:  # Lightning ends fit with SystemExit(None), i.e. exit 0, after Interrupts saved the step
        raise Interrupted("interrupted", signal.SIGTERM) from None
    except torch._dynamo.exc.BackendCompilerFailed as e:  # only with --trainer.compile: Inductor could not build a kernel
        raise ZooError(f"torch.compile failed ({_first_line(e)}); train with --trainer.compile off") from None
    return config.data.batch_size * trainer.world_size


def _count(config, data, model, out, clock):
    """Count-based rungs: one pass of counting over the train split, saved like any checkpoint."""
    start = time.perf_counter()
    model.fit(data.splits["train"])
    clock.train_s = time.perf_counter() - start
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    checkpoint = {"state_dict": state, "zoo": _meta(config, data), "global_step": 1, "callbacks": {"TrainClock": clock.state_dict()}}
    tmp = out / CHECKPOINT.with_suffix(".tmp")
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, out / CHECKPOINT)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return 1


def finish(config: RunConfig, data: TextDataModule, model, out: Path, steps: int, tokens_seen: int, train_s: float,
           compiled: bool = False) -> dict:
    """Score val and test by the protocol, write samples.txt and metrics.json."""
    model = model.cpu() if config.trainer.accelerator == "cpu" else model
    block = config.data.block_size
    val, test = (score(model, data.splits[s], block) for s in ("val", "test"))
    text = sample(model, data.tokenizer, default_prompt(data.tokenizer), SAMPLE_TOKENS, seed=config.seed, block_size=block)
    _write_atomic(out / "samples.txt", text)
    params, embedding = count_params(model), count_embedding_params(model)
    metrics = {
        "rung": config.rung,
        "preset": config.preset,
        "val": val,
        "test": test,
        "params": params,
        "params_embedding": embedding,
        "params_non_embedding": params - embedding,
        "stored": count_stored(model),  # a counting rung has no parameters, but it does store numbers
        "steps": steps,
        "tokens_seen": tokens_seen,
        "wall_s": round(train_s, 3),
        "tokens_per_s": round(tokens_seen / train_s, 1) if train_s > 0 else None,
        "compiled": compiled,  # whether the training forward ran under torch.compile (--trainer.compile decides)
        "seed": config.seed,
        "corpus": {"name": config.data.corpus, "sha256": data.corpus.sha256, "vocab_size": data.vocab_size},
        "splits": data.split_sizes(),
        "corruption": data.corruption,  # what --data.noise replaced in the train split ({"kind": "none"}: nothing)
        "selection": data.selection,  # which windows --data.select kept ({"rule": "none"}: all)
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
    meta = checkpoint["zoo"]
    if not isinstance(meta, dict) or not isinstance(meta.get("vocab"), str) or not meta["vocab"] or "rung" not in meta:
        raise ZooError(f"checkpoint {path} is not a complete zoo checkpoint (no vocabulary or rung in its zoo metadata)")
    return checkpoint


def _model_state(checkpoint: dict) -> dict:
    """The rung's own state_dict out of a checkpoint (the harness stores it under 'model.')."""
    return {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ZooError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(values, dict):  # a plain string, a list, an empty file: yaml loads them all
            raise ZooError(f"{path} is not a valid run config (a YAML mapping of settings is expected)")
        return RunConfig.from_dict(values)
    except (yaml.YAMLError, TypeError, ValueError) as e:
        raise ZooError(f"{path} is not a valid run config ({e.__class__.__name__})") from None


@dataclasses.dataclass
class Run:
    dir: Path
    config: RunConfig
    model: torch.nn.Module
    tokenizer: CharTokenizer


def kept_checkpoints(run_dir: str | os.PathLike) -> dict[int, Path]:
    """{step: path} of the checkpoints a run kept along training (``--trainer.keep_every``), in step order."""
    found = {}
    for path in (Path(run_dir) / CHECKPOINT).parent.glob("step-*.ckpt"):
        step = path.stem.removeprefix("step-")
        if step.isdigit():
            found[int(step)] = path
    return dict(sorted(found.items()))


def load_run(run_dir: str | os.PathLike, step: int | None = None) -> Run:
    """The trained model of a run directory, its config and its tokenizer (vocabulary from the checkpoint);
    with ``step``, the weights of the checkpoint the run kept at that step instead of its last ones."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ZooError(f"run directory not found: {run_dir}")
    config = read_config(run_dir)
    if step is not None:
        kept = kept_checkpoints(run_dir)
        if step not in kept:
            have = ", ".join(map(str, kept)) or "none (train with --trainer.keep_every N to keep some)"
            raise ZooError(f"{run_dir} kept no checkpoint at step {step} (kept: {have})")
        path = kept[step]
    else:
        path = run_dir / CHECKPOINT
    if not path.is_file():
        raise ZooError(f"{run_dir} has no checkpoint yet (its training is still starting, or stopped before its first save)")
    checkpoint = read_checkpoint(path)
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
