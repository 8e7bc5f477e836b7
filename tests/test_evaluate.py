"""The evaluation protocol against brute force: every token once, the same numbers as full-prefix scoring."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.evaluate import score, windows
from zoo.registry import build


@pytest.mark.parametrize("n", [2, 3, 17, 64, 65, 100, 257])
@pytest.mark.parametrize("w", [1, 2, 5, 16, 64])
def test_windows_score_every_target_exactly_once(n, w):
    scored = [t for start, end, first in windows(n, w) for t in range(first + 1, end + 1)]
    assert scored == list(range(1, n))
    for start, end, first in windows(n, w):
        assert 0 < end - start <= w and start <= first < end


class Trigram(nn.Module):
    """Toy rung whose logits at t depend on tokens t-2..t (context 3)."""

    context_length = 3

    def __init__(self, V=7):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, V, V))

    def forward(self, idx):
        out = self.w[0][idx]  # (B, T, V)
        out[:, 1:] += self.w[1][idx[:, :-1]]
        out[:, 2:] += self.w[2][idx[:, :-2]]
        return out


class RunningSum(nn.Module):
    """Toy stateful rung: the state is the running sum of one-hot inputs (unbounded context)."""

    stateful, context_length = True, None

    def __init__(self, V=7):
        super().__init__()
        self.V = V
        self.w = nn.Parameter(torch.randn(V, V, generator=torch.Generator().manual_seed(1)))

    def forward(self, idx, state=None):
        h = F.one_hot(idx, self.V).float().cumsum(1)  # (B, T, V)
        if state is not None:
            h = h + state[:, None]
        return (h / 10) @ self.w, h[:, -1]


def brute_force_nats(model, tokens, stateful=False) -> float:
    """Each target scored from its full prefix, one forward per token, summed in float64."""
    total = 0.0
    for j in range(1, len(tokens)):
        out = model(tokens[None, :j])
        logits = out[0] if stateful else out
        total += -F.log_softmax(logits[0, -1].double(), -1)[tokens[j]].item()
    return total / (len(tokens) - 1)


def test_windowed_protocol_equals_brute_force():
    tokens = torch.randint(0, 7, (200,), generator=torch.Generator().manual_seed(0))
    model = Trigram()
    result = score(model, tokens, block_size=8, batch_size=5)
    assert result["tokens"] == 199
    assert result["nats"] == pytest.approx(brute_force_nats(model, tokens), abs=1e-9)
    assert result["bpc"] == pytest.approx(result["nats"] / math.log(2), abs=1e-12)


def test_stateful_protocol_streams_the_whole_split():
    tokens = torch.randint(0, 7, (150,), generator=torch.Generator().manual_seed(2))
    model = RunningSum()
    result = score(model, tokens, block_size=16)
    assert result["nats"] == pytest.approx(brute_force_nats(model, tokens, stateful=True), abs=1e-9)


def test_scoring_is_deterministic_and_restores_mode():
    tokens = torch.randint(0, 7, (300,), generator=torch.Generator().manual_seed(3))
    model = Trigram().train()
    assert score(model, tokens, 16) == score(model, tokens, 16)
    assert model.training


# ------------------------------------------------------------------------------ nanoGPT's estimator
def test_nanogpt_estimator_is_the_mean_loss_of_random_windows():
    from zoo.evaluate import nanogpt_estimate

    torch.manual_seed(0)
    model = build("bigram", vocab_size=7)
    torch.nn.init.normal_(model.table.weight)
    tokens = torch.randint(0, 7, (300,), generator=torch.Generator().manual_seed(1))
    got = nanogpt_estimate(model, tokens, block_size=16, batch_size=4, batches=5, seed=3)
    # by hand, as nanoGPT's get_batch + estimate_loss do it
    g, losses = torch.Generator().manual_seed(3), []
    for _ in range(5):
        ix = torch.randint(len(tokens) - 16, (4,), generator=g)
        x = torch.stack([tokens[i:i + 16] for i in ix])
        y = torch.stack([tokens[i + 1:i + 17] for i in ix])
        losses.append(torch.nn.functional.cross_entropy(model(x).double().flatten(0, 1), y.flatten()).item())
    assert got["nats"] == pytest.approx(sum(losses) / 5, abs=1e-12)
    assert got["tokens"] == 5 * 4 * 16 and got["estimator"] == "nanogpt"


def test_nanogpt_estimator_of_a_uniform_model_is_log_v():
    from zoo.evaluate import nanogpt_estimate

    model = build("bigram", vocab_size=11)  # zero table: uniform
    tokens = torch.randint(0, 11, (100,), generator=torch.Generator().manual_seed(0))
    assert nanogpt_estimate(model, tokens, 8, 3, batches=2)["nats"] == pytest.approx(math.log(11), abs=1e-12)
