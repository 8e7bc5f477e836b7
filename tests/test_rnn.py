"""rnn / lstm: the written-out Elman recurrence is torch.nn.RNN; the state carry is real; the detach is real."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.data import split
from zoo.errors import ZooError
from zoo.registry import build, get

V = 11


def tiny(name, **overrides):
    torch.manual_seed(0)
    return build(name, vocab_size=V, **{"n_embd": 8, "n_hidden": 16, **overrides})


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def test_registered_as_stateful_and_unbounded():
    for name in ("rnn", "lstm"):
        info = get(name)
        assert info.stateful and info.chapter == "04-rnn"
        assert build(name, vocab_size=V).context_length is None  # an instance attribute, set from the config


@pytest.mark.parametrize("n_layer", [1, 2])
def test_elman_recurrence_is_torch_rnn(n_layer):
    """Same weights in torch.nn.RNN (tanh, bias_hh = 0) -> the same states and logits, from a carried h_0."""
    model = tiny("rnn", n_layer=n_layer).eval()
    ref = nn.RNN(8, 16, num_layers=n_layer, nonlinearity="tanh", batch_first=True)
    with torch.no_grad():
        for l in range(n_layer):
            getattr(ref, f"weight_ih_l{l}").copy_(model.W_xh[l].weight)
            getattr(ref, f"bias_ih_l{l}").copy_(model.W_xh[l].bias)
            getattr(ref, f"weight_hh_l{l}").copy_(model.W_hh[l])
            getattr(ref, f"bias_hh_l{l}").zero_()
    idx = torch.randint(0, V, (3, 13))
    h0 = torch.randn(n_layer, 3, 16)
    logits, state = model(idx, h0)
    with torch.no_grad():
        h_ref, state_ref = ref(model.wte(idx), h0)
        logits_ref = model.lm_head(h_ref)
    assert logits.shape == (3, 13, V) and state.shape == (n_layer, 3, 16)
    torch.testing.assert_close(state, state_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, logits_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_streaming_in_chunks_equals_one_pass(name):
    """Feeding chunk 2 the state left by chunk 1 gives exactly the one-pass logits: the carry is the whole past."""
    model = tiny(name, n_layer=2).eval()
    idx = torch.randint(0, V, (2, 20))
    full, _ = model(idx)
    first, state = model(idx[:, :7])
    second, _ = model(idx[:, 7:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_carried_state_changes_next_chunk(name):
    """The same second chunk after two different first chunks: different logits, at every position of it."""
    model = tiny(name).eval()
    chunk2 = torch.randint(0, V, (1, 6))
    _, state_a = model(torch.zeros(1, 5, dtype=torch.long))
    _, state_b = model(torch.full((1, 5), V - 1))
    logits_a, _ = model(chunk2, state_a)
    logits_b, _ = model(chunk2, state_b)
    logits_fresh, _ = model(chunk2)
    gap = (logits_a - logits_b).abs().amax(-1)  # (1, 6)
    assert (gap > 1e-6).all(), gap
    assert not torch.allclose(logits_a, logits_fresh)


@pytest.mark.parametrize("name", ["rnn", "lstm"])
@pytest.mark.parametrize("cut", [True, False])
def test_gradient_stops_at_a_detached_boundary(name, cut):
    """Chunk 1 uses character 0 only, chunk 2 never does: chunk 2's loss reaches E[0] only through the
    carried state. Detached (what truncated BPTT does) -> exactly zero; not detached -> nonzero (the control)."""
    model = tiny(name).train()
    chunk1 = torch.zeros(2, 5, dtype=torch.long)
    chunk2 = torch.randint(1, V, (2, 6))
    _, state = model(chunk1)
    if cut:
        state = detach(state)
    logits, _ = model(chunk2[:, :-1], state)
    F.cross_entropy(logits.reshape(-1, V), chunk2[:, 1:].reshape(-1)).backward()
    grad_row0 = model.wte.weight.grad[0].abs().max().item()
    assert (grad_row0 == 0.0) if cut else (grad_row0 > 0.0)


def test_gradient_flows_through_time_inside_a_chunk():
    """Within a chunk the loss at the last position reaches the first character's embedding: BPTT is real."""
    model = tiny("rnn")
    idx = torch.cat([torch.zeros(1, 1, dtype=torch.long), torch.randint(1, V, (1, 9))], 1)  # char 0 only at t=0
    logits, _ = model(idx)
    logits[0, -1].logsumexp(-1).backward()
    assert model.wte.weight.grad[0].abs().max() > 0


@pytest.mark.parametrize("bad", [{"n_hidden": 0}, {"n_layer": 0}, {"n_embd": 0}, {"dropout": 1.0}])
def test_bad_hyperparameters_raise(bad):
    with pytest.raises(ZooError):
        build("rnn", vocab_size=V, **bad)
    with pytest.raises(ZooError):
        build("lstm", vocab_size=V, **bad)


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_harness_carries_the_state_detached(name, tmp_path, tiny_corpus, one_thread):
    """The real harness (zoo.train, truncated BPTT): each chunk gets exactly the state the previous chunk left,
    with no graph attached (the gradient stops at the boundary), and a fresh None when the streams wrap."""
    from lightning.pytorch.callbacks import Callback

    import zoo

    class Recorder(Callback):
        def __init__(self):
            self.given, self.left, self.batches = [], [], []

        def on_train_start(self, trainer, pl_module):
            pl_module.model.register_forward_pre_hook(self.record_input)

        def record_input(self, module, args):
            if module.training:
                self.given.append(args[1] if len(args) > 1 else None)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.left.append(pl_module.state)
            self.batches.append(batch)

    recorder = Recorder()
    B, k, steps = 16, 32, 16
    chunks = (len(split(torch.arange(len(tiny_corpus.read_text())))["train"]) - 1) // B // k  # per stream
    assert 1 < chunks < steps - 1  # so the streams wrap around inside the run
    overrides = {"data": {"corpus": str(tiny_corpus), "block_size": k, "batch_size": B},
                 "trainer": {"max_steps": steps, "val_every": 100, "progress_bar": False}}
    zoo.train(zoo.make_config(name, "quick", overrides=overrides), tmp_path / "run", callbacks=[recorder], quiet=True)
    as_tuple = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
    resets = [bool(b[2]) for b in recorder.batches]
    assert resets == [step % chunks == 0 for step in range(steps)]
    assert len(recorder.given) == steps
    for step, given in enumerate(recorder.given):
        if resets[step]:
            assert given is None
            continue
        (x, _, _), (_, y_prev, _) = recorder.batches[step], recorder.batches[step - 1]
        assert torch.equal(x[:, 0], y_prev[:, -1])  # the chunk continues the previous one, stream by stream
        for s, prev in zip(as_tuple(given), as_tuple(recorder.left[step - 1])):
            assert torch.equal(s, prev) and s.abs().sum() > 0  # the carry: the values the last chunk left
            assert s.grad_fn is None and not s.requires_grad  # the truncation: no path back into that chunk
