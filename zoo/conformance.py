"""The rung contract, checked: the conformance suite as functions, for `zoo check RUNG`, the test suite
and `zoo train` (which refuses a model that sees the future before it trains a step).

Each check takes a registered rung's name and raises ``AssertionError`` with one line saying what is
wrong, or ``Skip`` when it does not apply. The test suite (tests/test_conformance.py) parametrises
over the same ``CHECKS``, so the suite a user runs and the one CI runs cannot drift apart.

Causality is checked exactly by ``zoo.causality`` (which ``zoo train`` also runs before training).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F

from zoo.causality import causality_leak, logits_of, random_idx

V, T, B = 11, 16, 2  # small vocabulary, window and batch keep every check fast


class Skip(Exception):
    """The check does not apply to this rung (e.g. its context spans the whole window)."""


def make(name: str, seed: int = 0):
    """The rung at its quick preset's model settings, for vocabulary V and window T, in eval mode."""
    import zoo
    from zoo import registry

    torch.manual_seed(seed)
    model = zoo.build(name, vocab_size=V, block_size=T, **registry.get(name).preset("quick")["model"])
    if not registry.get(name).trainable:
        model.fit(pattern_tokens(2000))
    return model.eval()


def pattern_tokens(n: int, noise: float = 0.05, vocab_size: int = V) -> torch.Tensor:
    """A learnable sequence: each token determines the next (t -> 3t+1 mod V), with a little noise."""
    g = torch.Generator().manual_seed(0)
    out = [0]
    for _ in range(n - 1):
        keep = torch.rand((), generator=g) >= noise
        out.append((3 * out[-1] + 1) % vocab_size if keep else int(torch.randint(vocab_size, (), generator=g)))
    return torch.tensor(out)


# ---------------------------------------------------------------------------------------------- checks
def check_contract(name: str) -> None:
    """A docstring citing the paper, the required presets, a context_length (None only if stateful)."""
    from zoo import registry

    info = registry.get(name)
    assert info.cls.__doc__ and info.cls.__doc__.strip(), "the class docstring must cite the paper"
    assert {"quick", "book"} <= set(info.cls.presets), "presets must include quick and book"
    model = make(name)
    assert hasattr(model, "context_length"), "rungs declare context_length (an int, or None for unbounded)"
    assert model.context_length is None or model.context_length >= 1, f"context_length must be >= 1, got {model.context_length}"
    if getattr(model, "stateful", False):
        assert model.context_length is None, "a stateful rung's context is unbounded: context_length = None"


def check_shapes(name: str) -> None:
    """Finite float logits (B, t, V) for every position, for windows of 1, 5 and T tokens."""
    model = make(name)
    for t in (1, 5, T):
        logits = logits_of(model, random_idx(t=t))
        assert logits.shape == (B, t, V), f"window of {t}: logits of shape {tuple(logits.shape)}, expected {(B, t, V)}"
        assert logits.dtype.is_floating_point and torch.isfinite(logits).all(), f"window of {t}: logits must be finite floats"


def check_causality(name: str) -> None:
    """Changing any token after position t changes no logit at positions <= t, exactly."""
    leak = causality_leak(make(name), V, T)
    assert leak is None, leak


def check_context_length(name: str) -> None:
    """Logits at t depend on at most context_length tokens: earlier tokens change nothing at t."""
    model = make(name)
    c = model.context_length
    if c is None or c >= T:
        raise Skip("its context spans the whole window")
    idx = random_idx(2)
    base = logits_of(model, idx)
    for t in range(c, T):
        changed = idx.clone()
        changed[:, : t - c + 1] = (changed[:, : t - c + 1] + 1) % V
        assert torch.equal(logits_of(model, changed)[:, t], base[:, t]), f"position {t} sees beyond context_length = {c} tokens"


def check_determinism(name: str) -> None:
    """The same seed builds the same model: identical logits."""
    idx = random_idx(3)
    assert torch.equal(logits_of(make(name, seed=5), idx), logits_of(make(name, seed=5), idx)), "same seed, different logits"


def check_save_load(name: str) -> None:
    """A state_dict saved and loaded back with weights_only=True gives identical logits."""
    import zoo
    from zoo import registry

    model = make(name)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = zoo.build(name, vocab_size=V, block_size=T, **registry.get(name).preset("quick")["model"]).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    idx = random_idx(4)
    assert torch.equal(logits_of(fresh, idx), logits_of(model, idx)), "logits differ after save and load"


def check_learns(name: str) -> None:
    """Trainable rungs overfit one batch of a learnable pattern; count-based rungs fit it by counting."""
    import zoo
    from zoo import registry

    tokens = pattern_tokens(B * 4 * (T + 1), noise=0.0).view(B * 4, T + 1)
    x, y = tokens[:, :-1], tokens[:, 1:]
    info = registry.get(name)
    uniform = torch.log(torch.tensor(float(V)))
    if not info.trainable:
        loss = F.cross_entropy(logits_of(make(name), x).flatten(0, 1), y.flatten())
        assert loss < 0.5 * uniform, f"counting did not fit the pattern: loss {loss.item():.3f}"
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


def check_protocol(name: str) -> None:
    """The evaluation protocol scores every target once, with a finite loss below 1.5 × uniform."""
    from zoo.evaluate import score

    result = score(make(name), pattern_tokens(300), block_size=T)
    assert result["tokens"] == 299, f"scored {result['tokens']} targets of 299"
    assert 0 < result["nats"] < 1.5 * torch.log(torch.tensor(float(V))).item(), f"loss {result['nats']:.3f} nats"


def check_harness(name: str) -> None:
    """A few steps of the real harness on a tiny corpus: train, checkpoint, load back, same scores."""
    import zoo
    from zoo.evaluate import score

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "tiny.txt"
        corpus.write_text("".join("abcdefghijk"[int(i)] for i in pattern_tokens(3000)) + "\n", encoding="utf-8")
        overrides = {"data": {"corpus": str(corpus), "block_size": T, "batch_size": 4},
                     "trainer": {"max_steps": 3, "val_every": 3, "val_batches": 1, "progress_bar": False}}
        metrics = zoo.train(zoo.make_config(name, "quick", overrides=overrides), Path(tmp) / "run", quiet=True)
        assert metrics["val"]["tokens"] > 0 and metrics["params"] >= 0, "no validation score"
        run = zoo.load_run(Path(tmp) / "run")
        text = run.tokenizer.encode(corpus.read_text(encoding="utf-8"))[-400:]
        assert score(run.model, text, T) == score(run.model, text, T), "scoring the loaded run is not repeatable"
        assert (Path(tmp) / "run" / "samples.txt").read_text(encoding="utf-8"), "no sample written"


def check_hook_points(name: str) -> None:
    """A rung with a residual stream (zoo.hooks) exposes resid.0 .. resid.N; unembed(resid.N) is its logits; hooks change nothing; an optional readout point is all the head reads."""
    from zoo.hooks import capture, hook_names, patch, residual_stream, residual_stream_declared

    model = make(name)
    stream = residual_stream(model)
    if stream is None:
        assert not residual_stream_declared(type(model)), "it has unembed but no zoo.hooks.ResidualStream named resid"
        raise Skip("it declares no residual stream")
    names = [f"resid.{i}" for i in range(len(stream))]
    idx = random_idx(6)
    plain = logits_of(model, idx)
    with capture(model, names) as acts:
        hooked = logits_of(model, idx)
    assert torch.equal(hooked, plain), "reading the hook points changed the logits"
    assert sorted(acts) == sorted(names), f"forward passed through {sorted(acts)}, expected {names}"
    width = acts["resid.0"].shape[-1]
    for n in names:
        assert acts[n].shape == (B, T, width), f"{n} has shape {tuple(acts[n].shape)}, expected {(B, T, width)}"
    with torch.no_grad():
        assert torch.equal(model.unembed(acts[names[-1]]), plain), f"unembed({names[-1]}) is not the logits"
    with patch(model, {"resid.0": torch.zeros_like}):
        assert not torch.equal(logits_of(model, idx), plain), "zeroing resid.0 changed nothing: it is not on the path to the logits"
    if "readout" in hook_names(model):  # optional: the state the output projection reads, and nothing else reaches the logits
        with patch(model, {"readout": torch.zeros_like}):
            zeroed = logits_of(model, idx)
        assert torch.allclose(zeroed, zeroed[:1, :1].expand_as(zeroed)), "with readout zeroed the logits still vary: something bypasses it"


@torch.no_grad()
def check_decoding(name: str) -> None:
    """zoo sample's strategies run on it: beam search of width 1 is greedy, a wider beam's likelihood is its text's, a seed repeats a sample."""
    from zoo.data import CharTokenizer
    from zoo.generate import Decoding, decode

    model, tokenizer = make(name), CharTokenizer("abcdefghijk"[:V])
    greedy = decode(model, tokenizer, "abc", 12, Decoding("greedy"), block_size=T)
    one = decode(model, tokenizer, "abc", 12, Decoding("beam", beam=1), block_size=T)
    assert one.text == greedy.text, f"beam search of width 1 gave {one.text!r}, greedy {greedy.text!r}"
    wide = decode(model, tokenizer, "abc", 12, Decoding("beam", beam=3), block_size=T)
    ids = tokenizer.encode("abc" + wide.text)
    nats = -sum(F.log_softmax(logits_of(model, ids[None, max(0, t - T):t])[0, -1].double(), -1)[ids[t]].item()
                for t in range(3, len(ids)))  # each character given everything before it, from scratch
    assert abs(wide.nats - nats) < 1e-3 * max(1.0, nats), f"beam's text has {nats:.4f} nats, beam search reported {wide.nats:.4f}"
    settings = Decoding("sample", temperature=0.9, top_p=0.95)
    assert decode(model, tokenizer, "abc", 12, settings, seed=5, block_size=T) == decode(model, tokenizer, "abc", 12, settings, seed=5, block_size=T), \
        "the same seed gave two different samples"


CHECKS = {
    "contract": check_contract,
    "shapes": check_shapes,
    "causality": check_causality,
    "context-length": check_context_length,
    "determinism": check_determinism,
    "save-load": check_save_load,
    "learns": check_learns,
    "protocol": check_protocol,
    "harness": check_harness,
    "hook-points": check_hook_points,
    "decoding": check_decoding,
}


def run_checks(name: str) -> list[tuple[str, str, str]]:
    """(check, "pass" | "skip" | "fail", one line) for every check on rung ``name``."""
    out = []
    for check, fn in CHECKS.items():
        try:
            fn(name)
            out.append((check, "pass", (fn.__doc__ or "").strip().splitlines()[0]))
        except Skip as e:
            out.append((check, "skip", str(e)))
        except Exception as e:  # a rung's own error is a failure of that check, not of the command
            out.append((check, "fail", (str(e).strip().splitlines() or [type(e).__name__])[0]))
    return out
