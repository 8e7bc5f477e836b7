"""The Bengio et al. (2003) MLP: y = b + W x + U tanh(d + H x) over a window of n-1 shared embeddings."""

import pytest
import torch

from zoo.registry import build
from zoo.models.bengio_mlp import BengioMLP

V, n1, m, h = 11, 4, 5, 7  # vocabulary, window n-1, embedding width, hidden units


def make(**overrides):
    torch.manual_seed(0)
    return build("bengio-mlp", vocab_size=V, **{"context": n1, "n_embd": m, "n_hidden": h, **overrides}).eval()


def by_hand(model, window):
    """The paper's equation for one window of n-1 token ids (oldest first; V = padding)."""
    C = model.C.weight  # (V+1, m)
    x = torch.cat([C[i] for i in window])  # ((n-1) m,)
    y = model.U.bias + model.U.weight @ torch.tanh(model.H.bias + model.H.weight @ x)  # b + U tanh(d + H x)
    if model.W is not None:
        y = y + model.W.weight @ x  # + W x
    return y  # (V,)


@pytest.mark.parametrize("direct", [True, False])
def test_logits_are_the_papers_equation_at_every_position(direct):
    model = make(direct=direct)
    idx = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(0))
    logits = model(idx)  # (2, 9, V)
    assert logits.shape == (2, 9, V)
    for b in range(2):
        for t in range(9):
            window = [V] * max(0, n1 - 1 - t) + idx[b, max(0, t - n1 + 1) : t + 1].tolist()  # padding before the start
            assert len(window) == n1
            torch.testing.assert_close(logits[b, t], by_hand(model, window), rtol=1e-5, atol=1e-6)


def test_direct_connections_are_the_ablation_switch():
    with_w, without = make(direct=True), make(direct=False)
    assert with_w.W is not None and without.W is None
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(with_w) - count(without) == V * n1 * m  # W is V × (n-1)m, nothing else changes


def test_padding_is_an_extra_embedding_row_never_predicted():
    model = make()
    assert model.C.weight.shape == (V + 1, m)
    assert model(torch.zeros(1, 3, dtype=torch.long)).shape[-1] == V
    # Position 0 sees n-2 paddings then its token: not the same as a real character in those slots.
    idx = torch.tensor([[3, 3, 3, 3, 3]])
    logits = model(idx)
    assert not torch.allclose(logits[0, 0], logits[0, n1 - 1])  # padded window vs window of four 3s
    torch.testing.assert_close(logits[0, n1 - 1], logits[0, n1])  # full windows of equal content agree


def test_window_is_exactly_the_last_n_minus_1_tokens():
    model = make()
    assert model.context_length == n1
    idx = torch.randint(0, V, (1, 12), generator=torch.Generator().manual_seed(3))
    base = model(idx)
    for t in range(n1, 12):
        outside = idx.clone()
        outside[0, t - n1] = (outside[0, t - n1] + 1) % V  # just outside the window of t
        assert torch.equal(model(outside)[0, t], base[0, t])
        inside = idx.clone()
        inside[0, t - n1 + 1] = (inside[0, t - n1 + 1] + 1) % V  # the oldest slot of the window
        assert not torch.allclose(model(inside)[0, t], base[0, t])


def test_embeddings_are_shared_across_window_slots():
    # One matrix C serves every slot: a gradient through any slot lands in the same table.
    model = make()
    assert sum(1 for p in model.parameters() if p.shape == (V + 1, m)) == 1
    model(torch.tensor([[1, 2, 3, 4]]))[0, -1, 0].backward()
    touched = model.C.weight.grad.abs().sum(1).nonzero().flatten().tolist()
    assert touched == [1, 2, 3, 4]


@pytest.mark.parametrize("overrides", [{"context": 0}, {"n_embd": 0}, {"n_hidden": 0}, {"vocab_size": 0}])
def test_bad_hyperparameters_raise(overrides):
    with pytest.raises(ValueError):
        BengioMLP(BengioMLP.Config(**{"vocab_size": V, **overrides}))
