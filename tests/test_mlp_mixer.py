"""The causal MLP-Mixer: token mixing is exactly causal, position-indexed, and works for any T <= block_size."""

import pytest
import torch

from zoo.registry import build
from zoo.models.mlp_mixer import CausalTokenMixing, MLPMixer

V, T = 13, 12


def make(**overrides):
    torch.manual_seed(0)
    return build("mlp-mixer", vocab_size=V, block_size=T, **{"n_embd": 16, "n_layer": 2, **overrides}).eval()


@pytest.mark.parametrize("token_expansion", [1, 3])
def test_every_future_position_perturbed_changes_nothing_before_it(token_expansion):
    model = make(token_expansion=token_expansion)
    with torch.no_grad():  # weights far from init so every allowed path carries signal
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    idx = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(0))
    base = model(idx)  # (3, T, V)
    for s in range(1, T):  # perturb one future position at a time ...
        for delta in (1, 5):
            changed = idx.clone()
            changed[:, s] = (changed[:, s] + delta) % V
            out = model(changed)
            assert torch.equal(out[:, :s], base[:, :s]), f"a change at {s} leaked into an earlier position"
            assert not torch.equal(out[:, s], base[:, s])  # ... while the position itself does see it
    for t in range(T - 1):  # ... and all of the future at once
        changed = idx.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % V
        assert torch.equal(model(changed)[:, : t + 1], base[:, : t + 1])


def test_gradient_of_an_output_reaches_no_later_input():
    # Stronger than perturbing tokens: the Jacobian of output t w.r.t. the embedding at s > t is exactly zero.
    model = make(token_expansion=2)
    x = torch.randn(1, T, 16, requires_grad=True)  # (1, T, C) features after the embedding
    h = x
    for block in model.blocks:
        h = block(h)
    for t in range(T):
        (grad,) = torch.autograd.grad(h[0, t].sum(), x, retain_graph=True)
        assert torch.all(grad[0, t + 1 :] == 0), f"output {t} has a gradient from a later position"
        assert grad[0, : t + 1].abs().sum(-1).min() > 0, f"output {t} ignores an earlier position"


def test_both_token_mixing_layers_are_masked():
    mixing = CausalTokenMixing(block_size=5, expansion=2)
    unit_pos = torch.arange(10) // 2
    assert torch.equal(mixing.mask1, unit_pos[:, None] >= torch.arange(5)[None, :])  # unit u reads s <= p(u)
    assert torch.equal(mixing.mask2, torch.arange(5)[:, None] >= unit_pos[None, :])  # output t reads p(u) <= t
    assert torch.all(mixing.w1[~mixing.mask1] == 0) and torch.all(mixing.w2[~mixing.mask2] == 0)
    # The masks are not saved: they follow from the config.
    assert set(mixing.state_dict()) == {"w1", "b1", "w2", "b2"}


def test_any_shorter_window_equals_the_prefix_of_the_full_one():
    model = make(token_expansion=2)
    idx = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(1))
    full = model(idx)
    for t in range(1, T + 1):
        torch.testing.assert_close(model(idx[:, :t]), full[:, :t], rtol=1e-6, atol=1e-6)


def test_longer_than_block_size_is_a_clear_error():
    with pytest.raises(ValueError, match="block_size"):
        make()(torch.zeros(1, T + 1, dtype=torch.long))


def test_mixing_is_by_absolute_position():
    # The same content shifted by one position gets different logits: the weights are position-indexed,
    # unlike a convolution (or attention with relative positions) that would give the shifted output.
    model = make()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    idx = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(2))
    shifted = torch.cat([idx[:, :1], idx[:, :-1]], dim=1)  # idx moved one step right
    assert not torch.allclose(model(shifted)[:, 1:], model(idx)[:, :-1], atol=1e-4)


def test_gradients_never_flow_into_masked_weights():
    model = make(token_expansion=2)
    model.train()
    idx = torch.randint(0, V, (2, T))
    model(idx).sum().backward()
    for block in model.blocks:
        mixing = block.token_mixing
        assert torch.all(mixing.w1.grad[~mixing.mask1] == 0) and torch.all(mixing.w2.grad[~mixing.mask2] == 0)


@pytest.mark.parametrize("overrides", [{"n_layer": 0}, {"token_expansion": 0}, {"block_size": 0}])
def test_bad_hyperparameters_raise(overrides):
    with pytest.raises(ValueError):
        MLPMixer(MLPMixer.Config(**{"vocab_size": V, "block_size": T, **overrides}))
