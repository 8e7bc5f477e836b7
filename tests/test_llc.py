"""The LLC estimator (zoo.landscape.llc) on losses whose learning coefficient is known exactly, then its
reproducibility, its guards, and one run through a real module's ``Objective``.

Known answers: under p(w) ∝ exp(−nβ K(w)), a quadratic K in d directions gives E[nβ K] = d/2, and
K = a·w⁴ gives E[nβ K] = 1/4 (for a density ∝ exp(−A|w|^p), A|w|^p is Gamma(1/p, 1)-distributed). For the
quadratics the step ε is set so that ε · (largest curvature of the SGLD drift) = 0.05, which keeps SGLD's
discretisation bias under 1.3 % (a direction of drift curvature a has stationary variance 1 / (a (1 − εa/4))).
"""

import json
import math

import pytest
import torch
from torch import nn

from zoo.data import step_generator, window_batch
from zoo.errors import Diverged, ZooError
from zoo.landscape.llc import SGLD, estimate_llc, objective_llc
from zoo.landscape.objective import Objective

N = 1000  # the samples L_n averages over
NBETA = N / math.log(N)  # the default inverse temperature's nβ
D = 6
REL = 0.10  # tolerance on λ̂; each test also checks its run is precise enough for it (three standard errors)


def regression(noise: float):
    """y = X w_true + noise, X (N × D) full rank with column scales 0.8…1.25 so the Hessian's eigenvalues
    differ (≈ 0.64…1.6); w* the least-squares fit, so L_n(w) − L_n(w*) = ½ (w − w*)ᵀ H (w − w*), H = XᵀX / N."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, D, dtype=torch.float64, generator=g) * torch.linspace(0.8, 1.25, D, dtype=torch.float64)
    y = X @ torch.randn(D, dtype=torch.float64, generator=g) + noise * torch.randn(N, dtype=torch.float64, generator=g)
    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    return X, y, w_star, torch.linalg.eigvalsh(X.T @ X / N)


def assert_close(result, expected):
    standard_error = result["llc_std"] / math.sqrt(result["chains"])
    assert standard_error < REL * expected / 3, f"too noisy for the tolerance: ±{standard_error:.3f}"
    assert result["llc"] == pytest.approx(expected, rel=REL)


def test_a_regular_model_has_half_its_dimension():
    """Noise-free regression, full batch, no localisation: the posterior is Gaussian and λ = d/2 exactly."""
    X, y, w_star, h = regression(noise=0.0)
    loss = lambda w, batch: 0.5 * ((X @ w - y) ** 2).mean()
    config = SGLD(step=0.05 / (NBETA * h.max().item()), n=N, localization=0.0, chains=8, steps=6000, burn_in=300)
    result = estimate_llc(loss, w_star, lambda chain, step: None, config)
    assert result["nbeta"] == pytest.approx(NBETA)
    assert result["init_loss"] == pytest.approx(0.0, abs=1e-12)
    assert_close(result, D / 2)


def test_localization_shrinks_it_as_the_gaussian_formula_says_even_on_minibatches():
    """Noisy regression on minibatches of 32 rows, γ = nβ: E[nβ (L − L*)] = ½ Σ h_i / (h_i + γ/nβ) ≈ 1.51, not 3.
    L_m(w*) varies from batch to batch here (the noise), which the paired difference cancels."""
    X, y, w_star, h = regression(noise=0.3)
    loss = lambda w, rows: 0.5 * ((X[rows] @ w - y[rows]) ** 2).mean()
    rows = lambda chain, step: torch.randint(N, (32,), generator=step_generator(chain, step))
    gamma = NBETA
    config = SGLD(step=0.05 / (NBETA * h.max().item() + gamma), n=N, localization=gamma, chains=8, steps=6000, burn_in=300)
    result = estimate_llc(loss, w_star, rows, config)
    assert_close(result, 0.5 * (h / (h + gamma / NBETA)).sum().item())


def test_a_singular_model_has_a_quarter_per_parameter_not_a_half():
    """k copies of the model y = w² x at truth w = 0, noise-free: L_n(w) = ½ Σ_i w_i⁴ mean(x_i²). Each copy's
    learning coefficient is 1/4 (a regular parameter's would be 1/2), and they add: λ = k/4. The k copies
    only buy precision per step; the quartic needs no localisation."""
    k = 32
    x = torch.randn(N, k, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    second_moment = (x * x).mean(0)
    loss = lambda w, batch: 0.5 * (w**4 * second_moment).sum()  # = ½ mean((w² x)²), summed over the copies
    # nβ L ~ 1 at |w| ~ A^(-1/4), A = nβ · ½ mean(x²); the drift's curvature there is ~ 12 √A, twice out at the tail.
    A = NBETA * 0.5 * second_moment.max().item()
    config = SGLD(step=0.01 / math.sqrt(A), n=N, localization=0.0, chains=4, steps=4000, burn_in=500)
    result = estimate_llc(loss, torch.zeros(k, dtype=torch.float64), lambda chain, step: None, config)
    assert_close(result, k / 4)


def quadratic(w, batch):
    return 0.5 * (w**2).sum() * (1.0 + 0.1 * batch)  # a batch that changes the loss, to see it used


def batch_noise(chain, step):
    return torch.rand((), generator=step_generator(chain, step)).item()


def test_the_same_seed_gives_the_same_result_and_another_seed_other_chains():
    w_star = torch.ones(3)
    config = SGLD(step=1e-3, n=N, chains=3, steps=200, burn_in=50, seed=7)
    first, again = estimate_llc(quadratic, w_star, batch_noise, config), estimate_llc(quadratic, w_star, batch_noise, config)
    assert first == again
    assert len(set(first["per_chain"])) == 3  # the chains are independent of one another
    other = estimate_llc(quadratic, w_star, batch_noise, SGLD(step=1e-3, n=N, chains=3, steps=200, burn_in=50, seed=8))
    assert all(a != b for a, b in zip(first["per_chain"], other["per_chain"]))


def test_each_chain_is_nbeta_times_its_trace_after_the_burn_in():
    """The bookkeeping, where L(w*) = 0 on every batch: λ̂_chain = nβ · mean of the trace past the burn-in."""
    config = SGLD(step=1e-3, n=N, chains=2, steps=400, burn_in=100)
    result = estimate_llc(lambda w, batch: 0.5 * (w**2).sum(), torch.zeros(3), lambda chain, step: None, config)
    assert result["init_loss"] == 0.0 and result["trace_every"] == 1
    for estimate, trace in zip(result["per_chain"], result["trace"]):
        assert len(trace) == 400 and trace[0] == 0.0  # every chain starts at w*
        assert estimate == pytest.approx(NBETA * sum(trace[100:]) / 300, rel=1e-6)


def test_w_star_is_left_as_it_was():
    w_star = torch.ones(3, requires_grad=True)
    kept = w_star.detach().clone()
    estimate_llc(quadratic, w_star, batch_noise, SGLD(step=1e-2, n=N, chains=2, steps=50, burn_in=10))
    assert torch.equal(w_star.detach(), kept) and w_star.grad is None


def test_a_too_large_step_is_reported_as_divergence_not_as_nan():
    quartic = lambda w, batch: (w**4).sum()
    message = r"SGLD diverged in 2 of 2 chains \(chain 0 at step \d+, chain 1 at step \d+\).*lower the step"
    with pytest.raises(Diverged, match=message) as caught:
        estimate_llc(quartic, torch.zeros(2), lambda chain, step: None, SGLD(step=1.0, n=N, chains=2, steps=200, burn_in=10))
    trace = caught.value.result["trace"]  # what ran before it blew up, to look at
    assert len(trace) == 2 and all(math.isfinite(v) for chain in trace for v in chain)


def test_a_loss_not_finite_at_w_star_is_refused_as_such():
    with pytest.raises(ZooError, match="loss at w\\* is not finite"):
        estimate_llc(lambda w, b: w.sum() / 0.0, torch.ones(2), lambda chain, step: None, SGLD(step=1e-3, n=N, steps=10, burn_in=0))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(step=0.0), "step must be a finite number > 0, got 0.0"),
        (dict(step=float("nan")), "step must be a finite number > 0"),
        (dict(n=1), "n must be ≥ 2 for the default nβ"),
        (dict(nbeta=-1.0), "nbeta must be a finite number > 0"),
        (dict(localization=-1.0), "localization must be a finite number ≥ 0"),
        (dict(chains=0), "chains must be an integer > 0"),
        (dict(steps=2.5), "steps must be an integer > 0"),
        (dict(steps=100, burn_in=100), r"burn_in \(100\) must be less than steps \(100\)"),
        (dict(seed=-1), "seed must be an integer ≥ 0"),
    ],
)
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(ZooError, match=message):
        SGLD(**{"step": 1e-3, "n": N, **settings})


class Bigram(nn.Module):
    def __init__(self, vocab: int, width: int = 3):
        super().__init__()
        self.embed, self.out = nn.Embedding(vocab, width), nn.Linear(width, vocab)

    def forward(self, idx):
        return self.out(self.embed(idx))  # (B, T, V)


def test_a_tiny_language_model_through_its_objective():
    torch.manual_seed(0)
    tokens = torch.randint(5, (500,))
    model = Bigram(5)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    objective = Objective.of(model, *window_batch(tokens, 4, 8, seed=0, step=0))
    config = SGLD(step=1e-3, n=len(tokens), chains=2, steps=1500, burn_in=500)
    result = objective_llc(objective, tokens, config, batch_size=8)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert {"llc", "llc_std", "per_chain", "trace", "trace_every", "init_loss", "step", "nbeta", "localization",
            "chains", "steps", "burn_in", "n"} <= result.keys()
    assert len(result["per_chain"]) == 2 and all(math.isfinite(v) for v in [result["llc"], result["llc_std"], *result["per_chain"]])
    assert result["trace_every"] == 2 and [len(t) for t in result["trace"]] == [750, 750]  # 1500 steps, thinned
    assert 1.0 < result["init_loss"] < 3.0  # about log 5 ≈ 1.6 nats at random weights
    assert result["n"] == 500 and result["nbeta"] == pytest.approx(500 / math.log(500))
    json.dumps(result)  # plain numbers and lists: it can go straight into a report
