"""zoo landscape's plumbing: the objective never writes to a run's weights, slices and interpolation give
known answers, checkpoints kept along training (--trainer.keep_every) load by step and resume exactly,
and the command's bad inputs get one line and exit code 2. (Hessian spectra: test_hessian.py; the local
learning coefficient: test_llc.py.)"""

import hashlib

import pytest
import torch
import torch.nn as nn

import zoo
from conftest import StopAt, cli, one_line
from zoo.landscape.objective import Objective, run_objective
from zoo.landscape.slices import filter_normalized_direction, interpolate, same_parameters, slice_1d, slice_2d
from zoo.runs import CHECKPOINT, kept_checkpoints, load_run, read_checkpoint


def tiny(corpus, rung="bigram", **trainer):
    return zoo.make_config(rung, "quick", seed=3, overrides={
        "data": {"corpus": str(corpus), "block_size": 16, "batch_size": 8},
        "trainer": {"max_steps": 40, "val_every": 10, "val_batches": 2, "checkpoint_every": 10, "progress_bar": False, **trainer}})


class Quadratic(nn.Module):
    """logits = W[idx] + b: a bigram with a bias vector, small enough to reason about."""

    def __init__(self, V=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(V, V, generator=g))
        self.b = nn.Parameter(torch.randn(V, generator=g))

    def forward(self, idx):
        return self.W[idx] + self.b  # (B, T, V)


def batch(V=4, B=3, T=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


def test_objective_is_the_models_own_loss_and_leaves_the_weights_alone():
    model, (x, y) = Quadratic(), batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    obj = Objective.of(model, x, y)
    theta = obj.flat()
    assert obj.dim == 4 * 4 + 4
    expected = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
    assert torch.allclose(obj.loss(theta), expected)
    theta += 1.0  # the vector is a copy ...
    obj.loss(theta * 2), obj.grad(theta), obj.hvp(theta, torch.ones_like(theta))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # ... and nothing wrote to the model


def test_counted_rungs_have_no_landscape():
    class Counts(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("counts", torch.ones(4, 4))

        def forward(self, idx):
            return self.counts[idx].log()

    with pytest.raises(zoo.ZooError, match="no trainable parameters"):
        Objective.of(Counts(), *batch())


def test_filter_normalised_direction_matches_each_filter_and_skips_vectors():
    model, (x, y) = Quadratic(), batch()
    obj = Objective.of(model, x, y)
    theta = obj.flat()
    d = filter_normalized_direction(obj, theta, torch.Generator().manual_seed(0))
    w, v = obj.unflatten(theta), obj.unflatten(d)
    assert torch.allclose(v["W"].norm(dim=1), w["W"].norm(dim=1))  # one filter = one row
    assert torch.equal(v["b"], torch.zeros_like(v["b"]))  # biases stay put, as in Li et al.
    again = filter_normalized_direction(obj, theta, torch.Generator().manual_seed(0))
    assert torch.equal(d, again)


def test_slices_evaluate_the_loss_at_the_points_asked():
    model, (x, y) = Quadratic(), batch()
    obj = Objective.of(model, x, y)
    theta = obj.flat()
    g = torch.Generator().manual_seed(0)
    d1, d2 = filter_normalized_direction(obj, theta, g), filter_normalized_direction(obj, theta, g)
    line = slice_1d(obj, theta, d1, [-1.0, 0.0, 0.5])
    assert line[1] == pytest.approx(obj.loss(theta).item())
    assert line[2] == pytest.approx(obj.loss(theta + 0.5 * d1).item())
    plane = slice_2d(obj, theta, d1, d2, [0.0, 1.0], [-1.0, 0.0])
    assert plane[1][0] == pytest.approx(line[1])  # β = 0, α = 0
    assert plane[0][1] == pytest.approx(obj.loss(theta + d1 - d2).item())  # β = −1, α = 1


def test_interpolation_barrier_is_the_rise_above_the_chord():
    """A one-parameter model whose loss along the line is known in closed form: softplus(−w)."""

    class Line(nn.Module):  # loss = cross-entropy of logits (w, 0) for target 0: log(1 + e^{-w})
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, idx):
            return torch.stack([self.w.expand(idx.shape), torch.zeros(idx.shape)], dim=-1)  # (B, T, 2)

    obj = Objective.of(Line(), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long))
    a, b = torch.tensor([-2.0]), torch.tensor([2.0])
    out = interpolate(obj, a, b, [0.0, 0.25, 0.5, 0.75, 1.0])
    f = lambda w: torch.log1p(torch.exp(torch.tensor(-w))).item()  # noqa: E731
    assert out["loss"] == pytest.approx([f(-2), f(-1), f(0), f(1), f(2)], rel=1e-6)
    # softplus(-w) is convex: the curve lies below its chord, so the largest rise is at an end, 0
    assert out["barrier"] == pytest.approx(0.0, abs=1e-7)
    assert out["distance"] == pytest.approx(4.0)
    # a path that goes out to w = -2 and back: from 2 to -2 to ... only straight lines here, so instead a
    # line beyond its ends: t outside [0, 1] is evaluated but not counted in the barrier
    beyond = interpolate(obj, a, b, [-0.5, 0.0, 1.0, 1.5])
    assert beyond["loss"][0] == pytest.approx(f(-4)) and beyond["barrier"] == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(zoo.ZooError, match="t = 0 and t = 1"):
        interpolate(obj, a, b, [0.2, 0.8])


def test_interpolation_needs_one_shape():
    a = Objective.of(Quadratic(V=4), *batch())
    b = Objective.of(Quadratic(V=5), *batch(V=4))
    with pytest.raises(zoo.ZooError, match="names or shapes"):
        same_parameters(a, b)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kept_checkpoints_load_by_step_and_resume_keeps_them_on_the_same_steps(tmp_path, tiny_corpus, one_thread):
    full = tmp_path / "full"
    zoo.train(tiny(tiny_corpus, keep_every=15), full, quiet=True)
    assert list(kept_checkpoints(full)) == [0, 15, 30]
    assert read_checkpoint(full / "checkpoints" / "step-000015.ckpt")["global_step"] == 15
    early, last = load_run(full, step=0), load_run(full)
    assert not torch.equal(next(early.model.parameters()), next(last.model.parameters()))
    with pytest.raises(zoo.ZooError, match="kept no checkpoint at step 7 .kept: 0, 15, 30."):
        load_run(full, step=7)
    half = tmp_path / "half"
    zoo.train(tiny(tiny_corpus, keep_every=15), half, callbacks=[StopAt(20)], quiet=True)
    zoo.train(tiny(tiny_corpus, keep_every=15), half, resume=True, quiet=True)
    assert list(kept_checkpoints(half)) == [0, 15, 30]
    for step in (0, 15, 30):  # the resumed run's kept weights are the uninterrupted run's
        a = read_checkpoint(full / "checkpoints" / f"step-{step:06d}.ckpt")["state_dict"]
        b = read_checkpoint(half / "checkpoints" / f"step-{step:06d}.ckpt")["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(zoo.ZooError, match="keep_every"):
        zoo.train(tiny(tiny_corpus, keep_every=-1), tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad").exists()


def test_run_objective_reads_the_runs_own_corpus_and_leaves_its_checkpoint_unchanged(tmp_path, tiny_corpus, one_thread):
    run_dir = tmp_path / "run"
    zoo.train(tiny(tiny_corpus), run_dir, quiet=True)
    before = digest(run_dir / CHECKPOINT)
    obj = run_objective(load_run(run_dir), batch_size=4)
    assert obj.x.shape == (4, 16)
    theta = obj.flat()
    slice_1d(obj, theta, filter_normalized_direction(obj, theta, torch.Generator().manual_seed(0)), [-1.0, 1.0])
    obj.hvp(theta, torch.ones_like(theta))
    assert digest(run_dir / CHECKPOINT) == before


# ------------------------------------------------------------------------------- every trainable rung
@pytest.mark.parametrize("name", [n for n in zoo.registry.names() if zoo.registry.get(n).trainable])
def test_every_trainable_rung_has_exact_hessian_vector_products(name):
    """Double backward through every rung (attention kernels included): H v equals the central difference of
    gradients, (∇L(θ + εv) − ∇L(θ − εv)) / 2ε, in float64."""
    from zoo.conformance import make

    model = make(name).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 8, (2, 8), generator=g)
    obj = Objective.of(model, x, torch.roll(x, -1, 1))
    theta = obj.flat()
    v = torch.randn(obj.dim, generator=g, dtype=theta.dtype)
    v /= v.norm()
    eps = 1e-5
    fd = (obj.grad(theta + eps * v)[1] - obj.grad(theta - eps * v)[1]) / (2 * eps)
    hv = obj.hvp(theta, v)
    assert torch.allclose(hv, fd, atol=1e-6 * max(1.0, fd.abs().max().item())), (hv - fd).abs().max()


# ----------------------------------------------------------------------------------- zoo landscape

TINY = ["--data.block_size", "16", "--data.batch_size", "8", "--trainer.val_every", "10", "--trainer.val_batches", "2",
        "--trainer.progress_bar", "false", "--trainer.threads", "1", "--trainer.max_steps", "20"]




@pytest.fixture
def runs(tmp_path, tiny_corpus, capsys, one_thread):
    out = {}
    for name, rung, seed in (("a", "bigram", 0), ("b", "bigram", 1), ("mlp", "bengio-mlp", 0), ("ngram", "ngram", 0)):
        code, _, err = cli(capsys, "train", rung, "--data", tiny_corpus, "--seed", seed, "--out", tmp_path / name, *TINY,
                           *(["--trainer.keep_every", "10"] if name == "a" else []))
        assert code == 0, err
        out[name] = tmp_path / name
    return out


def test_zoo_landscape_measures_writes_beside_the_run_and_never_overwrites(runs, capsys, tmp_path):
    a = runs["a"]
    before = digest(a / CHECKPOINT)
    code, out, err = cli(capsys, "landscape", a, "--lanczos-steps", "8", "--vectors", "2", "--points", "5", "--batch-size", "4")
    assert code == 0, err
    assert "hessian:" in out and "slices:" in out and str(a / "landscape") in out
    assert sorted(p.name for p in (a / "landscape").iterdir()) == ["hessian.png", "report.json", "slices.png"]
    code, out, err = cli(capsys, "landscape", a, "--between", runs["b"], "--llc", "--llc-step", "1e-6", "--llc-steps", "6",
                         "--llc-burn-in", "2", "--llc-chains", "2", "--step", "10", "--points", "5", "--batch-size", "4", "--json")
    assert code == 0, err
    report = __import__("json").loads(out)
    assert report["step"] == 10 and set(report) >= {"between", "llc"} and "hessian" not in report
    assert report["llc"]["chains"] == 2 and len(report["llc"]["draws"]) == 2
    assert report["between"]["t"][0] == -0.25 and 0.0 in report["between"]["t"] and 1.0 in report["between"]["t"]
    assert (a / "landscape-2" / "between.png").is_file() and (a / "landscape-2" / "llc.png").is_file()
    assert (a / "landscape" / "report.json").is_file()  # the first report is still there
    assert digest(a / CHECKPOINT) == before
    code, _, err = cli(capsys, "landscape", runs["mlp"], "--hessian", "--lanczos-steps", "4", "--vectors", "1", "--out", tmp_path / "mlp-l")
    assert code == 0, err


@pytest.mark.parametrize("args, fragments", [
    (["{missing}"], ["run directory not found"]),
    (["{a}", "--out", "{a}"], ["already exists"]),
    (["{a}", "--step", "7"], ["kept no checkpoint at step 7", "kept: 0, 10, 20"]),
    (["{ngram}"], ["no trainable parameters"]),
    (["{a}", "--between", "{mlp}"], ["names or shapes"]),
    (["{a}", "--llc", "--llc-step-rule", "3"], ["step rule's c must be in (0, 2]"]),
    (["{a}", "--llc-batch-size", "-1"], ["--llc-batch-size must be >= 0"]),
    (["{a}", "--llc", "--llc-step", "0"], ["step must be"]),
    (["{a}", "--llc", "--llc-step", "1e-6", "--llc-steps", "10", "--llc-burn-in", "10"], ["burn_in (10) must be less than steps (10)"]),
    (["{a}", "--batch-size", "0"], ["--batch-size must be >= 1"]),
    (["{a}", "--points", "2"], ["--points must be >= 3"]),
    (["{a}", "--near-zero", "2"], ["--near-zero must be in (0, 1)"]),
    (["{a}", "--span", "0"], ["--span must be > 0"]),
    (["{a}", "--vectors", "x"], ["vectors"]),
])
def test_zoo_landscape_bad_input_is_one_line_and_writes_nothing(runs, capsys, tmp_path, args, fragments):
    places = {"a": runs["a"], "mlp": runs["mlp"], "ngram": runs["ngram"], "missing": tmp_path / "nowhere"}
    code, _, err = cli(capsys, "landscape", *[a.format(**places) for a in args])
    one_line(code, err, *fragments)
    assert not any((runs[name] / "landscape").exists() for name in runs)


def test_llc_step_rule_sets_the_step_from_the_measured_top_eigenvalue(runs, capsys, tmp_path):
    code, out, err = cli(capsys, "landscape", runs["a"], "--llc", "--llc-steps", "6", "--llc-burn-in", "2", "--llc-chains", "2",
                         "--llc-nbeta", "50", "--llc-step-rule", "0.25", "--batch-size", "4", "--lanczos-steps", "10", "--json",
                         "--out", tmp_path / "rule")
    assert code == 0, err
    c = __import__("json").loads(out)["llc"]
    assert c["top_eigenvalue"] > 0 and c["step_rule"] == 0.25 and c["nbeta"] == 50
    assert c["step"] == pytest.approx(0.25 / (50 * c["top_eigenvalue"] + c["localization"]))


def test_chapter_13_measures_a_retrained_run_again(tmp_path):
    """The chapter keeps each measurement under a fingerprint of its job; a run directory retrained in place
    (the same path, other weights) must not be answered from the old weights' measurement."""
    from zoo import book

    cached = book.find_chapter("13").experiment().cached
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"first weights")
    calls = []

    def measure(missing):
        calls.append([name for name, _, _ in missing])
        return [{"measured": len(calls)} for _ in missing]

    todo = [("rung/gpt", (run,), {"parts": ("hessian",), "between": None})]
    assert cached(todo, tmp_path / "measurements", measure) == {"rung/gpt": {"measured": 1}}
    assert cached(todo, tmp_path / "measurements", measure) == {"rung/gpt": {"measured": 1}}  # re-analysis: no new work
    (run / "checkpoints" / "last.ckpt").write_bytes(b"retrained weights")
    assert cached(todo, tmp_path / "measurements", measure) == {"rung/gpt": {"measured": 2}}
    assert calls == [["rung/gpt"], ["rung/gpt"]]
