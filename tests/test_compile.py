"""--trainer.compile: torch.compile of a run's model — when it happens, what it refuses, and that it changes nothing
but speed (the same parameters, checkpoint keys and, up to float rounding, the same training)."""

import contextlib
import dataclasses
import math

import pytest
import torch
from conftest import cli, one_line

import zoo
from zoo import runs
from zoo.config import RunConfig
from zoo.errors import ZooError


def config(corpus, compile="off", steps=4, rung="gpt"):
    return zoo.make_config(rung, "quick", overrides={
        "data": {"corpus": str(corpus), "block_size": 16, "batch_size": 4},
        "trainer": {"max_steps": steps, "val_every": steps, "val_batches": 1, "progress_bar": False, "compile": compile}})


def test_on_needs_a_compiler_and_auto_compiles_long_runs_of_rungs_that_pay(tiny_corpus, monkeypatch):
    monkeypatch.setattr(runs, "cxx_compiler", lambda: "/usr/bin/c++")
    assert not runs.compiles(config(tiny_corpus, "off", steps=5000)) and runs.compiles(config(tiny_corpus, "on"))
    assert runs.compiles(config(tiny_corpus, "auto", steps=runs.COMPILE_MIN_STEPS))
    assert not runs.compiles(config(tiny_corpus, "auto", steps=runs.COMPILE_MIN_STEPS - 1))  # would not pay back
    assert not runs.compiles(config(tiny_corpus, "auto", steps=5000, rung="vaswani"))  # measured slower compiled
    assert runs.compiles(config(tiny_corpus, "on", rung="vaswani"))  # but it may be asked for
    monkeypatch.setattr(runs, "cxx_compiler", lambda: None)
    assert not runs.compiles(config(tiny_corpus, "auto", steps=5000))  # no compiler: eager, without a word
    with pytest.raises(ZooError, match="needs a C\\+\\+ compiler"):
        runs.compiles(config(tiny_corpus, "on"))


def test_only_gpt_declares_that_compiling_pays():
    """compile_pays is a measured claim (issue 18): every rung that makes it must have been timed both ways."""
    from zoo import registry

    assert [name for name in registry.names() if registry.get(name).compile_pays] == ["gpt"]


def test_auto_compiles_gpt_with_dropout_too(tiny_corpus, monkeypatch):
    """Measured faster compiled with dropout 0.1 as well, once dropout draws from eager's generator (below)."""
    monkeypatch.setattr(runs, "cxx_compiler", lambda: "/usr/bin/c++")
    long = config(tiny_corpus, "auto", steps=runs.COMPILE_MIN_STEPS)
    assert runs.compiles(dataclasses.replace(long, model={**long.model, "dropout": 0.1}))


def test_a_compiled_fit_drops_the_units_an_eager_forward_would():
    """Under compiled_fit, dropout in a compiled forward draws its masks from eager's generator: the same seed gives
    the eager output up to rounding. Inductor's own random numbers (the default outside it) give other masks."""
    from zoo.registry import build

    torch.manual_seed(0)
    model = build("gpt", vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.5).train()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)  # zero-initialised output projections would hide attention's dropout
    x = torch.randint(0, 11, (2, 16))
    torch.manual_seed(1)
    eager = model(x)

    def compiled(context):
        torch._dynamo.reset()
        with context:
            forward = torch.compile(model.forward)
            torch.manual_seed(1)
            return forward(x)

    torch.testing.assert_close(compiled(runs.compiled_fit(on_cpu=True)), eager, rtol=1e-4, atol=1e-4)
    assert (compiled(contextlib.nullcontext()) - eager).abs().max() > 0.1
    assert not torch.are_deterministic_algorithms_enabled()  # compiled_fit restored what it changed


def test_bad_compile_settings_are_one_line_and_write_nothing(tmp_path, tiny_corpus, capsys, monkeypatch):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "gpt", "--preset", "quick", "--data", tiny_corpus, "--trainer.compile", "fast", "--out", out)
    one_line(code, err, "--trainer.compile must be one of off, on, auto", "'fast'")
    assert not out.exists()
    monkeypatch.setattr(runs, "cxx_compiler", lambda: None)
    code, _, err = cli(capsys, "train", "gpt", "--preset", "quick", "--data", tiny_corpus, "--trainer.compile", "on", "--out", out)
    one_line(code, err, "needs a C++ compiler", "--trainer.compile off")
    assert not out.exists()


@pytest.mark.skipif(runs.cxx_compiler() is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_a_compiled_run_trains_the_same_model(tmp_path, tiny_corpus, one_thread):
    """Compiled and eager runs of one config: the same parameter names (a checkpoint loads either way), and
    after a few steps the same weights up to the rounding of Inductor's fused kernels."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = zoo.train(config(tiny_corpus, "off"), tmp_path / "eager", quiet=True)
    assert counters["stats"]["unique_graphs"] == 0  # nothing compiled
    compiled = zoo.train(config(tiny_corpus, "on"), tmp_path / "compiled", quiet=True)
    assert counters["stats"]["unique_graphs"] >= 1  # the training forward was compiled
    a, b = zoo.load_run(tmp_path / "eager").model.state_dict(), zoo.load_run(tmp_path / "compiled").model.state_dict()
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=2e-2, atol=2e-3)
    assert math.isclose(eager["val"]["nats"], compiled["val"]["nats"], rel_tol=1e-2)
    assert (eager["compiled"], compiled["compiled"]) == (False, True)  # metrics.json says how each was trained


def test_auto_is_the_default():
    """What a user gets without asking: compiled where it was measured to pay, eager everywhere else."""
    assert RunConfig(rung="gpt").trainer.compile == "auto"


@pytest.mark.skipif(runs.cxx_compiler() is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_a_compiled_run_repeats_exactly_on_several_threads(tmp_path, tiny_corpus):
    """Same seed, same numbers, compiled too: Inductor's multi-threaded kernels are made deterministic for the
    fit (without that, the embedding's gradient was summed in a varying order on 2 threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = zoo.make_config("gpt", "quick", overrides={
            "data": {"corpus": str(tiny_corpus), "block_size": 32, "batch_size": 16},
            "trainer": {"max_steps": 30, "val_every": 30, "val_batches": 1, "progress_bar": False, "compile": "on"}})
        states = []
        for name in ("a", "b"):
            zoo.train(cfg, tmp_path / name, quiet=True)
            states.append(zoo.load_run(tmp_path / name).model.state_dict())
    finally:
        torch.set_num_threads(before)
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the fit
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
