import copy
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import zoo
from zoo import registry
from zoo.config import OptimConfig
from zoo.harness import LanguageModel, detach_state, lr_factor


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    f = [lr_factor("cosine", s, 10, 110, 0.1) for s in range(1, 111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))
    assert f[-1] == pytest.approx(0.1)


def test_inverse_sqrt_is_vaswanis_formula():
    d_model, warmup = 512, 4000
    lr = d_model**-0.5 * warmup**-0.5
    for step in (1, 100, 4000, 10_000, 100_000):
        paper = d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert lr * lr_factor("inverse_sqrt", step, warmup, 0, 0) == pytest.approx(paper, rel=1e-12)


def test_weight_decay_only_on_matrices():
    model = nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4), nn.Linear(4, 5))
    module = LanguageModel(model, OptimConfig(weight_decay=0.3), max_steps=10)
    groups = module.configure_optimizers()["optimizer"].param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[2].weight)}



def test_fused_adamw_is_an_option_with_the_same_update():
    """optim.fused swaps in the one-kernel AdamW; it must make the same step as the default, up to rounding."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4), nn.Linear(4, 5))
    idx = torch.randint(0, 5, (3, 6))
    results = []
    for fused in (False, True):
        model = copy.deepcopy(base)
        optimizer = LanguageModel(model, OptimConfig(fused=fused, lr=1e-2), max_steps=10).configure_optimizers()["optimizer"]
        assert optimizer.defaults["fused"] is (True if fused else None) and optimizer.defaults["foreach"] is (None if fused else True)
        for _ in range(3):
            optimizer.zero_grad()
            model(idx).logsumexp(-1).mean().backward()
            optimizer.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(results[0], torch.cat([p.detach().flatten() for p in base.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_a_fused_optimiser_trains_with_gradient_clipping(tmp_path, tiny_corpus, one_thread):
    """--optim.fused with the default grad_clip used to stop at the first step (Lightning's clip_gradients refuses
    a fused optimiser); the clip is torch's own now, and it still clips: a tiny max norm changes the run."""
    def run(name, clip):
        config = zoo.make_config("gpt", "quick", overrides={
            "data": {"corpus": str(tiny_corpus), "block_size": 16, "batch_size": 4},
            "optim": {"fused": True, "grad_clip": clip},
            "trainer": {"max_steps": 6, "val_every": 6, "val_batches": 1, "progress_bar": False}})
        return zoo.train(config, tmp_path / name, quiet=True)["val"]["nats"]

    clipped, barely = run("clip", 1.0), run("tiny-clip", 1e-4)
    assert math.isfinite(clipped) and math.isfinite(barely) and clipped != barely


def test_the_training_loss_is_logged_at_the_log_cadence_and_shown_every_step(tmp_path, tiny_corpus, one_thread, capsys):
    """metrics.csv gets train_loss and lr on the steps Lightning writes (every log_every_n_steps = min(50,
    val_every)), not a self.log call every step; the progress lines still show the latest step's loss."""
    import csv

    config = zoo.make_config("gpt", "quick", overrides={
        "data": {"corpus": str(tiny_corpus), "block_size": 16, "batch_size": 4},
        "trainer": {"max_steps": 25, "val_every": 10, "val_batches": 1}})
    zoo.train(config, tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "version_0" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r["train_loss"]] == [9, 19] == [int(r["step"]) for r in rows if r["lr"]]
    shown = [int(line.split("step ")[1].split("/")[0]) for line in capsys.readouterr().out.splitlines() if "train loss" in line]
    assert shown == [3, 6, 9, 12, 15, 18, 21, 24, 25]  # a line every ceil(25/10) steps, each with its own step's loss


def test_detach_state_keeps_values_and_cuts_the_graph():
    h = torch.ones(2, 3, requires_grad=True) * 2
    state = detach_state((h, [h]))
    assert not state[0].requires_grad and torch.equal(state[0], h.detach())


@dataclass(frozen=True)
class LogConfig:
    vocab_size: int = 0


class LogTable(nn.Module):
    """Test rung that can diverge: logits = log(w[idx]) turn NaN once a step pushes w below zero."""

    Config = LogConfig
    presets = {"quick": {}, "book": {}}
    context_length = 1

    def __init__(self, config):
        super().__init__()
        self.w = nn.Parameter(torch.ones(config.vocab_size, config.vocab_size))

    def forward(self, idx):
        return torch.log(self.w[idx])  # (B, T, V)


def test_nan_loss_is_a_clear_error(tmp_path, tiny_corpus):
    registry.register("test-log-table", chapter="99-test")(LogTable)
    try:
        config = zoo.make_config("test-log-table", overrides={
            "data": {"corpus": str(tiny_corpus), "block_size": 16},
            "optim": {"lr": 5.0, "grad_clip": 0.0, "warmup_steps": 1, "schedule": "constant"},
            "trainer": {"max_steps": 50, "progress_bar": False}})
        with pytest.raises(zoo.ZooError, match="loss became nan"):
            zoo.train(config, tmp_path / "run", quiet=True)
    finally:
        registry._REGISTRY.pop("test-log-table")
