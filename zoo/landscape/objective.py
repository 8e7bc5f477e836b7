"""The training loss as a function of one flat parameter vector, on a fixed batch of training windows.

    L(θ) = −(1 / B·T) Σ_{b,t} log p_θ(y_{b,t} | x_{b,≤t})          (nats per character)

θ is every trainable parameter of the rung, flattened and concatenated in ``named_parameters()`` order
(tied parameters once). The model is evaluated with ``torch.func.functional_call``: θ's pieces stand in
for the module's parameters for one call, so nothing here ever writes to the run's weights, and
``θ* = objective.flat()`` is a copy. The model is in eval mode (no dropout): the landscape of the
deterministic loss. Stateful rungs run each window from a zero state, as validation does.

Second derivatives: ``second_order()`` routes attention through PyTorch's math kernel, because the fused
CPU kernel (flash attention) has no double backward; ``hvp`` uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.nn.functional as F
from torch.func import functional_call

from zoo.data import load_splits, window_batch
from zoo.errors import ZooError
from zoo.runs import Run

BATCH_SEED = 0x1A5D  # the fixed batch's own seed: the same windows for every run of a corpus and block size


@contextlib.contextmanager
def second_order():
    """Kernels whose backward is itself differentiable: the math attention backend, not flash attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


@dataclasses.dataclass
class Objective:
    model: torch.nn.Module
    x: torch.Tensor  # (B, T) inputs
    y: torch.Tensor  # (B, T) targets
    names: list[str]
    shapes: list[torch.Size]

    @classmethod
    def of(cls, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Objective:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # tied parameters appear once
        if not params:
            raise ZooError(f"{type(model).__name__} has no trainable parameters: its loss has no landscape (a counted rung?)")
        model.eval()
        return cls(model, x, y, [n for n, _ in params], [p.shape for _, p in params])

    @property
    def dim(self) -> int:
        return sum(s.numel() for s in self.shapes)

    def flat(self) -> torch.Tensor:
        """The model's own weights as one vector: a copy, detached."""
        named = dict(self.model.named_parameters())
        return torch.cat([named[n].detach().reshape(-1) for n in self.names]).clone()

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """θ cut back into {name: tensor of that parameter's shape} (views of θ, so gradients reach θ)."""
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes):
            n = shape.numel()
            out[name] = theta[i:i + n].view(shape)
            i += n
        return out

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.model, "stateful", False):
            logits, _ = functional_call(self.model, self.unflatten(theta), (x, None))
        else:
            logits = functional_call(self.model, self.unflatten(theta), (x,))
        return logits  # (B, T, V)

    def loss(self, theta: torch.Tensor, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy in nats at θ, on the fixed batch (or on the batch given)."""
        x, y = (self.x, self.y) if x is None else (x, y)
        return F.cross_entropy(self.logits(theta, x).flatten(0, 1), y.flatten())

    def grad(self, theta: torch.Tensor, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
        """(L(θ), ∇L(θ)) on the fixed batch (or the batch given)."""
        theta = theta.detach().requires_grad_(True)
        loss = self.loss(theta, x, y)
        (g,) = torch.autograd.grad(loss, theta)
        return loss.item(), g

    # --8<-- [start:hvp]
    def hvp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """H v, H = ∇²L(θ) on the fixed batch, by double backward (Pearlmutter 1994): ∇_θ (∇_θ L · v)."""
        theta = theta.detach().requires_grad_(True)
        with second_order():
            (g,) = torch.autograd.grad(self.loss(theta), theta, create_graph=True)
            (hv,) = torch.autograd.grad(g @ v, theta)
        return hv
    # --8<-- [end:hvp]


def fixed_batch(tokens: torch.Tensor, block_size: int, batch_size: int, seed: int = BATCH_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` training windows of ``block_size`` characters, the same for a given seed."""
    return window_batch(tokens, block_size, batch_size, seed, step=0)


def run_objective(run: Run, batch_size: int, block_size: int | None = None, split: str = "train") -> Objective:
    """The objective of a loaded run on a fixed batch of its own corpus's ``split`` (default: training windows)."""
    tokenizer, splits = load_splits(run.config.data.corpus)
    if tokenizer.vocab != run.tokenizer.vocab:
        raise ZooError(f"{run.dir} was trained on another vocabulary than {run.config.data.corpus!r} has now")
    T = block_size or run.config.data.block_size
    x, y = fixed_batch(splits[split], T, batch_size)
    return Objective.of(run.model, x, y)
