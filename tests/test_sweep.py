"""`zoo sweep` and the tools issue 14 asks for: a grid of normal run directories with one summary, parallel
like zoo book, resumable, a diverged point reported and not fatal; the embedding / non-embedding split of
the parameter count; the linear-decay schedule."""

import json
import math

import pytest
import torch

import zoo
from zoo.harness import lr_factor
from zoo.registry import build
from zoo.runs import count_embedding_params, count_params
from zoo.sweep import parse_grid, parse_value, points

from test_cli import assert_one_line_error, run

TINY = ["--trainer.max_steps", "6", "--trainer.val_every", "3", "--trainer.val_batches", "1"]


def test_grid_parsing():
    assert parse_value("3") == 3 and parse_value("1e-3") == 0.001 and parse_value("true") is True and parse_value("cosine") == "cosine"
    grid = parse_grid(["model.n_layer=1,2", "optim.lr=1e-3,3e-3", "optim.schedule=linear"], "gpt")
    assert grid == {"model.n_layer": [1, 2], "optim.lr": [0.001, 0.003], "optim.schedule": ["linear"]}
    assert len(points(grid, [0, 1])) == 2 * 2 * 1 * 2


def test_sweep_writes_one_run_per_point_and_a_summary(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "sweep"
    code, text, err = run(capsys, "sweep", "bigram", "--grid", "optim.lr=0.01,0.1", "--seeds", "0,1", "--data", tiny_corpus,
                          "--out", out, "--jobs", "2", *TINY)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["optim.lr"], r["seed"]) for r in summary["rows"]] == [(0.01, 0), (0.01, 1), (0.1, 0), (0.1, 1)]
    for r in summary["rows"]:  # every point is a normal run: zoo eval scores it to the same number
        metrics = json.loads((out / r["point"] / "metrics.json").read_text())
        assert metrics["config"]["optim"]["lr"] == r["optim.lr"] and metrics["val"]["bpc"] == r["val_bpc"]
    assert "| 0.1 | 1 |" in text
    serial = tmp_path / "serial"  # two processes give what one gives
    assert run(capsys, "sweep", "bigram", "--grid", "optim.lr=0.01,0.1", "--seeds", "0,1", "--data", tiny_corpus, "--out", serial, *TINY)[0] == 0
    assert [r["val_bpc"] for r in json.loads((serial / "summary.json").read_text())["rows"]] == [r["val_bpc"] for r in summary["rows"]]


def test_sweep_resumes_and_keeps_finished_points(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "bigram", "--grid", "optim.lr=0.01,0.1", "--data", tiny_corpus, "--out", out, *TINY]
    assert run(capsys, *args)[0] == 0
    kept = out / "optim.lr=0.01__seed0" / "metrics.json"
    before = kept.stat().st_mtime_ns
    lost = out / "optim.lr=0.1__seed0"
    import shutil
    shutil.rmtree(lost)  # as if the sweep had been stopped before this point
    assert_one_line_error(*run(capsys, *args)[::2], "already exists", "--resume")
    code, _, err = run(capsys, *args, "--resume")
    assert code == 0, err
    assert kept.stat().st_mtime_ns == before and (lost / "metrics.json").is_file()
    assert_one_line_error(*run(capsys, "sweep", "bigram", "--grid", "optim.lr=0.5", "--data", tiny_corpus, "--out", out, "--resume", *TINY)[::2],
                          "holds a different sweep")


def test_a_diverged_point_is_reported_and_the_sweep_goes_on(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "sweep"
    code, text, err = run(capsys, "sweep", "gpt", "--grid", "optim.lr=3e-3,1e7", "optim.grad_clip=0", "model.n_layer=1", "model.n_embd=16",
                          "--data", tiny_corpus, "--out", out, "--trainer.max_steps", "20", "--trainer.val_every", "20", "--trainer.val_batches", "1")
    assert code == 0, err
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["done", "diverged"]
    assert "loss became" in rows[1]["error"] and "diverged" in text


@pytest.mark.parametrize("argv, fragments", [
    (["--grid", "model.n_layer"], ["SECTION.NAME=V1,V2"]),
    (["--grid", "model.depth=1,2"], ["no model option 'depth'", "n_layer"]),
    (["--grid", "extra.x=1"], ["section must be one of"]),
    (["--grid", "optim.lr="], ["has no values"]),
    (["--grid", "optim.lr=1", "optim.lr=2"], ["given twice"]),
    ([], ["at least one --grid"]),
    (["--grid", "optim.lr=-1"], ["point optim.lr=-1__seed0", "--optim.lr must be > 0"]),
    (["--grid", "optim.lr=0.1", "--seeds", "a"], ["--seeds"]),
    (["--grid", "optim.lr=0.1", "--jobs", "0"], ["--jobs must be >= 1"]),
    (["--grid", "optim.lr=0.1", "--resume"], ["--resume needs --out"]),
])
def test_sweep_bad_inputs(tmp_path, tiny_corpus, capsys, argv, fragments):
    out = ["--out", str(tmp_path / "sweep")] if "--resume" not in argv else []
    assert_one_line_error(*run(capsys, "sweep", "gpt", "--data", tiny_corpus, *out, *argv, *TINY)[::2], *fragments)
    assert not (tmp_path / "sweep").exists()


def test_parameter_count_split():
    V = 11
    tied = build("gpt", vocab_size=V, block_size=8, n_layer=1, n_head=2, n_embd=16)
    untied = build("gpt", vocab_size=V, block_size=8, n_layer=1, n_head=2, n_embd=16, tie_embeddings=False)
    assert count_embedding_params(tied) == V * 16 and count_params(tied) - count_embedding_params(tied) > 0
    assert count_embedding_params(untied) == V * 16 and count_params(untied) == count_params(tied) + V * 16
    bigram = build("bigram", vocab_size=V, block_size=8)
    assert count_embedding_params(bigram) == count_params(bigram) == V * V  # a bigram is all table


def test_metrics_carry_the_split(tmp_path, tiny_corpus):
    config = zoo.make_config("gpt", "quick", overrides={"data": {"corpus": str(tiny_corpus), "block_size": 8, "batch_size": 2},
                                                        "trainer": {"max_steps": 2, "val_every": 2, "val_batches": 1, "progress_bar": False}})
    m = zoo.train(config, tmp_path / "run", quiet=True)
    assert m["params_embedding"] + m["params_non_embedding"] == m["params"] and m["params_embedding"] > 0


def test_linear_schedule():
    f = [lr_factor("linear", s, 10, 110, 0.1) for s in (5, 10, 60, 110, 200)]
    assert f[0] == 0.5 and f[1] == 1.0 and math.isclose(f[2], 0.55) and math.isclose(f[3], 0.1) and math.isclose(f[4], 0.1)
    assert lr_factor("cosine", 1, 0, 100, 0.1) == 1.0  # warmup 0: the first step is at the peak


# ------------------------------------------------------------------------------------------------ Muon
def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    from zoo.harness import muon_split

    for tie in (True, False):
        model = build("gpt", vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, tie_embeddings=tie)
        hidden, rest = muon_split(model)
        names = {id(p): n for n, p in model.named_parameters()}
        assert sorted(names[id(p)] for p in hidden) == sorted(
            f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.gate_up", "mlp.down"))
        assert {names[id(p)] for p in rest} == {n for n, p in model.named_parameters()} - {names[id(p)] for p in hidden}
        assert all(p.dim() == 2 for p in hidden) and "wte.weight" in {names[id(p)] for p in rest}
    lstm_hidden, _ = muon_split(build("lstm", vocab_size=11, block_size=8, n_embd=8, n_hidden=16))
    assert lstm_hidden and all(p.shape[0] != 11 for p in lstm_hidden)  # its output projection to the vocabulary stays with AdamW


def test_muon_runs_learn_and_resume_exactly(tmp_path, tiny_corpus):
    from conftest import StopAt
    from zoo.runs import CHECKPOINT, read_checkpoint

    def config():
        return zoo.make_config("gpt", "quick", seed=3, overrides={
            "model": {"n_layer": 1, "n_embd": 16}, "optim": {"optimizer": "muon"}, "data": {"corpus": str(tiny_corpus), "block_size": 16, "batch_size": 8},
            "trainer": {"max_steps": 40, "val_every": 20, "val_batches": 2, "checkpoint_every": 10, "progress_bar": False}})
    full = zoo.train(config(), tmp_path / "full", quiet=True)
    saved = read_checkpoint(tmp_path / "full" / CHECKPOINT)
    assert full["steps"] == 40 and [s["last_epoch"] for s in saved["lr_schedulers"]] == [40, 40]  # two optimizers, one count of steps
    vocab = zoo.load_run(tmp_path / "full").tokenizer.vocab_size
    assert full["val"]["bpc"] < math.log2(vocab) - 0.1  # it learns: below the uniform guess an untrained gpt makes
    zoo.train(config(), tmp_path / "half", callbacks=[StopAt(20)], quiet=True)
    resumed = zoo.train(config(), tmp_path / "half", resume=True, quiet=True)
    a, b = (read_checkpoint(tmp_path / d / CHECKPOINT)["state_dict"] for d in ("full", "half"))
    assert all(torch.equal(a[k], b[k]) for k in a) and resumed["val"] == full["val"]
