"""The run configuration: four small dataclasses, one per concern, and how presets fold into them.

A run is fully described by ``RunConfig``: which rung, which preset, the seed, and the
``model`` / ``data`` / ``optim`` / ``trainer`` sections. The same dict is what ``--print_config``
shows, what ``config.yaml`` in a run directory holds, and what a checkpoint carries, so a run can be
repeated from its own ``config.yaml`` with ``zoo train RUNG --config run/config.yaml``.

Precedence, lowest first: the dataclass defaults below, the rung's preset, a ``--config`` file, then
dotted command-line flags (``--model.n_embd 64``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from zoo.errors import ZooError

DEFAULT_CORPUS = "pydoc"  # the embedded corpus: ships inside every CPython, no download
DEFAULT_PRESET = "quick"  # what `zoo train RUNG` and `zoo ladder` use unless told otherwise
BOOK_PRESET = "book"  # the ladder-wide budget the book's chapters train at
REQUIRED_PRESETS = (DEFAULT_PRESET, BOOK_PRESET)  # every rung defines both


@dataclass
class DataConfig:
    corpus: str = DEFAULT_CORPUS  # a corpus name (pydoc, tinyshakespeare, copy:D) or a path to a UTF-8 text file
    block_size: int = 64  # tokens per training window; for stateful rungs the TBPTT chunk length k
    batch_size: int = 32  # windows (or parallel streams) per step, per device
    noise: str = "none"  # replace part of the train split: random, duplicates or corpus:NAME (zoo.corruption); val/test never
    noise_fraction: float = 0.0  # the share of the train split's spans replaced
    noise_span: int = 0  # characters per replaced span (0: block_size)
    select: str = "none"  # score training windows and never draw the worst: ngram:K (zoo.selection)
    select_drop: float = 0.0  # the share of worst-scored windows dropped


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # "adamw" (decoupled weight decay), "adam" (Vaswani et al.), or "muon" (Muon for hidden matrices, AdamW for the rest)
    lr: Optional[float] = 3e-3  # peak learning rate; None: the rung's own rule (its peak_lr, e.g. the Vaswani formula)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    weight_decay: float = 0.1  # applied to tensors with >= 2 dimensions only (matrices, embeddings)
    schedule: str = "cosine"  # "cosine" or "linear" (warmup, then down to a floor), "constant" (after warmup), "inverse_sqrt"
    warmup_steps: int = 100  # linear warmup from lr / warmup_steps to lr
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    label_smoothing: float = 0.0  # cross-entropy label smoothing (training loss only; eval never smooths)
    fused: bool = True  # one fused kernel for the Adam/AdamW update (~1.06x a gpt step on CPU); false: foreach kernels


@dataclass
class TrainerConfig:
    max_steps: int = 1000  # optimiser steps; also the length of the cosine schedule
    val_every: int = 250  # steps between quick validation estimates (logged to metrics.csv)
    val_batches: int = 8  # batches of non-overlapping val windows per quick estimate
    checkpoint_every: int = 250  # steps between atomic saves of checkpoints/last.ckpt
    keep_every: int = 0  # also keep checkpoints/step-NNNNNN.ckpt every this many steps, and at step 0 (0: keep none)
    accelerator: str = "cpu"  # Lightning accelerator: cpu, gpu, auto, ...
    devices: Any = 1  # Lightning devices: an int, a list, or "auto"
    strategy: str = "auto"  # Lightning strategy, e.g. "ddp" to shard batches across processes
    num_nodes: int = 1
    precision: str = "auto"  # Lightning precision ("32-true", "bf16-mixed", ...); "auto": see zoo.runs.auto_precision
    progress_bar: bool = True
    threads: int = 0  # torch intra-op threads; 0: zoo train/ladder/sweep take one per core no other process keeps busy
    # (zoo.parallel.free_threads; OMP_NUM_THREADS wins), the Python API keeps the caller's setting, a resume its own
    compile: str = "auto"  # "auto": torch.compile the training forward of a rung that declares compile_pays, in runs of
    # at least 1,000 steps, where a C++ compiler is found (zoo.runs.compiles); "on": always; "off": eager
    logger: str = "csv"  # "csv" (logs/, what zoo and the book read) or "tensorboard" (csv and tensorboard/)


SECTIONS = {"data": DataConfig, "optim": OptimConfig, "trainer": TrainerConfig}


@dataclass
class RunConfig:
    rung: str
    preset: str = DEFAULT_PRESET
    seed: int = 0
    model: dict = field(default_factory=dict)  # the rung's own Config fields (vocab_size excluded)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ZooError(f"unknown run-config keys: {', '.join(sorted(unknown))}")
        for key, section in SECTIONS.items():
            if key in d and not isinstance(d[key], section):
                d[key] = make_section(section, d[key] or {}, key)
        return cls(**d)


def make_section(cls, values: dict, where: str):
    """Build a section dataclass, naming any key it does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ZooError(f"unknown {where} option(s): {', '.join(sorted(unknown))} (valid: {', '.join(sorted(names))})")
    return cls(**values)


def deep_merge(base: dict, over: dict) -> dict:
    """Nested dict merge: values in ``over`` win; dicts merge key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
