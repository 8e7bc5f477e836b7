"""Hook points (zoo.hooks), the logit and tuned lens (zoo.lens), and `zoo lens` with its bad inputs."""

import json

import pytest
import torch
from torch import nn

import zoo
from zoo import registry
from zoo.conformance import T, V, make, pattern_tokens
from zoo.errors import ZooError
from zoo.evaluate import score
from zoo.hooks import ResidualStream, capture, hook_names, patch, residual_stream
from zoo.embedding import embedded, neighbours, readout_map, self_readout, sphere, stream_norms
from zoo.lens import TunedLens, fit_tuned_lens, layer_logits, score_layers
from conftest import cli, one_line

RESIDUAL = [n for n in registry.names() if residual_stream(make(n)) is not None]


def randomised(name: str) -> nn.Module:
    """The rung with every weight drawn at random, so zero-initialised blocks are no longer the identity."""
    model = make(name)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def test_the_book_rungs_with_a_residual_stream_declare_it():
    assert set(RESIDUAL) >= {"mlp-mixer", "set-transformer", "vaswani", "gpt"}
    assert not {"bigram", "ngram", "bengio-mlp", "rnn", "lstm"} & set(RESIDUAL)


def test_hook_points_have_no_parameters_and_keep_checkpoints_as_they_were():
    model = make("gpt")
    assert hook_names(model) == [f"resid.{i}" for i in range(model.config.n_layer + 1)] + ["readout"]
    assert not any(k.startswith(("resid", "readout")) for k in model.state_dict())


def test_capture_and_patch_leave_no_hook_behind_and_name_unknown_points():
    model = randomised("gpt")
    idx = torch.randint(V, (2, T))
    with capture(model) as acts:
        model(idx)
    assert set(acts) == set(hook_names(model))
    with patch(model, {"resid.1": torch.zeros_like}):
        ablated = model(idx)
    assert not torch.equal(ablated, model(idx))
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ZooError, match="no hook point named 'resid.9'"):
        with capture(model, ["resid.9"]):
            pass


@pytest.mark.parametrize("name", RESIDUAL)
def test_each_layers_readout_is_scored_by_the_protocol_and_the_last_is_evals_exactly(name):
    """Layer i's score equals ``score`` of a model whose forward is that layer's read-out; the last is the model."""
    model = randomised(name)
    tokens = pattern_tokens(400, noise=0.3)
    layers = score_layers(model, tokens, T, batch_size=3)
    # exactly: the same windows and float64 sums (a stateful rung is read window by window, from a fresh state)
    window = T if getattr(model, "stateful", False) else None
    assert layers[-1]["nats"] == score(model, tokens, T, batch_size=3, window=window)["nats"]
    assert layers[-1]["kl_to_final"] == 0.0

    class Readout(nn.Module):
        def __init__(self, i):
            super().__init__()
            self.model, self.i = model, i

        def forward(self, x):
            return layer_logits(self.model, x)[self.i]

    for i, row in enumerate(layers):
        assert row["nats"] == pytest.approx(score(Readout(i), tokens, T, batch_size=3)["nats"], rel=1e-12)
        assert row["tokens"] == len(tokens) - 1


def test_kl_and_top1_rates_are_what_they_say_on_one_window():
    model = randomised("gpt")
    tokens = pattern_tokens(T + 1, noise=0.3)  # one window: every position scored
    row = score_layers(model, tokens, T)[1]
    with torch.no_grad():
        logp = layer_logits(model, tokens[:-1][None]).double().log_softmax(-1)[:, 0]  # (L, T, V)
    p_final = logp[-1].exp()
    assert row["kl_to_final"] == pytest.approx((p_final * (logp[-1] - logp[1])).sum().item() / T, rel=1e-9)
    assert row["top1_next"] == pytest.approx((logp[1].argmax(-1) == tokens[1:]).float().mean().item())
    assert row["top1_current"] == pytest.approx((logp[1].argmax(-1) == tokens[:-1]).float().mean().item())


@pytest.mark.parametrize("name", RESIDUAL)
def test_an_untrained_tuned_lens_is_the_logit_lens(name):
    model = randomised(name)
    x = torch.randint(V, (2, T))
    with torch.no_grad():
        lens = TunedLens(len(model.resid), _width(model))
        assert torch.equal(layer_logits(model, x, lens), layer_logits(model, x))


def _width(model):
    with capture(model, ["resid.0"]) as acts:
        model(torch.zeros(1, 1, dtype=torch.long))
    return acts["resid.0"].shape[-1]


def test_the_tuned_lens_learns_to_read_early_layers_on_held_out_text_and_leaves_the_model_alone(one_thread):
    model = randomised("gpt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, held_out = pattern_tokens(3000, noise=0.2), pattern_tokens(3000, noise=0.2)[1500:]
    lens, history = fit_tuned_lens(model, train, T, steps=150, batch_size=8, lr=1e-2, seed=0)
    logit, tuned = score_layers(model, held_out, T), score_layers(model, held_out, T, lens)
    assert history[-1] < history[0]
    assert tuned[0]["kl_to_final"] < 0.5 * logit[0]["kl_to_final"]  # the embedding, read through its translator
    assert tuned[-1] == logit[-1]  # the last layer has no translator
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_a_residual_stream_slices_like_a_module_list():
    stream = ResidualStream(3)
    assert len(stream) == 4 and len(stream[1:]) == 3 and isinstance(stream[1:], ResidualStream)


@pytest.mark.parametrize("name", RESIDUAL)
def test_the_embed_readout_skips_every_block(name):
    """Row c is unembed(resid.0 of c alone): for gpt, the final norm and head applied to E[c] directly."""
    model = randomised(name)
    logp = self_readout(model, V)
    with torch.no_grad():
        e = embedded(model, V)  # (V, C)
        assert e.shape[0] == V
        assert torch.allclose(logp, model.unembed(e[:, None])[:, 0].double().log_softmax(-1))
        if name == "gpt":
            assert torch.equal(e, model.wte.weight)
            assert torch.allclose(logp.exp(), model.lm_head(model.norm_f(model.wte.weight)).double().softmax(-1))


def test_neighbours_are_by_cosine_and_never_oneself():
    model = make("gpt")
    with torch.no_grad():
        model.wte.weight.zero_()
        model.wte.weight[:, 0] = 1.0
        model.wte.weight[1, 1], model.wte.weight[2, 1], model.wte.weight[3, 1] = 0.1, 1.0, -3.0  # 1 is almost 0; 3 far from all
    ids, cos = neighbours(model, V, 2)
    assert (ids != torch.arange(V)[:, None]).all()
    assert ids[2, 0] == 1 and cos[2, 0] == pytest.approx(1.1 / (2 ** 0.5 * 1.01 ** 0.5))  # (1, 1) is nearest (1, 0.1)
    assert ids[3, 0] not in (1, 2) and cos[3, 0] == pytest.approx(1 / 10 ** 0.5)  # (1, -3): nearest a (1, 0)


def test_stream_norms_are_the_mean_and_spread_of_each_layers_l2_norm():
    model = randomised("gpt")
    tokens = pattern_tokens(T + 1)
    rows = stream_norms(model, tokens, T)
    with capture(model) as acts, torch.no_grad():
        model(tokens[:-1][None])
    for i, row in enumerate(rows):
        n = acts[f"resid.{i}"][0].double().norm(dim=-1)  # (T,)
        assert row["mean"] == pytest.approx(n.mean().item(), rel=1e-9)
        assert row["std"] == pytest.approx(n.std(unbiased=False).item(), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", RESIDUAL)
def test_the_readout_map_reproduces_the_logits_and_is_the_head_where_the_states_span_the_space(name):
    """logits = u Wᵀ + b at the readout point, by least squares. After RMSNorm (gpt) the states span all C
    dimensions and W is the output projection itself; after a LayerNorm they lie in a hyperplane and W is
    determined only on it (the rest of each w_v acts as a bias), but the logits are reproduced all the same."""
    model = randomised(name)
    u, z, W, b, residual = readout_map(model, pattern_tokens(400, noise=0.3), T)
    assert residual < 1e-4 * z.abs().max().item()
    if name == "gpt":
        assert torch.allclose(W, model.lm_head.weight.double(), atol=1e-4) and b.abs().max() < 1e-4


def test_the_sphere_of_gpt_is_read_from_its_own_norm_and_head():
    model = randomised("gpt")
    tokens = pattern_tokens(400, noise=0.3)
    found = sphere(model, tokens, T)
    with torch.no_grad(), capture(model, [f"resid.{model.config.n_layer}"]) as acts:
        logits = model(tokens[:T][None])[0].double()
    u = model.norm_f(acts[f"resid.{model.config.n_layer}"])[0].double()  # (T, C), the first window: all scored
    cos = torch.nn.functional.normalize(u, dim=-1) @ torch.nn.functional.normalize(model.lm_head.weight.double(), dim=-1).T
    agree_first_window = (logits.argmax(-1) == cos.argmax(-1)).double().mean().item()
    assert 0 <= found["top1_is_nearest_angle"] <= 1 and 0 <= found["r2_cos"] <= 1 and found["positions"] == len(tokens) - 1
    assert found["state_norm"]["mean"] == pytest.approx(u.norm(dim=-1).mean().item(), rel=0.2)
    assert abs(found["top1_is_nearest_angle"] - agree_first_window) <= 0.5  # the same measure, on more positions


# ---------------------------------------------------------------------------------------------- CLI


TINY = ["--data.block_size", "16", "--data.batch_size", "8", "--trainer.val_every", "10", "--trainer.val_batches", "2",
        "--trainer.progress_bar", "false", "--trainer.threads", "1", "--trainer.max_steps", "10"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lens")
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog"]
    corpus = tmp / "tiny.txt"
    corpus.write_text("\n".join(" ".join(words[(i * 7 + k * 3) % 8] for k in range(4)) + "." for i in range(500)) + "\n", encoding="utf-8")
    out = {}
    for rung in ("gpt", "lstm"):
        torch.set_num_threads(1)
        zoo.train(zoo.make_config(rung, "quick", overrides={"data": {"corpus": str(corpus), "block_size": 16, "batch_size": 8},
                                                            "trainer": {"max_steps": 10, "val_every": 10, "val_batches": 2,
                                                                        "progress_bar": False, "threads": 1}}),
                  tmp / rung, quiet=True)
        out[rung] = tmp / rung
    return out


def test_zoo_lens_reports_every_layer_and_its_last_is_zoo_eval(runs, capsys, tmp_path):
    code, out, err = cli(capsys, "lens", runs["gpt"], "--json", "--tuned-steps", "3", "--prompt", "the cat", "--top-k", "3",
                         "--figure", tmp_path / "figs" / "lens.png")
    assert code == 0, err
    report = json.loads(out)
    evaluated = json.loads(cli(capsys, "eval", runs["gpt"], "--json")[1])
    n_points = registry.get("gpt").preset("quick")["model"]["n_layer"] + 1
    assert report["hook_points"] == [f"resid.{i}" for i in range(n_points)] and len(report["logit_lens"]) == n_points
    assert report["logit_lens"][-1]["bpc"] == evaluated["bpc"]
    assert report["tuned_lens"]["layers"][-1]["bpc"] == evaluated["bpc"] and report["tuned_lens"]["steps"] == 3
    assert report["prompt"]["text"] == "the cat" and len(report["prompt"]["top"][0]) == 7 and len(report["prompt"]["top"][0][0]) == 3
    assert (tmp_path / "figs" / "lens.png").stat().st_size > 0
    code, out, err = cli(capsys, "lens", runs["gpt"], "--split", "test")
    assert code == 0 and "block 2 (output)" in out and "on test" in out, err


def test_zoo_lens_bad_input_is_one_line_and_overwrites_nothing(runs, capsys, tmp_path):
    one_line(*cli(capsys, "lens", runs["lstm"])[::2], "rung 'lstm' has no residual stream", "gpt")
    one_line(*cli(capsys, "lens", runs["gpt"], "--top-k", "0")[::2], "--top-k must be >= 1")
    one_line(*cli(capsys, "lens", runs["gpt"], "--top-k", "999")[::2], "at most the vocabulary")
    one_line(*cli(capsys, "lens", runs["gpt"], "--tuned-steps", "-1")[::2], "--tuned-steps must be >= 0")
    one_line(*cli(capsys, "lens", runs["gpt"], "--lr", "0")[::2], "--lr must be > 0")
    one_line(*cli(capsys, "lens", runs["gpt"], "--split", "train")[::2], "split")
    one_line(*cli(capsys, "lens", runs["gpt"], "--prompt", "Zebra")[::2], "not in the model's vocabulary")
    one_line(*cli(capsys, "lens", runs["gpt"], "--prompt", "")[::2], "--prompt is empty")
    one_line(*cli(capsys, "lens", tmp_path / "nowhere")[::2], "run directory not found")
    one_line(*cli(capsys, "lens", runs["gpt"], "--prompt", "t", "--figure", tmp_path / "one.png")[::2], "at least two characters")
    assert not (tmp_path / "one.png").exists()
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"mine")
    one_line(*cli(capsys, "lens", runs["gpt"], "--figure", kept)[::2], "already exists")
    assert kept.read_bytes() == b"mine"


def test_zoo_embed_reports_each_character_and_refuses_what_it_cannot_read(runs, capsys):
    code, out, err = cli(capsys, "embed", runs["gpt"], "--json", "--top-k", "2")
    assert code == 0, err
    report = json.loads(out)
    assert len({c["char"] for c in report["characters"]}) == len(report["characters"]) > 2
    first = report["characters"][0]
    assert len(first["top"]) == 2 and len(first["neighbours"]) == 2 and first["char"] not in [c for c, _ in first["neighbours"]]
    assert 0 <= report["self_top1_share"] <= 1 and len(report["norms"]["layers"]) == len(json.loads(cli(capsys, "lens", runs["gpt"], "--json")[1])["layers"])
    assert report["sphere"]["positions"] > 0 and 0 <= report["sphere"]["top1_is_nearest_angle"] <= 1
    code, out, err = cli(capsys, "embed", runs["gpt"])
    assert code == 0 and "predicts itself first" in out and "residual stream norm on val" in out and "smallest angle" in out, err
    one_line(*cli(capsys, "embed", runs["lstm"])[::2], "rung 'lstm' has no residual stream")
    one_line(*cli(capsys, "embed", runs["gpt"], "--top-k", "0")[::2], "--top-k must be between 1 and")
    one_line(*cli(capsys, "embed", runs["gpt"], "--top-k", "500")[::2], "--top-k must be between 1 and")
    one_line(*cli(capsys, "embed", runs["gpt"], "--split", "train")[::2], "split")
