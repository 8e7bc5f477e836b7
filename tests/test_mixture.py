"""Mixing two runs (zoo.mixture), the protocol's per-target predictions and its context cut (zoo.evaluate),
and `zoo eval --mix/--window`, `zoo sample --mix` with their bad inputs."""

import json

import pytest
import torch

from zoo import registry
from zoo.evaluate import predictions, score
from zoo.mixture import Mixture, bucket_label, count_buckets, fit, fit_simplex, fit_weight, mix

from test_cli import TINY, assert_one_line_error, run


def test_fitted_weight_is_the_likelihood_maximum():
    """Bisection on L'(λ) lands on the maximum of Σ log(λ a + (1-λ) b), checked against a fine grid."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(500, generator=g, dtype=torch.float64) * 0.9 + 0.05
    b = (a + torch.randn(500, generator=g, dtype=torch.float64) * 0.3).clamp(0.01, 0.99)
    lam = fit_weight(a, b)
    grid = torch.linspace(0, 1, 100001, dtype=torch.float64)
    loglik = torch.log(grid[:, None] * a + (1 - grid[:, None]) * b).sum(1)  # (G,)
    assert 0 < lam < 1
    assert abs(lam - grid[loglik.argmax()].item()) < 2e-5
    # one part better on every target: all weight on it
    assert fit_weight(a, a / 2) == 1.0 and fit_weight(a / 2, a) == 0.0


def test_em_weights_on_the_simplex_match_the_two_part_optimum_and_beat_the_grid():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(3, 400, generator=g, dtype=torch.float64) * 0.9 + 0.05
    w2 = fit_simplex(p[:2])
    assert abs(w2[0].item() - fit_weight(p[0], p[1])) < 1e-6 and abs(w2.sum().item() - 1) < 1e-12
    w3 = fit_simplex(p)
    assert abs(w3.sum().item() - 1) < 1e-12 and (w3 >= 0).all()
    best = torch.log(w3 @ p).sum()
    for i in range(21):  # no point of a grid over the simplex does better
        for j in range(21 - i):
            u = torch.tensor([i / 20, j / 20, 1 - (i + j) / 20], dtype=torch.float64)
            assert torch.log(u @ p).sum() <= best + 1e-9


def test_bucketed_weights_fit_each_bucket_alone():
    a = torch.tensor([0.9, 0.8, 0.1, 0.2, 0.5], dtype=torch.float64)
    b = torch.tensor([0.1, 0.2, 0.9, 0.7, 0.5], dtype=torch.float64)
    buckets = torch.tensor([0, 0, 2, 2, 1])
    w = fit(a, b, buckets)
    assert w.by_bucket == (1.0, fit_weight(a[4:], b[4:]), 0.0)
    assert w.per_target(torch.tensor([0, 2, 7]), 3).tolist() == [1.0, 0.0, 0.0]  # unseen bucket: the last one's
    assert count_buckets(torch.tensor([0, 1, 2, 3, 4, 7, 8, 1000])).tolist() == [0, 1, 2, 2, 3, 3, 4, 10]
    assert [bucket_label(k) for k in range(4)] == ["0", "1", "2–3", "4–7"]


def test_a_mixture_is_a_distribution_and_its_ends_are_its_parts():
    g = torch.Generator().manual_seed(1)
    log_a = torch.randn(7, 5, generator=g, dtype=torch.float64).log_softmax(-1)
    log_b = torch.randn(7, 5, generator=g, dtype=torch.float64).log_softmax(-1)
    for lam in (0.0, 0.3, 1.0, torch.linspace(0, 1, 7, dtype=torch.float64)):
        m = mix(log_a, log_b, lam)
        assert torch.allclose(m.exp().sum(-1), torch.ones(7, dtype=torch.float64), atol=1e-12)
    assert torch.equal(mix(log_a, log_b, 1.0), log_a) and torch.equal(mix(log_a, log_b, 0.0), log_b)
    assert torch.allclose(mix(log_a, log_b, 0.25).exp(), 0.25 * log_a.exp() + 0.75 * log_b.exp(), atol=1e-14)


def tiny(rung, **config):
    torch.manual_seed(0)
    return registry.build(rung, vocab_size=11, block_size=16, **config).eval()


TOKENS = torch.randint(0, 11, (203,), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("rung, config", [("gpt", {"n_layer": 1, "n_head": 2, "n_embd": 16}), ("lstm", {"n_embd": 8, "n_hidden": 16})])
def test_predictions_are_the_protocols_scores(rung, config):
    """Row t of predictions() is the distribution the protocol scores target t+1 with: its mean NLL is
    score()'s, rows sum to one, and with a window the same holds against score(window=)."""
    model = tiny(rung, **config)
    rows = predictions(model, TOKENS, 16)  # (n-1, V)
    assert rows.shape == (202, 11) and rows.dtype == torch.float64
    assert torch.allclose(rows.exp().sum(-1), torch.ones(202, dtype=torch.float64), atol=1e-9)
    nats = -rows.gather(1, TOKENS[1:, None]).mean().item()
    assert nats == pytest.approx(score(model, TOKENS, 16)["nats"], abs=1e-9)
    cut = predictions(model, TOKENS, 16, window=4)
    assert -cut.gather(1, TOKENS[1:, None]).mean().item() == pytest.approx(score(model, TOKENS, 16, window=4)["nats"], abs=1e-9)


def test_a_window_of_one_scores_each_target_from_the_character_before_it_alone():
    model = tiny("gpt", n_layer=1, n_head=2, n_embd=16)
    with torch.no_grad():
        logp = model(TOKENS[:-1, None]).double().log_softmax(-1)[:, 0]  # (n-1, V): each character on its own
    expected = -logp.gather(1, TOKENS[1:, None]).mean().item()
    assert score(model, TOKENS, 16, window=1)["nats"] == pytest.approx(expected, abs=1e-9)
    assert score(model, TOKENS, 16, window=16) == score(model, TOKENS, 16)  # the protocol's own window: identical
    with pytest.raises(ValueError, match="longer than the run's block_size"):
        score(model, TOKENS, 16, window=17)
    with pytest.raises(ValueError, match=">= 1"):
        score(model, TOKENS, 16, window=0)


def test_ngram_context_counts_are_the_training_counts_of_the_full_context():
    text = torch.tensor([0, 1, 2, 0, 1, 3, 0, 1, 2, 2, 0, 1])
    ngram = registry.build("ngram", vocab_size=4, block_size=8, order=3).fit(text)
    counts = {}
    for i in range(len(text) - 2):  # a context h = text[i:i+2] followed by text[i+2]
        counts[tuple(text[i:i + 2].tolist())] = counts.get(tuple(text[i:i + 2].tolist()), 0) + 1
    probe = torch.tensor([[0, 1, 2, 2, 0, 3, 3]])
    got = ngram.context_counts(probe)[0].tolist()
    want = [0] + [counts.get(tuple(probe[0, t - 1:t + 1].tolist()), 0) for t in range(1, 7)]  # position 0 has one character
    assert got == want and got[1] == 3  # "0 1" was followed by a character three times


def test_mixture_model_samples_causally_from_both_parts():
    a, b = tiny("gpt", n_layer=1, n_head=2, n_embd=16), tiny("bengio-mlp")
    m = Mixture(a, b, 0.3)
    x = TOKENS[None, :16]
    out = m(x)
    assert torch.allclose(out.double().exp().sum(-1), torch.ones(1, 16, dtype=torch.float64), atol=1e-5)
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 11
    assert torch.equal(m(y)[0, :10], out[0, :10])  # positions before the change do not see it


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def runs(tmp_path, tiny_corpus, capsys):
    made = {}
    for rung, extra in (("bengio-mlp", []), ("ngram", ["--model.order", "3"]), ("lstm", [])):
        code, _, err = run(capsys, "train", rung, "--data", tiny_corpus, "--out", tmp_path / rung, *TINY, *extra)
        assert code == 0, err
        made[rung] = tmp_path / rung
    return made


def test_eval_mix_and_window(runs, capsys):
    net, ngram = runs["bengio-mlp"], runs["ngram"]
    code, out, err = run(capsys, "eval", net, "--mix", ngram, "--split", "test", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["mix"] == {"runs": [str(ngram)], "fitted_on": "val"} and 0 <= r["weights"]["weight"] <= 1
    assert r["bpc"] <= min(r["parts"]["a"]["bpc"], r["parts"]["b"]["bpc"]) + 0.05  # fitted on val, so not guaranteed on test
    alone = json.loads(run(capsys, "eval", net, "--split", "test", "--json")[1])
    assert r["parts"]["a"]["nats"] == pytest.approx(alone["nats"], abs=1e-12)
    val = json.loads(run(capsys, "eval", net, "--mix", ngram, "--json")[1])
    assert val["bpc"] <= min(val["parts"]["a"]["bpc"], val["parts"]["b"]["bpc"]) + 1e-12  # on the split it was fitted on
    given = json.loads(run(capsys, "eval", net, "--mix", ngram, "--weight", "1", "--json")[1])
    assert given["nats"] == pytest.approx(given["parts"]["a"]["nats"], abs=1e-12) and given["mix"]["fitted_on"] is None
    by = json.loads(run(capsys, "eval", net, "--mix", ngram, "--weight", "by-context", "--json")[1])
    assert "by_context_count" in by["weights"] and by["nats"] <= val["nats"] + 1e-12  # more weights fitted on the same split
    code, out, _ = run(capsys, "eval", net, "--mix", ngram)
    assert code == 0 and "fitted on val" in out and "alone on the same characters" in out
    code, out, err = run(capsys, "eval", net, "--mix", ngram, runs["lstm"], "--split", "test", "--json")
    assert code == 0, err
    three = json.loads(out)
    assert len(three["weights"]["simplex"]) == 3 and abs(sum(three["weights"]["simplex"]) - 1) < 1e-9
    assert len(three["parts"]) == 3 and three["mix"]["runs"] == [str(ngram), str(runs["lstm"])]
    code, out, _ = run(capsys, "eval", net, "--mix", ngram, runs["lstm"])
    assert code == 0 and "mixture of 3 runs" in out
    code, out, _ = run(capsys, "eval", net, "--window", "2", "--json")
    assert code == 0 and json.loads(out)["window"] == 2
    code, out, _ = run(capsys, "eval", runs["lstm"], "--window", "4")
    assert code == 0 and "windows of 4 characters" in out


def test_eval_and_sample_mix_bad_inputs(runs, trained_pydoc, capsys):
    net, ngram, lstm = runs["bengio-mlp"], runs["ngram"], runs["lstm"]
    for argv, fragment in [
        (["eval", net, "--weight", "0.5"], "give --mix"),
        (["eval", net, "--mix", ngram, "--weight", "1.5"], "in [0, 1]"),
        (["eval", net, "--mix", ngram, "--weight", "half"], "auto, by-context or a number"),
        (["eval", net, "--mix", lstm, "--weight", "by-context"], "needs the second run to be an n-gram"),
        (["eval", net, "--mix", trained_pydoc], "different vocabularies"),
        (["eval", net, "--mix", net.parent / "nowhere"], "not found"),
        (["eval", net, "--mix", ngram, lstm, "--weight", "0.5"], "several --mix runs"),
        (["eval", net, "--window", "0"], "--window must be >= 1"),
        (["eval", net, "--window", "17"], "longer than the run's block_size"),
        (["eval", net, "--estimator", "nanogpt", "--window", "4"], "cannot be combined"),
        (["sample", net, "--weight", "0.5"], "give --mix"),
        (["sample", net, "--mix", ngram, "--weight", "by-context"], "sampling takes one"),
        (["sample", net, "--mix", lstm, "--weight", "0.5"], "stateful"),
    ]:
        assert_one_line_error(*run(capsys, *argv)[::2], fragment)


def test_sample_from_a_mixture_is_reproducible(runs, capsys):
    net, ngram = runs["bengio-mlp"], runs["ngram"]
    code, out, err = run(capsys, "sample", net, "--mix", ngram, "--prompt", "the ", "--tokens", "30")
    assert code == 0 and out.startswith("the ") and "fitted on val" in err
    assert run(capsys, "sample", net, "--mix", ngram, "--prompt", "the ", "--tokens", "30")[1] == out
    code, given, err = run(capsys, "sample", net, "--mix", ngram, "--weight", "0.5", "--prompt", "the ", "--tokens", "30")
    assert code == 0 and given.startswith("the ") and "fitted" not in err


@pytest.fixture
def trained_pydoc(tmp_path, capsys):
    code, _, err = run(capsys, "train", "bigram", "--data", "pydoc", "--out", tmp_path / "pydoc", *TINY)
    assert code == 0, err
    return tmp_path / "pydoc"


def test_sampling_a_mixture_feeds_windows_every_part_accepts(runs, tiny_corpus, tmp_path, capsys):
    """A network with a shorter window than the run it is mixed into: sampling past that window works."""
    code, _, err = run(capsys, "train", "gpt", "--data", tiny_corpus, "--out", tmp_path / "short", *TINY, "--data.block_size", "8")
    assert code == 0, err
    code, out, err = run(capsys, "sample", runs["bengio-mlp"], "--mix", tmp_path / "short", "--weight", "0.5", "--tokens", "40")
    assert code == 0 and len(out.strip()) >= 30, err
