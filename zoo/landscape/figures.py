"""The figures ``zoo landscape`` writes beside a run: one PNG per measurement, drawn from its report."""

from __future__ import annotations

from pathlib import Path


def draw(report: dict, out: Path) -> list[Path]:
    """Every figure the report has data for, into ``out``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, painter in (("hessian", _hessian), ("slices", _slices), ("between", _between), ("llc", _llc)):
        if key in report:
            fig = painter(plt, report[key], report["run"])
            path = out / f"{key}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def _hessian(plt, h: dict, run: str):
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    density_panel(ax, h["density"], max(h["top"]), min(h["bottom"]))
    ax.set_ylabel("density")
    ax.set_title(f"{run}: Hessian spectral density ({h['dim']:,} parameters)", fontsize=9)
    return fig


def density_panel(ax, density: dict, top: float, bottom: float) -> None:
    """The SLQ density on a log axis from the most negative eigenvalue (or 0) to the largest: most of its
    mass is a spike near zero, its edges far out."""
    import numpy as np

    from zoo.landscape.hessian import density as smoothed

    lo = min(bottom, 0.0)
    span = top - lo
    grid = np.linspace(lo - 0.05 * span, top + 0.05 * span, 2001)
    phi = np.asarray(smoothed(density, grid.tolist(), sigma=span / 400))
    ax.semilogy(grid, np.maximum(phi, 1e-12))
    ax.set_ylim(bottom=max(phi.max() * 1e-8, 1e-12))
    ax.set_xlabel("Hessian eigenvalue", fontsize=8)


def _slices(plt, s: dict, run: str):
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.6, 3.8))
    slice_panels(fig, a, b, s)
    fig.suptitle(f"{run}: the loss around the trained weights", fontsize=9)
    return fig


def slice_panels(fig, a, b, s: dict) -> None:
    """The two 1-D slices on ``a``, the plane as filled contours on ``b`` (the weights at the cross)."""
    a.plot(s["alpha"], s["line_1"], label="direction 1")
    a.plot(s["alpha"], s["line_2"], label="direction 2")
    a.set_xlabel("α (filter-normalised step)")
    a.set_ylabel("training loss on the batch (nats)")
    a.legend(fontsize=8)
    contour = b.contourf(s["alpha"], s["alpha"], s["plane"], levels=30, cmap="viridis")
    b.plot(0, 0, "w+")
    b.set_xlabel("α (direction 1)")
    b.set_ylabel("β (direction 2)")
    fig.colorbar(contour, ax=b, label="nats")


def running_mean(values: list[float]):
    """A moving average over a twentieth of the series: (x, y) to plot, x the index of each window's last point."""
    import numpy as np

    d = np.asarray(values)
    k = max(1, len(d) // 20)
    smooth = np.convolve(d, np.ones(k) / k, mode="valid")
    return np.arange(len(smooth)) + k - 1, smooth


def _between(plt, m: dict, run: str):
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(m["t"], m["loss"], marker=".")
    ax.axvline(0, color="0.6", lw=0.8)
    ax.axvline(1, color="0.6", lw=0.8)
    ax.set_xlabel("t: (1 − t)·this run + t·the other")
    ax.set_ylabel("training loss (nats)")
    ax.set_title(f"{run}: the straight line to {m['other']} (barrier {m['barrier']:.3f} nats)", fontsize=9)
    return fig


def _llc(plt, r: dict, run: str):
    """Each chain's draws nβ (L_m(w_t) − L_m(w*)), as a running mean: it should rise and level off."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, draws in enumerate(r["draws"]):
        x, y = running_mean(draws)
        ax.plot(x * r["trace_every"], y, lw=0.9, label=f"chain {i}")
    ax.axvline(r["burn_in"], color="0.6", lw=0.8, ls=":")
    ax.axhline(r["llc"], color="k", lw=0.8, ls="--", label=f"λ̂ = {r['llc']:.4g}")
    ax.set_xlabel("SGLD step")
    ax.set_ylabel("nβ · (L(w) − L(w*)), moving average")
    ax.set_title(f"{run}: SGLD chains (ε = {r['step']:g}, nβ = {r['nbeta']:.4g}, γ = {r['localization']:g})", fontsize=9)
    ax.legend(fontsize=7)
    return fig
