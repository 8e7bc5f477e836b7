"""The Hessian's spectrum from Hessian-vector products alone: Lanczos and stochastic Lanczos quadrature.

H = ∇²L(θ) is dim × dim and never formed; everything here touches it only through ``matvec(v) = H v``
(for an ``Objective``, ``functools.partial(obj.hvp, theta)``), and reports how many products it spent.

Lanczos (Lanczos 1950; Golub & Van Loan §10.1). From a unit vector q₁, build an orthonormal basis
Q_m = [q₁ … q_m] of the Krylov space K_m = span{q₁, H q₁, …, H^{m−1} q₁} by the three-term recurrence

    β_j q_{j+1} = H q_j − α_j q_j − β_{j−1} q_{j−1},    α_j = q_jᵀ H q_j,   β_j = ‖β_j q_{j+1}‖,

so that Q_mᵀ H Q_m = T_m, the symmetric tridiagonal matrix with α on the diagonal and β beside it. The
eigenvalues of T_m (Ritz values) approximate H's; the extremal ones converge first, at a rate set by the
gap to the next eigenvalue, which is why a few dozen products find the top of the spectrum. In floating
point the q_j lose orthogonality as soon as a Ritz value converges (Paige 1971), and the recurrence then
finds the same eigenvalue again ("ghost" copies). Here every new vector is orthogonalised against all the
previous ones (Gram–Schmidt, a second pass when the first cancelled most of the vector: Kahan's "twice is
enough"), at O(m² dim) work and m·dim float64 numbers of memory — fine for dim ≲ 10⁶, m ≲ 100.
If β_j ≈ 0 the Krylov space is H-invariant (q₁ lies in the span of j eigenvectors): the Ritz values are
then exact eigenvalues, and the iteration stops with the shorter T_j. From one start vector Lanczos
sees each eigenspace once, so a repeated eigenvalue (zero, for a model's symmetries) appears once.

Stochastic Lanczos quadrature (Golub & Meurant 1994, 2010; Lin, Saad & Yang 2016; Ghorbani, Krishnan &
Xiao 2019). Write H = Σ_k λ_k u_k u_kᵀ. For a unit vector v,

    vᵀ f(H) v = Σ_k (u_kᵀ v)² f(λ_k) = ∫ f dμ_v,

an integral against the spectral measure μ_v, point masses (u_kᵀ v)² at the eigenvalues. Lanczos started
at q₁ = v gives μ_v's m-point Gauss quadrature rule (Golub & Welsch 1969): with T_m = U diag(θ) Uᵀ,

    vᵀ f(H) v ≈ e₁ᵀ f(T_m) e₁ = Σ_i τ_i f(θ_i),    nodes θ_i,   weights τ_i = U_{0,i}²  (Σ τ_i = 1),

exact for every polynomial f of degree ≤ 2m − 1 (and for every f after a breakdown). For a random v with
E[v vᵀ] = I / dim — Rademacher entries ±1/√dim, or a normalised Gaussian — E_v[vᵀ f(H) v] = tr f(H) / dim
(Hutchinson 1989), the average of f over the eigenvalues. So, averaged over n vectors,

    φ(t) = (1/n) Σ_v Σ_i τ_i g_σ(t − θ_i),    g_σ(x) = exp(−x²/2σ²) / (σ√(2π)),

estimates the eigenvalue density smoothed by g_σ, (1/dim) Σ_k g_σ(t − λ_k), and the share of eigenvalues
with |λ| < ε is estimated by (1/n) Σ_v Σ_i τ_i [|θ_i| < ε]. The resolution is limited: each vector gives
only m nodes, so a cluster of eigenvalues — the many tiny ones of a trained network — shows up as one
heavy node near 0 whose weight is the cluster's share, and structure finer than the node spacing is lost;
σ should be wider than that spacing. A step function such as [|λ| < ε] is not a low-degree polynomial,
so its estimate is only as sharp as the nodes near ±ε. The n-vector average carries Monte-Carlo error
of order 1/√(n · dim) for a spread-out spectrum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


class Tridiagonal(NamedTuple):
    """The result of m Lanczos steps: T_m's diagonal α (m,), off-diagonal β (m−1,), and Q_m (m, dim)."""

    alpha: torch.Tensor
    beta: torch.Tensor
    vectors: torch.Tensor

    @property
    def matvecs(self) -> int:
        return len(self.alpha)  # one product H q_j per step

    def matrix(self) -> torch.Tensor:
        return torch.diag(self.alpha) + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)  # (m, m)


def random_unit(dim: int, generator: torch.Generator | None = None, kind: str = "rademacher",
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A random unit vector with E[v vᵀ] = I / dim: entries ±1/√dim, or a normalised standard Gaussian."""
    if kind == "rademacher":
        signs = torch.randint(0, 2, (dim,), generator=generator, dtype=dtype) * 2 - 1  # (dim,)
        return signs / dim ** 0.5
    if kind == "gaussian":
        v = torch.randn(dim, generator=generator, dtype=dtype)  # (dim,)
        return v / v.norm()
    raise ValueError(f"start vectors are 'rademacher' or 'gaussian', not {kind!r}")


def lanczos(matvec: MatVec, dim: int, steps: int, v0: torch.Tensor | None = None,
            generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64, *,
            matvec_dtype: torch.dtype = torch.float32, start: str = "gaussian", tol: float = 1e-10) -> Tridiagonal:
    """``steps`` Lanczos steps on the symmetric operator ``matvec`` with full reorthogonalisation.

    ``matvec`` takes and returns vectors of ``matvec_dtype`` (the Objective's: float32 for a trained rung);
    the recurrence runs in ``dtype``. It starts at v0 / ‖v0‖, or at a random unit vector of kind ``start``
    (a Gaussian start is almost surely orthogonal to no eigenvector; a Rademacher one can be, to (e_i − e_j)/√2
    with probability ½). It stops early at a breakdown, β_j ≤ tol · max_i ‖H q_i‖. A float32 product is not
    exactly degenerate: its rounding (~1e-7 ‖H‖) splits a repeated eigenvalue, so the iteration rarely
    breaks down and a model's repeated zero comes back as several Ritz values at rounding level.
    """
    steps = min(steps, dim)  # K_m cannot outgrow the space
    q = random_unit(dim, generator, start, dtype) if v0 is None else v0.to(dtype) / v0.to(dtype).norm()
    Q = torch.zeros(steps, dim, dtype=dtype)  # (steps, dim) the Lanczos vectors, rows
    alpha, beta = [], []
    scale = 0.0  # ‖H‖ from below, the yardstick for a breakdown
    # --8<-- [start:lanczos]
    for j in range(steps):
        Q[j] = q
        w = matvec(q.to(matvec_dtype)).to(dtype)  # (dim,) H q_j
        scale = max(scale, w.norm().item())
        alpha.append(torch.dot(q, w))
        w = w - alpha[j] * q - (beta[j - 1] * Q[j - 1] if j else 0)  # the recurrence; the pass below also removes these two
        # full reorthogonalisation: the recurrence alone leaks back into converged directions
        for _ in range(2):
            before = w.norm()
            w = w - Q[:j + 1].T @ (Q[:j + 1] @ w)
            if w.norm() > 0.5 ** 0.5 * before:
                break
        if j + 1 == steps:
            break
        b = w.norm()
        if b <= tol * scale:
            break  # breakdown: K_{j+1} is invariant, T_{j+1} already holds exact eigenvalues
        beta.append(b)
        q = w / b
    # --8<-- [end:lanczos]
    m = len(alpha)
    return Tridiagonal(torch.stack(alpha), torch.stack(beta) if beta else torch.zeros(0, dtype=dtype), Q[:m].clone())


def gauss_quadrature(t: Tridiagonal) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes θ (m,) and weights τ (m,) of the Gauss rule of μ_{q₁}: T = U diag(θ) Uᵀ, τ_i = U_{0,i}²."""
    nodes, U = torch.linalg.eigh(t.matrix())
    return nodes, U[0] ** 2


def ritz_values(matvec: MatVec, dim: int, steps: int, generator: torch.Generator | None = None, **kw) -> list[float]:
    """Every Ritz value of ``steps`` Lanczos steps, descending; both ends of the list converge first."""
    t = lanczos(matvec, dim, steps, generator=generator, **kw)
    return torch.linalg.eigvalsh(t.matrix()).flip(0).tolist()


def top_eigenvalues(matvec: MatVec, dim: int, k: int, steps: int, generator: torch.Generator | None = None,
                    **kw) -> list[float]:
    """The k largest Ritz values, descending (each a lower bound on the eigenvalue it approximates)."""
    return ritz_values(matvec, dim, steps, generator, **kw)[:k]


def bottom_eigenvalues(matvec: MatVec, dim: int, k: int, steps: int, generator: torch.Generator | None = None,
                       **kw) -> list[float]:
    """The k smallest Ritz values, most negative first: negative curvature, the sign of a saddle."""
    return ritz_values(matvec, dim, steps, generator, **kw)[::-1][:k]


def spectral_density(matvec: MatVec, dim: int, steps: int, vectors: int, generator: torch.Generator | None = None,
                     *, start: str = "rademacher", **kw) -> dict:
    """Stochastic Lanczos quadrature: the Gauss rule of ``vectors`` random start vectors, ``steps`` nodes each.

    Returns {"nodes": [[θ_i] per vector], "weights": [[τ_i] per vector], "steps", "vectors", "dim",
    "matvecs"}; a vector whose Lanczos broke down early has fewer nodes (and ``matvecs`` counts what ran).
    """
    nodes, weights = [], []
    for _ in range(vectors):
        v = random_unit(dim, generator, start)
        theta, tau = gauss_quadrature(lanczos(matvec, dim, steps, v0=v, **kw))
        nodes.append(theta.tolist())
        weights.append(tau.tolist())
    return {"nodes": nodes, "weights": weights, "steps": steps, "vectors": vectors, "dim": dim,
            "matvecs": sum(len(n) for n in nodes)}


def density(nodes_weights: dict, grid: torch.Tensor | Sequence[float], sigma: float) -> torch.Tensor:
    """φ(t) on the grid (G,): the average over vectors of Σ_i τ_i g_σ(t − θ_i). It integrates to 1."""
    n = len(nodes_weights["nodes"])
    theta = torch.tensor([x for row in nodes_weights["nodes"] for x in row], dtype=torch.float64)  # (n·m,)
    tau = torch.tensor([x for row in nodes_weights["weights"] for x in row], dtype=torch.float64) / n  # (n·m,)
    t = torch.as_tensor(grid, dtype=torch.float64)  # (G,)
    g = torch.exp(-0.5 * ((t[:, None] - theta[None, :]) / sigma) ** 2) / (sigma * (2 * torch.pi) ** 0.5)  # (G, n·m)
    return g @ tau


def share_below(nodes_weights: dict, threshold: float) -> float:
    """The estimated share of eigenvalues with |λ| < threshold: the mean over vectors of Σ_i τ_i [|θ_i| < threshold]."""
    shares = [sum(w for x, w in zip(xs, ws) if abs(x) < threshold)
              for xs, ws in zip(nodes_weights["nodes"], nodes_weights["weights"])]
    return sum(shares) / len(shares)
