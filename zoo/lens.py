"""The logit lens and the tuned lens: what each layer of a trained model would predict if it stopped there.

Both read the residual stream h_ℓ (``zoo.hooks``: ``resid.0`` the embedding, ``resid.ℓ`` after block ℓ,
``resid.N`` after the last) through the model's own read-out ``unembed`` (final norm and output
projection):

* the logit lens (nostalgebraist, "interpreting GPT: the logit lens", 2020) reads every layer as it is,

      p_ℓ(· | x_≤t) = softmax(unembed(h_ℓ,t)),    ℓ = 0 .. N,   p_N being the model's own prediction;

* the tuned lens (Belrose et al. 2023, "Eliciting Latent Predictions from Transformers with the Tuned
  Lens") first maps each layer by an affine translator of its own, the identity at the start,

      p̃_ℓ = softmax(unembed(A_ℓ h_ℓ + b_ℓ)),    A_ℓ = I + W_ℓ,  W_ℓ = 0 and b_ℓ = 0 at initialisation,

  trained with the model frozen to minimise the KL divergence from the model's final distribution,
  KL(p_N ‖ p̃_ℓ) = Σ_v p_N(v) (log p_N(v) − log p̃_ℓ(v)), averaged over positions of the training split.
  The last layer has no translator: its read-out is the model's. Belrose et al. train with SGD and
  Nesterov momentum on large batches of a large model; at this size Adam on the rung's own batch shape
  does the same job, and what is scored is the trained translators on held-out text.

Every layer's read-out is scored by the evaluation protocol (``zoo.evaluate``: the same windows, every
target once, float64 sums), so the last layer's bpc is ``zoo eval``'s exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from zoo.causality import logits_of
from zoo.evaluate import eval_mode, model_device, window_batches
from zoo.hooks import capture


def layer_names(model: nn.Module) -> list[str]:
    """resid.0 .. resid.N, from the model's residual stream."""
    return [f"resid.{i}" for i in range(len(model.resid))]


# --8<-- [start:tuned]
class TunedLens(nn.Module):
    """One affine translator per layer ℓ < N, h ↦ h + (W_ℓ h + b_ℓ), zero-initialised: the identity, so an
    untrained tuned lens is the logit lens. The last layer passes through unchanged."""

    def __init__(self, n_points: int, width: int):
        super().__init__()
        self.translators = nn.ModuleList(nn.Linear(width, width) for _ in range(n_points - 1))
        for t in self.translators:
            nn.init.zeros_(t.weight)
            nn.init.zeros_(t.bias)

    def forward(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        if layer == len(self.translators):
            return h  # the last layer: the model's own read-out
        return h + self.translators[layer](h)  # (B, T, C)
# --8<-- [end:tuned]


# --8<-- [start:layer_logits]
def layer_logits(model: nn.Module, x: torch.Tensor, lens: TunedLens | None = None) -> torch.Tensor:
    """Each layer's read-out of the windows x (B, T): (L, B, T, V), L = n_layer + 1, the last being the
    model's logits. ``lens`` translates each layer first (the tuned lens); None is the logit lens."""
    names = layer_names(model)
    with capture(model, names) as acts:
        model(x)
    return torch.stack([model.unembed(acts[n] if lens is None else lens(i, acts[n])) for i, n in enumerate(names)])
# --8<-- [end:layer_logits]


def fit_tuned_lens(model: nn.Module, tokens: torch.Tensor, block_size: int, steps: int, batch_size: int = 16,
                   lr: float = 1e-3, seed: int = 0) -> tuple[TunedLens, list[float]]:
    """Train a tuned lens on random windows of ``tokens`` (the training split), the model frozen and in
    eval mode (both restored after). Returns the lens and the loss of every step, Σ_ℓ<N KL(p_N ‖ p̃_ℓ) in
    nats per position."""
    names = layer_names(model)
    device = model_device(model)
    with capture(model, names[:1]) as acts, torch.no_grad():
        model(tokens[: min(block_size, len(tokens) - 1)][None].to(device))
    lens = TunedLens(len(names), acts[names[0]].shape[-1]).to(device)
    optimizer = torch.optim.Adam(lens.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    frozen = [p for p in model.parameters() if p.requires_grad]
    history = []
    try:
        for p in frozen:
            p.requires_grad_(False)
        with eval_mode(model):
            for _ in range(steps):
                starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)  # (B,)
                x = tokens[starts[:, None] + torch.arange(block_size)].to(device)  # (B, T)
                with capture(model, names) as acts:
                    final = logits_of(model, x).log_softmax(-1)  # (B, T, V): log p_N (a stateful rung: from a fresh state)
                loss = sum(F.kl_div(model.unembed(lens(i, acts[n])).log_softmax(-1), final, log_target=True, reduction="none").sum(-1).mean()
                           for i, n in enumerate(names[:-1]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.append(loss.item())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return lens, history


@torch.no_grad()
def score_layers(model: nn.Module, tokens: torch.Tensor, block_size: int, lens: TunedLens | None = None,
                 batch_size: int = 64) -> list[dict]:
    """Per layer, on ``tokens`` by the evaluation protocol: bpc and nats of its read-out, its KL from the
    model's final distribution (nats per character), and how often its top-1 character is the next one
    (a correct prediction) and the current one (an echo of the input)."""
    L = len(model.resid)
    device = model_device(model)
    nll = torch.zeros(L, dtype=torch.float64)
    kl = torch.zeros(L, dtype=torch.float64)
    top_next = torch.zeros(L, dtype=torch.long)
    top_current = torch.zeros(L, dtype=torch.long)
    tokens = tokens.to(device)
    with eval_mode(model):
        for x, target, keep in window_batches(tokens, block_size, batch_size):
            logp = layer_logits(model, x, lens).double().log_softmax(-1)[:, keep]  # (L, n, V): the scored positions
            nxt, cur = tokens[target][keep], x[keep]  # (n,) each
            nll += -logp.gather(-1, nxt.expand(L, -1)[..., None])[..., 0].sum(-1).cpu()
            kl += F.kl_div(logp, logp[-1:].expand_as(logp), log_target=True, reduction="none").sum((-1, -2)).cpu()
            top1 = logp.argmax(-1)  # (L, n)
            top_next += (top1 == nxt).sum(-1).cpu()
            top_current += (top1 == cur).sum(-1).cpu()
    n = len(tokens) - 1
    return [{"layer": i, "tokens": n, "nats": nll[i].item() / n, "bpc": nll[i].item() / n / math.log(2),
             "kl_to_final": kl[i].item() / n, "top1_next": top_next[i].item() / n, "top1_current": top_current[i].item() / n}
            for i in range(L)]


@torch.no_grad()
def prompt_readouts(model: nn.Module, tokens: torch.Tensor, k: int, lens: TunedLens | None = None) -> dict:
    """For a prompt (T,) of at most the model's window: each layer's top-k characters and probabilities at
    every position, and the probability each layer gives the character that actually comes next."""
    with eval_mode(model):
        probs = layer_logits(model, tokens[None].to(model_device(model)), lens).double().softmax(-1)[:, 0]  # (L, T, V)
    top = probs.topk(k, dim=-1)  # (L, T, k)
    nxt = tokens[1:].to(probs.device)  # (T-1,)
    return {"top_ids": top.indices.cpu(), "top_probs": top.values.cpu(),
            "p_next": probs[:, :-1].gather(-1, nxt.expand(probs.shape[0], -1)[..., None])[..., 0].cpu()}  # (L, T-1)
