"""LanguageModel: the one LightningModule that trains every trainable rung.

It never names a rung. It gets a model from the registry and does what every rung needs: next-token
cross-entropy, AdamW (or Adam) with weight decay on matrices only, warmup then a decay schedule,
gradient clipping, a quick validation estimate, and — for stateful rungs — truncated backpropagation
through time. The loop is written with manual optimisation so that it reads like the textbook loop
(forward, loss, backward, clip, step) and is the same loop for windowed and stateful rungs.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics import SumMetric

from zoo.config import OptimConfig
from zoo.errors import Diverged, ZooError


def lr_factor(schedule: str, step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (1-based)."""
    warmup = max(1, warmup_steps)
    if schedule == "inverse_sqrt":  # Vaswani et al. 2017 eq. (3), with lr = d_model^-0.5 * warmup^-0.5
        return min(step / warmup, math.sqrt(warmup / step))
    if step <= warmup:
        return step / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    if schedule == "cosine":  # Loshchilov & Hutter 2017, decaying once to min_lr_ratio * lr
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":  # a straight line from lr down to min_lr_ratio * lr
        return 1.0 - (1 - min_lr_ratio) * progress
    raise ZooError(f"unknown schedule {schedule!r} (valid: {', '.join(SCHEDULES)})")


SCHEDULES = ("cosine", "linear", "constant", "inverse_sqrt")


# --8<-- [start:detach_state]
def detach_state(state):
    """Cut the graph between TBPTT chunks, keeping the values: the state carries, the gradient does not."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)
# --8<-- [end:detach_state]


OPTIMIZERS = ("adamw", "adam", "muon")


# --8<-- [start:muon_split]
def muon_split(model: torch.nn.Module) -> tuple[list, list]:
    """(hidden matrices, everything else): what Muon updates and what AdamW updates alongside it.

    Muon (Jordan et al. 2024) orthogonalises the momentum of a weight *matrix* that maps one hidden space
    to another: q, k, v, the attention output, the MLP's, a recurrent matrix. Embedding tables (rows
    looked up one at a time) and the output projection to the vocabulary are not such maps, and vectors
    (gains, biases) are not matrices; those stay with AdamW, as in the Muon recipe."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    tables = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    heads = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == vocab}
    params = [p for p in model.parameters() if p.requires_grad]
    hidden = [p for p in params if p.dim() == 2 and id(p) not in tables | heads]
    return hidden, [p for p in params if all(p is not h for h in hidden)]
# --8<-- [end:muon_split]


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, 0x5EED]).generate_state(1)[0])


class LanguageModel(L.LightningModule):
    """Wraps a rung: ``model(idx) -> logits`` (or ``model(idx, state) -> (logits, state)`` if stateful)."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig, max_steps: int, seed: int = 0, meta: dict | None = None,
                 compile: bool = False):
        super().__init__()
        self.model = model
        # the training steps' forward compiled by torch.compile when asked: a function, not a module, so the
        # state_dict keeps its keys; validation and scoring stay eager (other shapes, no gradient: a compiled
        # graph each, for a handful of calls)
        self.compiled_forward = torch.compile(model.forward) if compile else None
        self.optim = optim
        self.max_steps, self.seed = max_steps, seed
        self.meta = meta or {}  # rung, vocabulary and run config: travels in every checkpoint
        self.stateful = getattr(model, "stateful", False)
        self.state = None  # the hidden state carried between TBPTT chunks
        self.last_train_loss = None  # the latest step's loss (logged to metrics.csv every log_every_n_steps only)
        self.automatic_optimization = False
        self.val_nats = SumMetric().set_dtype(torch.float64)
        self.val_tokens = SumMetric().set_dtype(torch.float64)

    def forward(self, idx, state=None):
        if self.stateful:
            return self.model(idx, state)
        return self.model(idx), None

    # ------------------------------------------------------------------------------------ training
    def on_train_batch_start(self, batch, batch_idx):
        # Randomness (dropout) is a pure function of (seed, step, rank), like the batches, so a
        # resumed run draws exactly the dropout masks the uninterrupted run would have drawn.
        seed = step_seed(self.seed, self.global_step, self.global_rank)
        if self.device.type == "cpu":
            # the generator CPU dropout draws from; torch.manual_seed would also queue a seed for every
            # accelerator backend not yet initialised, capturing a stack trace each time (~1 ms a step)
            torch.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)

    # --8<-- [start:training_step]
    def training_step(self, batch, batch_idx):
        if self.stateful:
            x, y, reset = batch
            state = None if bool(reset) else self.state
        else:
            (x, y), state = batch, None
        model = self.compiled_forward or self.model
        logits, state = model(x, state) if self.stateful else (model(x), None)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), label_smoothing=self.optim.label_smoothing)
        if not torch.isfinite(loss):
            raise Diverged(f"loss became {loss.item()} at step {self.global_step}; try a lower --optim.lr (now {self.optim.lr:g}) or a smaller --optim.grad_clip")
        optimizers, schedulers = self.optimizers(), self.lr_schedulers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]  # Muon runs two: Muon and AdamW
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.optim.grad_clip > 0:  # one global norm over every parameter
            # torch's clip, which is what Lightning's clip_gradients calls, over the parameters in the same order (the
            # optimiser's groups), so the same sum; Lightning's own refuses a fused optimiser (it assumes AMP unscaling)
            params = [p for g in optimizers[0].param_groups for p in g["params"]] if len(optimizers) == 1 else list(self.model.parameters())
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.optim.grad_clip)
        optimizers[0].step()  # through Lightning, which counts one global step per LightningOptimizer.step ...
        for extra in optimizers[1:]:
            extra.optimizer.step()  # ... so Muon's AdamW partner steps its torch optimizer directly: one step, one count
        for scheduler in schedulers:
            scheduler.step()
        scheduler = schedulers[-1]
        if self.stateful:
            self.state = detach_state(state)
        self.last_train_loss = loss.detach()  # what the progress bar and lines show, every step
        if self.global_step % self.trainer.log_every_n_steps == 0:  # only the steps Lightning writes to the logs:
            self.log("train_loss", loss.detach(), prog_bar=True)  # a self.log call costs ~0.8 ms, 2 % of a small step
            self.log("lr", scheduler.get_last_lr()[0])
        return loss
    # --8<-- [end:training_step]

    # ---------------------------------------------------------------------------------- validation
    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits, _ = self(x)  # (B, T, V); stateful rungs start each window from a zero state here
        self.val_nats.update(F.cross_entropy(logits.double().flatten(0, 1), y.flatten(), reduction="sum"))
        self.val_tokens.update(torch.tensor(float(y.numel()), dtype=torch.float64))

    def on_validation_epoch_end(self):
        nats = self.val_nats.compute() / self.val_tokens.compute()
        self.log("val_nats", nats.float(), prog_bar=True)
        self.log("val_bpc", (nats / math.log(2)).float())
        self.val_nats.reset()
        self.val_tokens.reset()

    # ----------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self):
        o = self.optim
        if o.optimizer not in OPTIMIZERS:
            raise ZooError(f"unknown optimizer {o.optimizer!r} (valid: {', '.join(OPTIMIZERS)})")
        lr_factor(o.schedule, 1, o.warmup_steps, self.max_steps, o.min_lr_ratio)  # reject an unknown schedule now
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizers = []
        try:
            # --8<-- [start:muon]
            if o.optimizer == "muon":
                # Muon for hidden matrices, scaled to match AdamW's update RMS (Liu et al. 2025, "Muon is
                # scalable"), so that the run's lr and weight decay carry over; AdamW for the rest.
                hidden, params = muon_split(self.model)
                if hidden:
                    optimizers.append(torch.optim.Muon(hidden, lr=o.lr, weight_decay=o.weight_decay, adjust_lr_fn="match_rms_adamw"))
            # --8<-- [end:muon]
            groups = [  # decay matrices and embeddings; never biases, gains or other vectors
                {"params": [p for p in params if p.dim() >= 2], "weight_decay": o.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ]
            # fused (the default): the whole update as one kernel, ~1.06x a compiled gpt step on CPU, its val bpc
            # within the seed spread of foreach's (benchmarks/results/nanogpt_cpu_fused_quality.json). foreach
            # (optim.fused false): one kernel per operation over all tensors, rather than torch's Python loop over
            # tensors on CPU, which cost ~7% of a gpt step.
            kind = torch.optim.Adam if o.optimizer == "adam" else torch.optim.AdamW
            optimizers.append(kind(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                   foreach=None if o.fused else True, fused=True if o.fused else None))
        except ValueError as e:  # torch's own checks of lr, betas, eps, weight_decay: one line, not a traceback
            raise ZooError(f"--optim settings refused by torch: {e}") from None
        schedule = lambda i: lr_factor(o.schedule, i + 1, o.warmup_steps, self.max_steps, o.min_lr_ratio)  # noqa: E731
        configured = [{"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule), "interval": "step"}}
                      for opt in optimizers]
        return configured[0] if len(configured) == 1 else configured

    # ---------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint):
        checkpoint["zoo"] = self.meta
        checkpoint["tbptt_state"] = self.state

    def on_load_checkpoint(self, checkpoint):
        self.state = checkpoint.get("tbptt_state")
