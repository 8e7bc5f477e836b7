"""Bound a run's memory before its model is built: an estimate per rung, a limit tied to the machine.

Without a bound, a text with 40,000 distinct characters made ``bigram`` allocate a 6.4 GB V×V table and
``ngram --model.order 100`` used 4.5 GB, until the machine swapped or the kernel killed the process.
``check_memory`` refuses such a run with one line, before anything is allocated or written.

The estimate, in bytes, never names a rung:

* a rung that counts (or any rung that knows better) provides a classmethod
  ``estimate_memory(config, train_tokens) -> (bytes, what sets it)``, e.g. the n-gram's count tables;
* any other rung is built on PyTorch's ``meta`` device (shapes, no storage): its parameters count four
  times (weights, gradients, and AdamW's two moments) and its buffers once;
* plus the logits of one batch of evaluation windows (64 × block_size × V), which at a large
  vocabulary outweigh a small model: float32 logits, their float64 copy and log-softmax in scoring.

The limit is 80 % of the memory the machine has available (``MemAvailable`` in /proc/meminfo, else what
``os.sysconf`` reports), or ``ZOO_MAX_MEMORY_GB`` when that is set (``inf`` turns the check off).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from zoo import registry
from zoo.errors import ZooError

GB = 1e9
LIMIT_ENV = "ZOO_MAX_MEMORY_GB"
AVAILABLE_FRACTION = 0.8  # leave room for Python, the data, and whatever else the machine runs
SCORE_BATCH = 64  # windows per batch in zoo.evaluate.score
BYTES_PER_LOGIT = 24  # float32 logits + their float64 copy + the float64 log-softmax of the loss
OPTIMISER_COPIES = 4  # a trained parameter: weights, gradients, and Adam(W)'s first and second moments


def size(n: float) -> str:
    """Bytes for a human: 820 MB, 6.4 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def available_bytes() -> int | None:
    """Memory the machine can give a new process now, or None where nothing says."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # free pages, else all of them (macOS has only these)
        try:
            return os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            continue
    return None


def memory_limit() -> tuple[float | None, str]:
    """(bytes, how the limit was set); None bytes: nothing to bound by."""
    value = os.environ.get(LIMIT_ENV, "").strip()
    if value:
        try:
            gb = float(value)
        except ValueError:
            gb = float("nan")
        if not gb > 0:
            raise ZooError(f"{LIMIT_ENV} must be a positive number of gigabytes (inf: no limit), got {value!r}")
        return gb * GB, f"{LIMIT_ENV}={value}"
    available = available_bytes()
    if available is None:
        return None, "unknown"
    return AVAILABLE_FRACTION * available, f"{AVAILABLE_FRACTION:.0%} of the {size(available)} available"


def _set_by(shape: tuple[int, ...], config, vocab_size: int) -> list[str]:
    """The options a tensor's dimensions come from: the vocabulary, or a Config field of that value."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    found = []
    for dim in shape:
        if dim == vocab_size:
            found.append(f"the vocabulary ({vocab_size} distinct characters in --data)")
        for name, value in fields.items():
            if name != "vocab_size" and type(value) is int and value == dim and value > 1:
                found.append("--data.block_size" if name == "block_size" else f"--model.{name}")
    return list(dict.fromkeys(found))


def _model_estimate(rung: str, model_options: dict, vocab_size: int, block_size: int,
                    train_tokens: int) -> tuple[int, str] | None:
    cls = registry.get(rung).cls
    config = registry.model_config(rung, vocab_size, block_size, **model_options)
    own = getattr(cls, "estimate_memory", None)
    if own is not None:
        return own(config, train_tokens)
    try:  # impossible hyperparameters are the registry's one-line error, as for a real build
        with torch.device("meta"):  # shapes without storage: a 6.4 GB table costs nothing to build here
            model = registry.build(rung, vocab_size, block_size, **model_options)
    except (RuntimeError, NotImplementedError):
        return None  # a rung that cannot be built without data (an op with no meta kernel): not bounded here
    trainable = getattr(cls, "trainable", True)
    tensors = [(name, p, OPTIMISER_COPIES if trainable and p.requires_grad else 1) for name, p in model.named_parameters()]
    tensors += [(name, b, 1) for name, b in model.named_buffers()]
    if not tensors:
        return 0, "no tensors"
    total = sum(t.numel() * t.element_size() * copies for _, t, copies in tensors)
    name, largest, _ = max(tensors, key=lambda item: item[1].numel() * item[1].element_size())
    shape = tuple(largest.shape)
    what = f"its largest tensor, {name}, is {' × '.join(map(str, shape))}"
    set_by = _set_by(shape, config, vocab_size)
    return total, what + (f", set by {' and '.join(set_by)}" if set_by else "")


def estimate(rung: str, model_options: dict, vocab_size: int, block_size: int, batch_size: int,
             train_tokens: int) -> tuple[int, str] | None:
    """(bytes, what dominates) for training and scoring ``rung``; None if it cannot be estimated."""
    model = _model_estimate(rung, model_options, vocab_size, block_size, train_tokens)
    if model is None:
        return None
    model_bytes, what = model
    rows = max(SCORE_BATCH, batch_size)
    logits = rows * block_size * vocab_size * BYTES_PER_LOGIT
    if logits > model_bytes:
        what = (f"the logits of one batch are {rows} × {block_size} × {vocab_size}, set by --data.block_size "
                f"and the vocabulary ({vocab_size} distinct characters in --data)")
    return model_bytes + logits, what


def check_memory(config, vocab_size: int, train_tokens: int) -> None:
    """Refuse, with one line, a run whose model would not fit in the memory limit (before it is built)."""
    limit, how = memory_limit()
    if limit is None or limit == float("inf"):
        return
    d = config.data
    found = estimate(config.rung, config.model, vocab_size, d.block_size, d.batch_size, train_tokens)
    if found is None or found[0] <= limit:
        return
    need, what = found
    raise ZooError(f"{config.rung} would need about {size(need)} of memory, over the limit of {size(limit)} ({how}): "
                   f"{what}. Make it smaller, or set {LIMIT_ENV} to allow more")
