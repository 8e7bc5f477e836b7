"""set-transformer: attention without positions sees its prefix as a bag (one layer); depth leaks order back."""

import pytest
import torch

from zoo.errors import ZooError
from zoo.registry import build, get

V, T = 13, 12


def tiny(n_layer, block_size=T, seed=0):
    torch.manual_seed(seed)
    return build("set-transformer", vocab_size=V, block_size=block_size, n_embd=16, n_head=2, n_layer=n_layer).eval()


def permuted_prefixes(n=6):
    """Rows of one batch: a sequence, then n random reorderings of its first T-1 tokens (last token kept)."""
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, V, (1, T), generator=g)
    rows = [idx]
    for _ in range(n):
        perm = torch.randperm(T - 1, generator=g)
        rows.append(torch.cat([idx[:, :-1][:, perm], idx[:, -1:]], 1))
    return torch.cat(rows)  # (n+1, T)


def test_registered():
    info = get("set-transformer")
    assert info.chapter == "05-set-transformer" and not info.stateful
    assert tiny(1).context_length == T


def test_one_layer_sees_a_bag():
    """One SAB: reordering the earlier tokens leaves the prediction at the last position unchanged."""
    logits = tiny(1)(permuted_prefixes())  # (7, T, V)
    for row in logits[1:]:
        torch.testing.assert_close(row[-1], logits[0, -1], rtol=1e-5, atol=1e-5)
    # ... while the order is there to be seen: the earlier positions' predictions do change
    assert (logits[1:, :-1] - logits[0, :-1]).abs().max() > 1e-3


def test_two_layers_leak_order_through_the_mask():
    """Two SABs: row s of layer 1 summarises the bag 0..s, so layer 2 sees nested bags — order matters."""
    logits = tiny(2)(permuted_prefixes())  # (7, T, V)
    gaps = (logits[1:, -1] - logits[0, -1]).abs().amax(-1)  # (6,)
    assert (gaps > 1e-3).all(), gaps


def test_no_positional_information():
    """Nothing in the model is indexed by position: the same weights work for any block_size, with the same
    parameter shapes, and the logits of a sequence do not depend on the window it was built for."""
    small, large = tiny(2, block_size=T), tiny(2, block_size=4 * T)
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in large.state_dict().items()}
    large.load_state_dict(small.state_dict())
    idx = torch.randint(0, V, (2, T))
    torch.testing.assert_close(large(idx), small(idx))
    # a sequence of identical tokens gives identical rows everywhere: position t is indistinguishable from 0
    same = small(torch.full((1, T), 3))  # (1, T, V)
    torch.testing.assert_close(same[0], same[0, :1].expand(T, V), rtol=1e-5, atol=1e-5)


def test_longer_than_block_size_is_rejected():
    with pytest.raises(ValueError, match="block_size"):
        tiny(1)(torch.zeros(1, T + 1, dtype=torch.long))


@pytest.mark.parametrize("bad", [{"n_embd": 30, "n_head": 4}, {"n_layer": 0}, {"n_head": 0}, {"dropout": 1.5}, {"ff_mult": 0}])
def test_bad_hyperparameters_raise(bad):
    with pytest.raises(ZooError):
        build("set-transformer", vocab_size=V, block_size=T, **bad)
