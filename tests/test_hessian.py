"""Lanczos and stochastic Lanczos quadrature against a Hessian small enough to form densely (dim 85)."""

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.landscape.hessian import (
    bottom_eigenvalues,
    density,
    gauss_quadrature,
    lanczos,
    random_unit,
    share_below,
    spectral_density,
    top_eigenvalues,
)
from zoo.landscape.objective import Objective

F64 = torch.float64


class Bigram(nn.Module):
    """Embedding → tanh layer → logits. Its Hessian has a 7-fold zero eigenvalue: softmax ignores a common
    shift of the logits, i.e. of the output bias (1 direction) or of every output row (6 directions)."""

    def __init__(self, vocab=5, d=4, hidden=6):
        super().__init__()
        self.emb, self.hid, self.out = nn.Embedding(vocab, d), nn.Linear(d, hidden), nn.Linear(hidden, vocab)

    def forward(self, idx):
        return self.out(torch.tanh(self.hid(self.emb(idx))))


class OneHeadAttention(nn.Module):
    def __init__(self, vocab=5, d=4):
        super().__init__()
        self.emb, self.qkv, self.out = nn.Embedding(vocab, d), nn.Linear(d, 3 * d), nn.Linear(d, vocab)

    def forward(self, idx):
        h = self.emb(idx)  # (B, T, d)
        q, k, v = self.qkv(h).unsqueeze(1).chunk(3, -1)  # (B, 1, T, d) each
        return self.out(h + F.scaled_dot_product_attention(q, k, v, is_causal=True).squeeze(1))


def batch(g):
    x = torch.randint(0, 5, (4, 8), generator=g)
    y = torch.where(torch.rand(x.shape, generator=g) < 0.3, torch.randint(0, 5, x.shape, generator=g), (2 * x + 1) % 5)
    return x, y


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Bigram().to(F64)
    x, y = batch(torch.Generator().manual_seed(1))
    obj = Objective.of(model, x, y)
    theta = obj.flat()
    H = torch.autograd.functional.hessian(obj.loss, theta)  # (dim, dim)
    return model, obj, theta, H, torch.linalg.eigvalsh(H)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_hvp_is_the_dense_hessian_times_v(tiny):
    _, obj, theta, H, _ = tiny
    assert torch.allclose(H, H.T, atol=1e-12)
    for seed in range(3):
        v = torch.randn(obj.dim, generator=gen(seed), dtype=F64)
        assert torch.allclose(obj.hvp(theta, v), H @ v, rtol=0, atol=1e-12)


def test_full_lanczos_recovers_every_distinct_eigenvalue(tiny):
    _, obj, theta, H, ev = tiny
    t = lanczos(partial(obj.hvp, theta), obj.dim, obj.dim, generator=gen(), matvec_dtype=F64)
    ritz = torch.linalg.eigvalsh(t.matrix())
    # one start vector sees each eigenspace once: the 7-fold zero is one Ritz value, and Lanczos breaks down there
    distinct = 1 + int((ev.diff() > 1e-9).sum())
    assert distinct == obj.dim - 6 and t.matvecs == len(t.alpha) == distinct
    gap = (ritz[:, None] - ev[None, :]).abs()  # (m, dim)
    assert gap.min(1).values.max() < 1e-10 and gap.min(0).values.max() < 1e-10  # the same set, both ways
    # full reorthogonalisation keeps Q orthonormal, so Q H Qᵀ is the tridiagonal T
    Q = t.vectors
    assert torch.allclose(Q @ Q.T, torch.eye(len(Q), dtype=F64), rtol=0, atol=1e-12)
    assert torch.allclose(Q @ H @ Q.T, t.matrix(), rtol=0, atol=1e-12)


def test_breakdown_returns_the_shorter_tridiagonal():
    D = torch.tensor([1.0, 2.0, 5.0]).repeat_interleave(4).to(F64)  # three eigenvalues, each 4-fold
    t = lanczos(lambda v: D * v, 12, 12, generator=gen(), matvec_dtype=F64)
    assert len(t.alpha) == 3 and len(t.beta) == 2
    assert torch.allclose(torch.linalg.eigvalsh(t.matrix()), torch.tensor([1.0, 2.0, 5.0], dtype=F64), atol=1e-12)
    v0 = torch.zeros(12, dtype=F64)
    v0[[0, 11]] = 1.0  # in the span of two eigenvectors: an invariant subspace of dimension 2
    t = lanczos(lambda v: D * v, 12, 12, v0=v0, matvec_dtype=F64)
    assert torch.allclose(torch.linalg.eigvalsh(t.matrix()), torch.tensor([1.0, 5.0], dtype=F64), atol=1e-12)


def test_few_steps_find_both_ends_first(tiny):
    _, obj, theta, _, ev = tiny
    hvp = partial(obj.hvp, theta)
    top = top_eigenvalues(hvp, obj.dim, 2, 20, gen(), matvec_dtype=F64)
    bottom = bottom_eigenvalues(hvp, obj.dim, 2, 20, gen(), matvec_dtype=F64)
    assert torch.allclose(torch.tensor(top, dtype=F64), ev.flip(0)[:2], rtol=0, atol=1e-6)
    assert torch.allclose(torch.tensor(bottom, dtype=F64), ev[:2], rtol=0, atol=1e-6)
    assert bottom[0] < 0  # this untrained point is a saddle
    assert top[0] <= ev[-1] + 1e-12 and bottom[0] >= ev[0] - 1e-12  # Ritz values lie inside the spectrum
    assert top_eigenvalues(hvp, obj.dim, 2, 5, gen(), matvec_dtype=F64)[1] < ev[-2] - 1e-3  # 5 steps are not enough


def test_float32_objective_by_default(tiny):
    model, obj64, _, _, ev = tiny
    obj = Objective.of(copy.deepcopy(model).float(), obj64.x, obj64.y)
    top = top_eigenvalues(partial(obj.hvp, obj.flat()), obj.dim, 2, 20, gen())  # float32 products, float64 Lanczos
    assert torch.allclose(torch.tensor(top, dtype=F64), ev.flip(0)[:2], rtol=0, atol=1e-5)


def moments(nodes, weights, kmax):
    return torch.stack([(weights * nodes ** k).sum() for k in range(kmax + 1)])


def test_lanczos_is_gauss_quadrature_of_the_spectral_measure(tiny):
    _, obj, _, H, ev = tiny
    v = 3 * torch.randn(obj.dim, generator=gen(5), dtype=F64)  # not unit: the rule is for v / ‖v‖
    exact = torch.stack([v @ torch.linalg.matrix_power(H, k) @ v / (v @ v) for k in range(7)])  # vᵀHᵏv / vᵀv
    scale = ev.abs().max() ** torch.arange(7)
    full = gauss_quadrature(lanczos(lambda u: H @ u, obj.dim, obj.dim, v0=v, matvec_dtype=F64))
    assert ((moments(*full, 6) - exact).abs() / scale).max() < 1e-12  # after breakdown: exact for all k
    nodes, weights = gauss_quadrature(lanczos(lambda u: H @ u, obj.dim, 3, v0=v, matvec_dtype=F64))
    err = (moments(nodes, weights, 6) - exact).abs() / scale
    assert err[:6].max() < 1e-12  # m = 3 nodes: exact up to degree 2m − 1 = 5 ...
    assert err[6] > 1e-6  # ... and no further
    assert ev[0] <= nodes.min() and nodes.max() <= ev[-1]


def test_slq_density_and_share_approximate_the_true_spectrum(tiny):
    _, obj, _, H, ev = tiny
    d, n, sigma = obj.dim, 100, 0.05
    nw = spectral_density(lambda u: H @ u, d, 30, n, gen(), matvec_dtype=F64)
    assert all(abs(sum(w) - 1) < 1e-12 for w in nw["weights"])
    grid = torch.linspace(-1.2, 1.4, 1301, dtype=F64)  # (G,) the spectrum ± 9σ
    dt = grid[1] - grid[0]
    g = torch.exp(-0.5 * ((grid[:, None] - ev[None, :]) / sigma) ** 2) / (sigma * (2 * torch.pi) ** 0.5)  # (G, d)
    true = g.mean(1)  # (G,) the smoothed density (1/d) Σ_k g_σ(t − λ_k)
    est = density(nw, grid, sigma)
    assert abs(est.sum() * dt - 1) < 1e-6
    # Hutchinson's estimate of tr A / d from n normalised Rademacher vectors has variance ≤ 2‖A‖_F² / (n d²);
    # with A = g_σ(t − H) that bounds E|φ̂(t) − φ(t)| pointwise, so its integral is the Monte-Carlo scale
    # of the L1 error (30 nodes resolve σ = 0.05 on this range, so the quadrature bias is smaller).
    mc = ((2 / n) ** 0.5 * (g ** 2).sum(1).sqrt() / d).sum() * dt  # ≈ 0.04 here
    l1 = (est - true).abs().sum() * dt
    assert l1 < 2 * mc
    uniform = {**nw, "weights": [[1 / len(w)] * len(w) for w in nw["weights"]]}  # forgetting τ is caught
    assert ((density(uniform, grid, sigma) - true).abs().sum() * dt) > 2 * mc
    # the share of |λ| < 0.05 (37 of 85): Monte-Carlo sd √(2·37/n)/d ≈ 0.01, plus a node straddling ±0.05
    assert abs(share_below(nw, 0.05) - (ev.abs() < 0.05).double().mean()) < 0.05


def test_share_below_is_exact_per_vector_after_breakdown(tiny):
    _, obj, _, H, _ = tiny
    v = random_unit(obj.dim, gen(3))
    lam, U = torch.linalg.eigh(H)
    nodes, weights = gauss_quadrature(lanczos(lambda u: H @ u, obj.dim, obj.dim, v0=v, matvec_dtype=F64))
    one = {"nodes": [nodes.tolist()], "weights": [weights.tolist()]}
    for thr in (0.01, 0.05, 0.3):  # even where 30 steps of SLQ resolve the share poorly (0.01), the full rule is exact
        exact = ((U.T @ v) ** 2 * (lam.abs() < thr)).sum()  # Σ_k (u_kᵀv)² [|λ_k| < thr]
        assert abs(share_below(one, thr) - exact) < 1e-10


def test_reproducible_counted_and_never_writes_to_the_weights(tiny):
    model, obj, theta, _, _ = tiny
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    theta0 = theta.clone()
    calls = []

    def hvp(v):
        calls.append(1)
        return obj.hvp(theta, v)

    a = spectral_density(hvp, obj.dim, 10, 4, gen(7), matvec_dtype=F64)
    assert a["matvecs"] == len(calls) == 40 and (a["steps"], a["vectors"], a["dim"]) == (10, 4, obj.dim)
    assert a == spectral_density(hvp, obj.dim, 10, 4, gen(7), matvec_dtype=F64)
    assert a != spectral_density(hvp, obj.dim, 10, 4, gen(8), matvec_dtype=F64)
    top = partial(top_eigenvalues, hvp, obj.dim, 3, 10, matvec_dtype=F64)
    assert top(gen(7)) == top(gen(7)) != top(gen(8))
    assert torch.equal(theta, theta0)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None


def test_hvp_through_causal_sdpa_matches_finite_differences():
    torch.manual_seed(0)
    x, y = batch(gen(2))
    obj = Objective.of(OneHeadAttention().to(F64), x, y)
    theta = obj.flat()
    v = torch.randn(obj.dim, generator=gen(4), dtype=F64)
    hv = obj.hvp(theta, v)  # CPU flash attention has no double backward; the math kernel does
    eps = 1e-5
    fd = (obj.grad(theta + eps * v)[1] - obj.grad(theta - eps * v)[1]) / (2 * eps)
    assert torch.allclose(hv, fd, rtol=0, atol=1e-7 * hv.abs().max())
