"""The book's figures: validation curves of a chapter's runs, the home page's ladder plot.

Drawn with matplotlib (the ``docs`` extra) from results.json alone, so ``zoo book --figures-only``
redraws every figure without training anything.
"""

from __future__ import annotations

from pathlib import Path

from zoo.book.layout import Chapter
from zoo.errors import ZooError


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ZooError("the book's figures need matplotlib: pip install -e '.[docs]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "font.size": 11, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def plot_curves(ax, name: str, run: dict, color=None, label: str | None = None) -> None:
    """Mean validation curve over seeds against training characters, with the min–max band across seeds.

    Count-based runs (no curve) draw their protocol score as a dashed horizontal line.
    """
    import numpy as np

    label = label or run.get("label") or name
    if run["summary"]["val"] is None:  # every seed diverged: no curve to the end, no score
        return
    curves = [s["curve"]["val_bpc"] for s in run["per_seed"] if s.get("curve", {}).get("val_bpc") and "diverged" not in s]
    if not curves:
        ax.axhline(run["summary"]["val"]["bpc"]["mean"], ls="--", color=color, label=f"{label} (counted)")
        return
    steps = sorted(set.intersection(*(set(s for s, _ in c) for c in curves)))
    per_step = np.array([[dict((s, v) for s, v in c)[step] for step in steps] for c in curves])  # (seeds, points)
    x = (np.array(steps) + 1) * run["summary"]["tokens_per_step"]  # logged step s = s + 1 optimiser steps done
    line, = ax.plot(x, per_step.mean(0), color=color, label=f"{label} ({len(curves)} seed{'s' if len(curves) > 1 else ''})", lw=1.8)
    if len(curves) > 1:
        ax.fill_between(x, per_step.min(0), per_step.max(0), color=line.get_color(), alpha=0.2, lw=0)


def _label_axes(ax, xlog=True):
    ax.set_xlabel("training characters seen (characters, log scale)" if xlog else "training characters seen")
    ax.set_ylabel("validation loss (bits per character)")
    if xlog:
        ax.set_xscale("log")


def render_chapter_figures(chapter: Chapter, results: dict, figdir: Path, module=None) -> list[Path]:
    """figures/curves.png (every run's validation curve), then the experiment's own figures()."""
    figdir.mkdir(parents=True, exist_ok=True)
    written = []
    trainable = {k: r for k, r in results["runs"].items() if any(s.get("curve", {}).get("val_bpc") for s in r["per_seed"])}
    if trainable:  # count-based runs alone have no curve to draw (chapter 01 plots its orders instead)
        plt = _plt()
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for name, run in results["runs"].items():
            plot_curves(ax, name, run)
        _label_axes(ax, xlog=bool(trainable))
        ax.set_title(f"{results['title']}\nvalidation curves on {results['corpus']['name']}", fontsize=11)
        ax.legend(fontsize=9)
        fig.text(0.01, 0.01, "quick validation estimates during training (mean over seeds, band = min–max); "
                 "final scores use the full protocol", fontsize=8, color="0.35")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        written.append(_save(plt, fig, figdir / "curves.png"))
    module = module or chapter.experiment()
    if hasattr(module, "figures"):
        _plt()
        module.figures(results, figdir)
        written += sorted(p for p in figdir.glob("*.png") if p not in written)
    return written


def render_ladder_figure(book: dict[str, dict | None], path: Path) -> Path | None:
    """The home page's plot: every leaderboard run's validation curve on one pair of axes."""
    rows = [(slug, name, run) for slug, res in book.items() if res for name, run in res["runs"].items()
            if run.get("leaderboard", True) and not run.get("beyond_budget")]  # the shared budget only
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.2))
    colors = plt.get_cmap("tab10")
    for i, (slug, name, run) in enumerate(rows):
        plot_curves(ax, name, run, color=colors(i % 10))
    uniform = (book.get("00-setup") or {}).get("values", {}).get("uniform")
    if uniform:
        ax.axhline(uniform["val"]["bpc"], color="0.5", ls=":", lw=1, label="uniform (log₂ V)")
    _label_axes(ax)
    ax.set_title("Every rung on tinyshakespeare: validation loss during training")
    ax.legend(fontsize=9, ncol=2)
    fig.text(0.01, 0.01, "quick validation estimates (mean over seeds, band = min–max); the table gives the full-protocol scores",
             fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(plt, fig, path)


def render_ladder_scores(book: dict[str, dict | None], path: Path) -> Path | None:
    """The home page's picture of the final scores: every leaderboard rung's val and test bpc (mean over
    seeds, bar = ± one standard deviation), in ladder order, with the counted rungs as vertical lines."""
    from zoo.book.placeholders import leaderboard_rows

    rows = leaderboard_rows(book)
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    y = list(range(len(rows)))[::-1]  # the first rung on top
    for offset, split, color in ((-0.12, "val", "C0"), (0.12, "test", "C3")):
        stats_ = [r[f"{split}_bpc"] for r in rows]
        ax.errorbar([s["mean"] for s in stats_], [v + offset for v in y], xerr=[s["std"] for s in stats_], fmt="o",
                    color=color, capsize=3, ms=5, label=f"{split} bpc (mean ± std over seeds)")
    for r in rows:
        if r.get("params") == 0:  # a counting rung: its scores are lines every network is measured against
            for split, color in (("val", "C0"), ("test", "C3")):
                ax.axvline(r[f"{split}_bpc"]["mean"], color=color, ls="--", lw=0.9, alpha=0.7)
                ax.text(r[f"{split}_bpc"]["mean"], len(rows) - 0.35, f" {r['name']} ({split})", color=color, fontsize=8, va="top")
    ax.set_yticks(y, [r["name"] + (" †" if r["beyond"] else "") for r in rows])
    ax.set_xlabel("bits per character on tinyshakespeare (lower is better)")
    ax.set_ylim(-0.7, len(rows) - 0.2)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("The ladder: every rung's final scores at the book's budget"
                 + (" († not at its shared setting)" if any(r["beyond"] for r in rows) else ""), fontsize=11)
    fig.tight_layout()
    return _save(plt, fig, path)


def render_home_figures(book: dict[str, dict | None], folder: Path) -> Path | None:
    """Both of the home page's figures into ``folder``; returns the curves' path (None before any results)."""
    from zoo.book.layout import LADDER_FIGURE, LADDER_SCORES

    render_ladder_scores(book, folder / LADDER_SCORES.name)
    return render_ladder_figure(book, folder / LADDER_FIGURE.name)


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_matrix(ax, matrix, text: str | None = None, title: str = "", diverging: bool = False):
    """A T×T mixing or attention matrix: row t is the output at position t, column s the input it reads.

    ``diverging`` centres a linear colour scale on zero (a learned weight can be negative); otherwise the
    scale runs from 0 on a square root (attention weights, which cannot be negative). With ``text`` the
    matrix is cut to the text's length and every eighth position is labelled with its character.
    Returns the image, for a colour bar.
    """
    import numpy as np

    from matplotlib.colors import PowerNorm

    m = np.asarray(matrix, dtype=float)
    if text:
        m = m[:len(text), :len(text)]
    limit = float(np.abs(m).max()) or 1.0
    if diverging:
        image = ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    else:  # attention rows sum to 1 and spread thin over long prefixes: a square-root scale keeps them visible
        image = ax.imshow(m, cmap="viridis", norm=PowerNorm(0.5, vmin=0.0, vmax=limit), interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("input position s")
    ax.set_ylabel("output position t")
    ax.grid(False)
    if text:
        ticks = list(range(0, len(m), 8))
        ax.set_xticks(ticks, [f"{i}\n{repr(text[i])[1:-1].replace(' ', '␣')}" for i in ticks], fontsize=7)
    return image


def save_matrices(grid: list[list[tuple]], path: Path, title: str, text: str | None = None) -> Path:
    """A figure of T×T matrices, one ``plot_matrix`` panel with its colour bar per (title, matrix, diverging)
    in ``grid`` (a list of rows), drawn on ``text`` when given — the chapters' mixing and attention figures."""
    plt = _plt()
    rows, cols = len(grid), max(len(row) for row in grid)
    # constrained layout leaves room for every colour bar, axis label and the two-line title
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 4.4 * rows + 0.6), squeeze=False, layout="constrained")
    for r, panels in enumerate(grid):
        for c, (panel_title, matrix, diverging) in enumerate(panels):
            fig.colorbar(plot_matrix(axes[r][c], matrix, text, panel_title, diverging), ax=axes[r][c], shrink=0.8)
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)
