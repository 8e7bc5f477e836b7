"""Named activation points: read, or replace, what flows through a model, by a stable name.

In the spirit of TransformerLens's hook points (Nanda & Bloom 2022), without the dependency. A
``HookPoint`` is an identity module placed where a tensor worth naming flows; its name is its module
name (``resid.2``), so analysis code addresses the same point on every rung that has one, and PyTorch's
own forward hooks do the reading and the replacing. Hook points hold no parameters: a checkpoint is
the same with or without them, and a model with no hook attached computes exactly what it did before.

The residual stream is the one named here for every rung that has one (``mlp-mixer``,
``set-transformer``, ``vaswani``, ``gpt`` and rungs users add). Such a rung declares it with

    self.resid = ResidualStream(config.n_layer)            # in __init__: resid.0 .. resid.N
    x = self.resid[0](embedding)                           # in forward: the stream entering block 1
    for block, point in zip(self.blocks, self.resid[1:]):
        x = point(block(x))                                # resid.i: the stream leaving block i
    return self.unembed(x)                                 # unembed(x): the read-out, (B, T, C) -> (B, T, V)

``resid.0`` is the embedding as the first block receives it (positions added, where the rung adds
them), ``resid.i`` the stream after block i, and ``unembed`` everything between the last block and the
logits (a final norm, the output projection). The logit lens (``zoo.lens``) applies ``unembed`` to every
``resid.i``; the conformance suite checks the contract on every rung that declares it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from zoo.errors import ZooError


class HookPoint(nn.Identity):
    """An identity module at a named activation point. Forward hooks on it read the tensor (``capture``)
    or replace it (``patch``); without a hook it returns its input unchanged."""


class ResidualStream(nn.ModuleList):
    """The hook points ``resid.0`` (the stream entering the first block) to ``resid.N`` (leaving the
    last of N blocks). ``len(stream) == n_layer + 1``."""

    def __init__(self, n_layer: int | list[HookPoint]):
        # a list: ModuleList's slicing (``self.resid[1:]``) builds the slice through the constructor
        super().__init__(n_layer if isinstance(n_layer, list) else [HookPoint() for _ in range(n_layer + 1)])


class NoResidualStream(ZooError):
    pass


def residual_stream(model: nn.Module) -> ResidualStream | None:
    """The model's residual stream, or None if the rung does not declare one (``resid`` and ``unembed``)."""
    stream = getattr(model, "resid", None)
    return stream if isinstance(stream, ResidualStream) and callable(getattr(model, "unembed", None)) else None


def require_residual_stream(model: nn.Module, rung: str) -> ResidualStream:
    """The residual stream, or one clear line saying the rung has none (and which rungs do)."""
    stream = residual_stream(model)
    if stream is None:
        from zoo import registry

        having = [n for n in registry.names() if residual_stream_declared(registry.get(n).cls)]
        raise NoResidualStream(f"rung {rung!r} has no residual stream to read (no zoo.hooks.ResidualStream and unembed); "
                               f"rungs with one: {', '.join(having)}")
    return stream


def residual_stream_declared(cls: type) -> bool:
    """Whether a rung class declares a residual stream (an ``unembed`` method; ``resid`` is set in __init__)."""
    return callable(getattr(cls, "unembed", None))


def hook_names(model: nn.Module) -> list[str]:
    """Every hook point's name, in the order the modules were registered."""
    return [name for name, module in model.named_modules() if isinstance(module, HookPoint)]


def _points(model: nn.Module, names) -> dict[str, HookPoint]:
    points = {name: module for name, module in model.named_modules() if isinstance(module, HookPoint)}
    unknown = [n for n in names if n not in points]
    if unknown:
        raise ZooError(f"no hook point named {', '.join(map(repr, unknown))} (this model has: {', '.join(points) or 'none'})")
    return {n: points[n] for n in names}


@contextmanager
def capture(model: nn.Module, names: list[str] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the block, every forward pass stores the tensors at ``names`` (default: every hook point)
    in the yielded dict, name -> tensor (the last pass's). The hooks are removed on leaving."""
    names = hook_names(model) if names is None else list(names)
    store: dict[str, torch.Tensor] = {}
    handles = [point.register_forward_hook(lambda m, args, out, n=n: store.__setitem__(n, out))
               for n, point in _points(model, names).items()]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patch(model: nn.Module, edits: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> Iterator[None]:
    """Inside the block, the tensor at each named point is replaced by ``edits[name](tensor)`` on its way
    on (e.g. ``lambda x: torch.zeros_like(x)`` to ablate it). The hooks are removed on leaving."""
    handles = [point.register_forward_hook(lambda m, args, out, f=edits[n]: f(out)) for n, point in _points(model, edits).items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
