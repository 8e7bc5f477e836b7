"""The rung conformance suite: every registered rung — zoo's own and any installed through the
``zoo.rungs`` entry point — must satisfy the contract in DESIGN.md.

Run it for one rung with ``pytest tests/test_conformance.py -k <name>``.
"""

import io

import pytest
import torch
from torch.nn import functional as F

import zoo
from zoo import registry
from zoo.evaluate import score

V, T, B = 11, 16, 2  # small vocabulary, window and batch keep every check fast


def make(name: str, seed: int = 0):
    """The rung at its quick preset's model settings, for vocabulary V and window T, in eval mode."""
    torch.manual_seed(seed)
    model = zoo.build(name, vocab_size=V, block_size=T, **registry.get(name).preset("quick")["model"])
    if not registry.get(name).trainable:
        model.fit(pattern_tokens(2000))
    return model.eval()


def pattern_tokens(n: int, noise: float = 0.05) -> torch.Tensor:
    """A learnable sequence: each token determines the next (t -> 3t+1 mod V), with a little noise."""
    g = torch.Generator().manual_seed(0)
    out = [0]
    for _ in range(n - 1):
        out.append((3 * out[-1] + 1) % V if torch.rand((), generator=g) >= noise else int(torch.randint(V, (), generator=g)))
    return torch.tensor(out)


def logits_of(model, idx):
    out = model(idx)
    return out[0] if getattr(model, "stateful", False) else out


def random_idx(seed=0, b=B, t=T):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


rungs = pytest.mark.parametrize("name", registry.names())


@rungs
def test_contract_attributes(name):
    info = registry.get(name)
    assert info.cls.__doc__ and info.cls.__doc__.strip(), "class docstring must cite the paper"
    assert {"quick", "book"} <= set(info.cls.presets)
    model = make(name)
    assert hasattr(model, "context_length"), "rungs declare context_length (int, or None for unbounded)"
    assert model.context_length is None or model.context_length >= 1
    if getattr(model, "stateful", False):
        assert model.context_length is None


@rungs
@pytest.mark.parametrize("t", [1, 5, T])
def test_logits_for_every_position(name, t):
    logits = logits_of(make(name), random_idx(t=t))
    assert logits.shape == (B, t, V)
    assert logits.dtype.is_floating_point
    assert torch.isfinite(logits).all()


@rungs
def test_causality_exact(name):
    """Changing any token after position t changes no logit at positions <= t — exactly."""
    model = make(name)
    idx = random_idx(1)
    base = logits_of(model, idx)
    for t in range(T - 1):
        changed = idx.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1 + torch.randint(0, V - 1, changed[:, t + 1:].shape)) % V
        out = logits_of(model, changed)
        assert torch.equal(out[:, : t + 1], base[:, : t + 1]), f"logits at <= {t} depend on later tokens"


@rungs
def test_context_length_honoured(name):
    """Logits at t depend on at most ``context_length`` tokens: earlier tokens change nothing at t."""
    model = make(name)
    c = model.context_length
    if c is None or c >= T:
        pytest.skip("context spans the whole window")
    idx = random_idx(2)
    base = logits_of(model, idx)
    for t in range(c, T):
        changed = idx.clone()
        changed[:, : t - c + 1] = (changed[:, : t - c + 1] + 1) % V
        assert torch.equal(logits_of(model, changed)[:, t], base[:, t]), f"position {t} sees beyond {c} tokens"


@rungs
def test_same_seed_same_model(name):
    idx = random_idx(3)
    assert torch.equal(logits_of(make(name, seed=5), idx), logits_of(make(name, seed=5), idx))


@rungs
def test_save_load_identical_logits(name):
    model = make(name)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = zoo.build(name, vocab_size=V, block_size=T, **registry.get(name).preset("quick")["model"]).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    idx = random_idx(4)
    assert torch.equal(logits_of(fresh, idx), logits_of(model, idx))


@rungs
def test_learns_a_small_batch(name):
    """Trainable rungs overfit one batch of a learnable pattern; count-based rungs fit it by counting."""
    tokens = pattern_tokens(B * 4 * (T + 1), noise=0.0).view(B * 4, T + 1)
    x, y = tokens[:, :-1], tokens[:, 1:]
    info = registry.get(name)
    uniform = torch.log(torch.tensor(float(V)))
    if not info.trainable:
        loss = F.cross_entropy(logits_of(make(name), x).flatten(0, 1), y.flatten())
        assert loss < 0.5 * uniform
        return
    torch.manual_seed(0)
    model = zoo.build(name, vocab_size=V, block_size=T, **info.preset("quick")["model"]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        loss = F.cross_entropy(logits_of(model, x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss < 0.35:
            break
    assert loss < 0.35, f"could not fit one batch: loss {loss.item():.3f} (uniform {uniform.item():.3f})"


@rungs
def test_scored_by_the_protocol(name):
    result = score(make(name), pattern_tokens(300), block_size=T)
    assert result["tokens"] == 299
    assert 0 < result["nats"] < 1.5 * torch.log(torch.tensor(float(V))).item()


@rungs
def test_trains_through_the_harness(name, tmp_path, tiny_corpus):
    """A few steps of the real harness on a tiny corpus: train, checkpoint, load back, same scores."""
    overrides = {"data": {"corpus": str(tiny_corpus), "block_size": T, "batch_size": 4},
                 "trainer": {"max_steps": 3, "val_every": 3, "val_batches": 1, "progress_bar": False}}
    metrics = zoo.train(zoo.make_config(name, "quick", overrides=overrides), tmp_path / "run", quiet=True)
    assert metrics["val"]["tokens"] > 0 and metrics["params"] >= 0
    run = zoo.load_run(tmp_path / "run")
    again = score(run.model, run.tokenizer.encode(tiny_corpus.read_text())[-400:], T)
    assert again == score(run.model, run.tokenizer.encode(tiny_corpus.read_text())[-400:], T)
    assert (tmp_path / "run" / "samples.txt").read_text(encoding="utf-8")
