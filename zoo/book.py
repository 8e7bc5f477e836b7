"""The book: chapters that train rungs through the public API, and the numbers the site quotes.

A chapter is a folder ``chapters/NN-slug/`` holding

* ``chapter.md`` — the prose. It never types a measured number: it writes a *placeholder* such as
  ``[[bigram.val.bpc|.3f]]`` that the site build fills from ``results.json`` (see :func:`fill`);
* ``experiment.py`` — the runs the chapter shows, declared with :class:`Run`::

      from zoo.book import Run
      RUNS = [Run("bigram", preset="book", seeds=(0, 1, 2))]

  and optionally ``CORPUS`` (default ``"tinyshakespeare"``), ``compute(corpus) -> dict`` (numbers the
  chapter measures itself, e.g. counted baselines) and ``figures(results, figdir)`` (extra plots);
* ``results.json`` and ``figures/*.png`` — written by ``zoo chapter run NN`` and committed, so the site
  builds without retraining.

``zoo chapter run NN`` trains every (run, seed) with :func:`zoo.make_config` and :func:`zoo.train`, and
writes results.json with the full provenance of each run (its metrics.json), a mean/spread summary over
seeds, the validation curve, a sample and the time it took. ``zoo book`` runs every chapter and redraws
the home page's plot; the home page's table is rendered at build time from the same results.json files,
so it cannot disagree with them.

Placeholders (filled by the mkdocs hook in ``docs_hooks/book.py``)::

    [[bigram.val.bpc]]              mean over seeds, default format (.3f for floats, {:,} for ints)
    [[bigram.val.bpc|.4f]]          any Python format spec
    [[bigram.val.bpc|.3f±]]         "mean ± std" (the spread over seeds)
    [[bigram.val.bpc.std|.4f]]      one statistic: mean, std, min, max, n
    [[bigram.wall_s|dur]]           seconds as "1 min 23 s"
    [[bigram.sample]]               text (seed 0's sample)
    [[uniform.val.bpc]]             a value from the experiment's compute()
    [[chapter.elapsed_s|dur]]       the chapter's own fields: corpus, splits, device, elapsed_s, ...
    [[01-ngram/ngram.val.bpc]]      another chapter's results (by slug, or by number: [[01/...]])
    [[table:runs]]                  this chapter's runs as a table
    [[table:leaderboard]]           every chapter's leaderboard runs (the home page's table)
    [[table:timings]]               how long each chapter took to regenerate
    \\[[not.a.placeholder]]          a backslash keeps the brackets literally

A placeholder that does not resolve fails the build, naming the page and the keys that exist.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import posixpath
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from zoo.errors import ZooError

RESULTS = "results.json"
FIGURES = "figures"
BOOK_RECORD = "book.json"  # chapters/book.json: how the last full `zoo book` ran (jobs, wall time)
LADDER_FIGURE = Path("docs") / "assets" / "figures" / "ladder-val-curves.png"
DEFAULT_CORPUS = "tinyshakespeare"
RESERVED = ("chapter",)  # namespace key for a chapter's own fields
SMOKE = {  # tiny budgets for --smoke: the same experiment, minutes become seconds
    "trainer": {"max_steps": 4, "val_every": 2, "val_batches": 1, "checkpoint_every": 0},
    "data": {"batch_size": 4},
}
MAX_CURVE_POINTS = 200
PM = "\u00a0±\u00a0"  # mean ± spread, with no-break spaces so a table cell never wraps inside it


# ------------------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Run:
    """One entry of a chapter's experiment: a rung at a preset, with overrides, over several seeds.

    ``name`` is the key placeholders use (``[[NAME.val.bpc]]``); it defaults to the rung's name.
    ``leaderboard`` puts the run on the home page's table (set it False for ablations).
    """

    rung: str
    preset: str = "book"
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: dict = field(default_factory=dict)  # {"model": {...}, "data": {...}, "optim": {...}, "trainer": {...}}
    name: Optional[str] = None
    label: Optional[str] = None  # legend label in plots (default: name)
    leaderboard: bool = True

    @property
    def key(self) -> str:
        return self.name or self.rung


@dataclass(frozen=True)
class Chapter:
    slug: str  # "00-setup"
    path: Path

    @property
    def number(self) -> str:
        return self.slug.split("-", 1)[0]

    @property
    def title(self) -> str:
        md = self.path / "chapter.md"
        if md.is_file():
            for line in md.read_text(encoding="utf-8").splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
        return self.slug

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def results(self) -> dict | None:
        return json.loads(self.results_path.read_text(encoding="utf-8")) if self.results_path.is_file() else None

    def experiment(self):
        """Import the chapter's experiment.py as a module (a fresh import each call)."""
        path = self.path / "experiment.py"
        if not path.is_file():
            raise ZooError(f"chapter {self.slug} has no experiment.py")
        name = f"zoo_chapter_{re.sub(r'[^0-9a-zA-Z_]', '_', self.slug)}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules.pop(name, None)
        runs = getattr(module, "RUNS", None)
        if not isinstance(runs, (list, tuple)) or not all(isinstance(r, Run) for r in runs):
            raise ZooError(f"{path}: RUNS must be a list of zoo.book.Run")
        keys = [r.key for r in runs]
        if len(set(keys)) != len(keys):
            raise ZooError(f"{path}: run names must be unique (got {keys})")
        if any(k in RESERVED or "/" in k or "." in k for k in keys):
            raise ZooError(f"{path}: run names may not be {RESERVED} or contain '/' or '.' (got {keys})")
        return module


# --------------------------------------------------------------------------------------------- layout
def book_root() -> Path:
    """The folder holding ``chapters/`` and ``mkdocs.yml``: $ZOO_BOOK_ROOT, the source checkout, or cwd."""
    if os.environ.get("ZOO_BOOK_ROOT"):
        return Path(os.environ["ZOO_BOOK_ROOT"]).resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "chapters").is_dir():
        return checkout
    return Path.cwd()


def chapters(root: Path | None = None) -> list[Chapter]:
    """Every ``chapters/NN-slug/`` folder with a chapter.md, in order."""
    base = (root or book_root()) / "chapters"
    if not base.is_dir():
        return []
    found = [Chapter(p.name, p) for p in sorted(base.iterdir()) if p.is_dir() and re.match(r"^\d\d-[a-z0-9-]+$", p.name)]
    return [c for c in found if (c.path / "chapter.md").is_file()]


def find_chapter(spec: str, root: Path | None = None) -> Chapter:
    """A chapter by number ("0", "00") or slug ("00-setup")."""
    all_chapters = chapters(root)
    spec = str(spec).strip()
    for c in all_chapters:
        if spec == c.slug or (spec.isdigit() and int(spec) == int(c.number)):
            return c
    valid = ", ".join(c.slug for c in all_chapters) or "none"
    raise ZooError(f"no chapter {spec!r} (chapters: {valid})")


def book_record(root: Path | None = None) -> dict | None:
    """chapters/book.json, written by the last full ``zoo book``: its jobs and wall time."""
    path = (root or book_root()) / "chapters" / BOOK_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_book(root: Path | None = None) -> dict[str, dict | None]:
    """slug -> results dict (None for a chapter not yet run), in chapter order."""
    out = {}
    for c in chapters(root):
        try:
            out[c.slug] = c.results()
        except json.JSONDecodeError as e:
            raise ZooError(f"{c.results_path} is not valid JSON ({e})") from None
    return out


# ------------------------------------------------------------------------------------------- numbers
def stats(values: list[float]) -> dict:
    """mean, sample standard deviation (n-1; 0 for one value), min, max and n."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(xs), "max": max(xs), "n": n}


def _read_curve(run_dir: Path) -> dict:
    """The training curve from logs/version_*/metrics.csv: val [[step, bpc]] and train [[step, loss]]."""
    val, train = {}, {}
    versions = sorted((run_dir / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    for path in versions:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                step = row.get("step")
                if not step:
                    continue
                if row.get("val_bpc"):
                    val[int(step)] = float(row["val_bpc"])
                if row.get("train_loss"):
                    train[int(step)] = float(row["train_loss"])

    def thin(d):
        items = sorted(d.items())
        if len(items) > MAX_CURVE_POINTS:
            every = math.ceil(len(items) / MAX_CURVE_POINTS)
            items = items[::every] + ([items[-1]] if (len(items) - 1) % every else [])
        return [[s, round(v, 5)] for s, v in items]

    return {"val_bpc": thin(val), "train_loss": thin(train)}


def summarise(per_seed: list[dict]) -> dict:
    first = per_seed[0]
    cfg = first["config"]
    tps = [m["tokens_per_s"] for m in per_seed if m.get("tokens_per_s") is not None]
    return {
        "val": {k: stats([m["val"][k] for m in per_seed]) for k in ("bpc", "nats")},
        "test": {k: stats([m["test"][k] for m in per_seed]) for k in ("bpc", "nats")},
        "params": first["params"],
        "steps": first["steps"],
        "tokens_seen": first["tokens_seen"],
        "tokens_per_step": cfg["data"]["batch_size"] * cfg["data"]["block_size"],
        "wall_s": stats([m["wall_s"] for m in per_seed]),
        "tokens_per_s": stats(tps) if tps else None,
        "elapsed_s": stats([m["elapsed_s"] for m in per_seed]),
    }


# -------------------------------------------------------------------------------------------- running
def _config_for(run: Run, seed: int, corpus: str, smoke: bool):
    import zoo
    from zoo.config import deep_merge
    from zoo.registry import get

    overrides = deep_merge(run.overrides, {"data": {"corpus": corpus}})
    if smoke:
        base = deep_merge(get(run.rung).preset(run.preset), overrides)
        shrink = {s: {k: (min(v, base.get(s, {}).get(k, v)) if k != "checkpoint_every" else v) for k, v in vals.items()} for s, vals in SMOKE.items()}
        overrides = deep_merge(overrides, shrink)
    return zoo.make_config(run.rung, run.preset, seed, overrides)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _train_one(run: Run, seed: int, corpus: str, smoke: bool, run_dir: Path, force: bool, root: Path, log) -> dict:
    import zoo

    config = _config_for(run, seed, corpus, smoke)
    metrics_path, book_path = run_dir / "metrics.json", run_dir / "book.json"
    if run_dir.exists():
        done = metrics_path.is_file() and book_path.is_file()
        same = done and json.loads(metrics_path.read_text())["config"] == config.to_dict()
        if force or (done and not same):
            if not force:
                raise ZooError(f"{run_dir} holds a finished run with a different config; rerun with --force to retrain it")
            shutil.rmtree(run_dir)
        elif done:
            log(f"  {run.key} seed {seed}: reusing the finished run in {_relative(run_dir, root)}")
            metrics = json.loads(metrics_path.read_text())
            return {**metrics, "elapsed_s": json.loads(book_path.read_text())["elapsed_s"]}
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "metrics.json").is_file()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # an aborted start with nothing to resume from
    start = time.perf_counter()
    metrics = zoo.train(config, run_dir, resume=resume, quiet=True)
    elapsed = time.perf_counter() - start
    if resume and book_path.is_file():
        elapsed += json.loads(book_path.read_text()).get("elapsed_s", 0.0)
    book_path.write_text(json.dumps({"elapsed_s": round(elapsed, 3)}) + "\n")
    log(f"  {run.key} seed {seed}: val {metrics['val']['bpc']:.4f} bpc, test {metrics['test']['bpc']:.4f} bpc "
        f"({metrics['wall_s']:.1f} s training, {elapsed:.1f} s in all)")
    return {**metrics, "elapsed_s": round(elapsed, 3)}


def missing_rungs(chapter: Chapter) -> list[str]:
    """Rungs an experiment declares that are not registered (yet)."""
    from zoo import registry

    known = set(registry.names())
    return sorted({r.rung for r in chapter.experiment().RUNS} - known)


@dataclass(frozen=True)
class Task:
    """One (run, seed) of one chapter: what a worker process needs to train it."""

    chapter: str
    run: Run
    seed: int
    corpus: str
    smoke: bool
    run_dir: Path
    force: bool
    root: Path

    def cost(self) -> float:
        """A rough cost for scheduling the longest runs first: 6 · params · training tokens (+ a floor)."""
        from zoo.registry import build

        config = _config_for(self.run, self.seed, self.corpus, self.smoke)
        d = config.data
        model = build(self.run.rung, vocab_size=65, block_size=d.block_size, **config.model)  # any vocabulary will do for a rough cost
        params = sum(p.numel() for p in model.parameters())
        return 6.0 * (params + 1e4) * config.trainer.max_steps * d.batch_size * d.block_size


@dataclass
class Plan:
    """A chapter's experiment resolved into tasks, and where its results go."""

    chapter: Chapter
    module: Any
    runs: list
    corpus: str
    dest: Path
    smoke: bool
    tasks: list
    commit: str  # the code the runs are made with, read before any results.json is written (which dirties the tree)


def plan_chapter(chapter: Chapter, *, smoke: bool = False, out: Path | None = None, force: bool = False,
                 corpus: str | None = None, seeds: list[int] | None = None, root: Path | None = None) -> Plan:
    root = root or book_root()
    module = chapter.experiment()
    runs: list[Run] = list(module.RUNS)
    corpus = corpus or getattr(module, "CORPUS", DEFAULT_CORPUS)
    missing = missing_rungs(chapter)
    if missing:
        raise ZooError(f"chapter {chapter.slug} needs rung(s) that are not registered yet: {', '.join(missing)}")
    if out is None:
        dest = Path(tempfile.mkdtemp(prefix=f"zoo-{chapter.slug}-smoke-")) if smoke else chapter.path
    else:
        dest = Path(out)
    runs_root = (dest / "runs") if (smoke or out is not None) else root / "runs" / "book" / chapter.slug
    tasks = [Task(chapter.slug, run, seed, corpus, smoke, runs_root / f"{run.key}-seed{seed}", force, root)
             for run in runs for seed in (seeds if seeds is not None else run.seeds)]
    from zoo.runs import git_commit

    return Plan(chapter, module, runs, corpus, dest, smoke, tasks, git_commit())


def _run_task(task: Task, log=None) -> dict:
    return _train_one(task.run, task.seed, task.corpus, task.smoke, task.run_dir, task.force, task.root,
                      log or (lambda msg: print(msg, flush=True)))


def _worker_init(threads: int) -> None:
    import torch

    from zoo.cli import _quiet_libraries

    torch.set_num_threads(threads)
    _quiet_libraries()  # a fresh (spawned) process: keep Lightning's banners out of the book's log


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def execute(tasks: list[Task], jobs: int = 1, log=print) -> dict[tuple[str, str, int], dict]:
    """Train every task; returns {(chapter, run key, seed): metrics}.

    ``jobs`` > 1 trains that many runs at once, each in its own process with cores // jobs torch threads.
    Small models use one core far better than two (no fork/join barrier per op), so on a machine with
    C cores, C one-thread runs side by side finish the book about C times sooner than one run at a time.
    The longest runs start first, so the last to finish is a short one.
    """
    if jobs < 1:
        raise ZooError(f"--jobs must be >= 1 (got {jobs})")
    if jobs == 1 or len(tasks) <= 1:
        return {(t.chapter, t.run.key, t.seed): _run_task(t, log) for t in tasks}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, usable_cores() // jobs)
    order = sorted(tasks, key=lambda t: -t.cost())
    log(f"training {len(tasks)} run(s), {jobs} at a time, {threads} torch thread(s) each")
    # spawn, not fork: a forked child inherits the parent's torch thread pool and Lightning state
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = {(t.chapter, t.run.key, t.seed): pool.submit(_run_task, t) for t in order}
        return {key: f.result() for key, f in futures.items()}


def assemble_chapter(plan: Plan, trained: dict[tuple[str, str, int], dict], root: Path | None = None,
                     session_s: float = 0.0, log=print) -> Path:
    """Write results.json and figures from the trained runs of a plan; returns the folder written."""
    root = root or book_root()
    chapter, module, dest = plan.chapter, plan.module, plan.dest
    dest.mkdir(parents=True, exist_ok=True)
    results_runs = {}
    for run in plan.runs:
        per_seed = []
        for task in (t for t in plan.tasks if t.run.key == run.key):
            metrics = trained[(chapter.slug, run.key, task.seed)]
            sample_path = task.run_dir / "samples.txt"
            per_seed.append({
                **metrics,
                "run_dir": _relative(task.run_dir, root),
                "curve": _read_curve(task.run_dir),
                "sample": sample_path.read_text(encoding="utf-8") if sample_path.is_file() else "",
            })
        results_runs[run.key] = {
            "rung": run.rung, "preset": run.preset, "overrides": run.overrides, "seeds": [m["seed"] for m in per_seed],
            "label": run.label or run.key, "leaderboard": run.leaderboard,
            "summary": summarise(per_seed), "sample": per_seed[0]["sample"], "per_seed": per_seed,
        }
    values, compute_s = {}, 0.0
    if hasattr(module, "compute"):
        t0 = time.perf_counter()
        values = module.compute(plan.corpus)
        compute_s = time.perf_counter() - t0
        if not isinstance(values, dict):
            raise ZooError(f"{chapter.slug}/experiment.py: compute() must return a dict")
        clash = set(values) & (set(results_runs) | set(RESERVED))
        if clash:
            raise ZooError(f"{chapter.slug}/experiment.py: compute() keys clash with run names: {sorted(clash)}")
    first = next((r["per_seed"][0] for r in results_runs.values()), None)
    from zoo.runs import device_name, versions

    results = {
        "chapter": chapter.slug,
        "title": chapter.title,
        "mode": "smoke" if plan.smoke else "book",
        "command": "zoo chapter run " + chapter.number + (" --smoke" if plan.smoke else ""),
        "corpus": first["corpus"] if first else {"name": plan.corpus},
        "splits": first["splits"] if first else None,
        "device": first["device"] if first else device_name("cpu"),
        "git_commit": plan.commit,
        "versions": versions(),
        "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # time to regenerate the chapter one run at a time: every run's train + evaluation + sampling, plus compute()
        "elapsed_s": round(sum(m["elapsed_s"] for r in results_runs.values() for m in r["per_seed"]) + compute_s, 3),
        "session_s": round(session_s + compute_s, 3),  # this invocation's wall time (less when runs were reused or ran in parallel)
        "compute_s": round(compute_s, 3),
        "runs": results_runs,
        "values": values,
    }
    tmp = dest / (RESULTS + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, dest / RESULTS)
    render_chapter_figures(chapter, results, dest / FIGURES, module)
    log(f"chapter {chapter.slug}: results in {_relative(dest / RESULTS, root)} ({results['elapsed_s']:.0f} s of runs)")
    return dest


def run_chapter(chapter: Chapter, *, smoke: bool = False, out: Path | None = None, force: bool = False,
                corpus: str | None = None, seeds: list[int] | None = None, root: Path | None = None,
                jobs: int = 1, log=print) -> Path:
    """Train a chapter's runs and write results.json and figures; returns the folder written.

    By default the chapter's own folder (runs go to runs/book/SLUG/, ignored by git). ``smoke`` shrinks
    every budget to a few steps and, unless ``out`` is given, writes into a fresh temporary folder, so
    committed results are never touched by a smoke run. ``jobs`` runs that many trainings at once.
    """
    root = root or book_root()
    plan = plan_chapter(chapter, smoke=smoke, out=out, force=force, corpus=corpus, seeds=seeds, root=root)
    log(f"chapter {chapter.slug}{' (smoke)' if smoke else ''}: {len(plan.tasks)} run(s) on {plan.corpus}")
    start = time.perf_counter()
    trained = execute(plan.tasks, jobs, log)
    return assemble_chapter(plan, trained, root, session_s=time.perf_counter() - start, log=log)


# -------------------------------------------------------------------------------------------- figures
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
    curves = [s["curve"]["val_bpc"] for s in run["per_seed"] if s.get("curve", {}).get("val_bpc")]
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
    if results["runs"]:
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
        path = figdir / "curves.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    module = module or chapter.experiment()
    if hasattr(module, "figures"):
        _plt()
        module.figures(results, figdir)
        written += sorted(p for p in figdir.glob("*.png") if p not in written)
    return written


def render_ladder_figure(book: dict[str, dict | None], path: Path) -> Path | None:
    """The home page's plot: every leaderboard run's validation curve on one pair of axes."""
    rows = [(slug, name, run) for slug, res in book.items() if res for name, run in res["runs"].items() if run.get("leaderboard", True)]
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------- placeholders
PLACEHOLDER = re.compile(r"(\\?)\[\[\s*([A-Za-z0-9_][A-Za-z0-9_./:-]*)\s*(?:\|\s*([^\[\]\n]*?)\s*)?\]\]")


class PlaceholderError(ZooError):
    pass


def namespace(results: dict) -> dict:
    """What ``[[KEY]]`` can name inside one chapter: runs (summary + sample + seeds), values, chapter."""
    ns = {}
    for name, run in results.get("runs", {}).items():
        ns[name] = {**run["summary"], "sample": run["sample"], "seeds": len(run["per_seed"]),
                    "rung": run["rung"], "preset": run["preset"]}
    ns.update(results.get("values", {}))
    ns["chapter"] = {k: v for k, v in results.items() if k not in ("runs", "values")}
    return ns


def _keys(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, dict):
        return [prefix]
    out = []
    for k, v in d.items():
        out += _keys(v, f"{prefix}.{k}" if prefix else str(k)) if isinstance(v, dict) and not _is_stats(v) else [f"{prefix}.{k}" if prefix else str(k)]
    return out


def _is_stats(v) -> bool:
    return isinstance(v, dict) and {"mean", "std", "n"} <= set(v)


def lookup(key: str, book: dict[str, dict | None], here: str | None) -> Any:
    """Resolve ``[CHAPTER/]dotted.path`` to a value (a stats dict stays a dict)."""
    if "/" in key:
        spec, path = key.split("/", 1)
        slug = next((s for s in book if s == spec or (spec.isdigit() and int(spec) == int(s.split("-")[0]))), None)
        if slug is None:
            raise PlaceholderError(f"no chapter {spec!r} (chapters: {', '.join(book)})")
    else:
        slug, path = here, key
        if slug is None:
            raise PlaceholderError(f"[[{key}]] is outside a chapter: name one, e.g. [[00-setup/{key}]]")
    results = book.get(slug)
    if results is None:
        raise PlaceholderError(f"chapter {slug} has no {RESULTS} yet (run `zoo chapter run {slug.split('-')[0]}`)")
    value: Any = namespace(results)
    for i, part in enumerate(path.split(".")):
        if not isinstance(value, dict) or part not in value:
            where = ".".join(path.split(".")[:i]) or "(top)"
            options = sorted(value) if isinstance(value, dict) else []
            raise PlaceholderError(f"{slug}: no {part!r} under {where} (there: {', '.join(map(str, options)) or 'nothing'})")
        value = value[part]
    return value


def duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_value(value: Any, spec: str | None, key: str = "") -> str:
    spec = (spec or "").strip()
    if _is_stats(value):
        if spec.endswith("±"):
            inner = spec[:-1].strip() or ".3f"
            if value.get("n", 0) < 2:  # one seed: no spread to report
                return format(value["mean"], inner)
            return f"{format(value['mean'], inner)}{PM}{format(value['std'], inner)}"
        value = value["mean"]
    elif spec.endswith("±"):
        raise PlaceholderError(f"[[{key}|{spec}]]: '±' needs a value measured over seeds")
    if isinstance(value, dict):
        raise PlaceholderError(f"[[{key}]] names a group, not a value (it has: {', '.join(_keys(value))})")
    if value is None:
        raise PlaceholderError(f"[[{key}]] is empty in results.json")
    if spec == "dur":
        return duration(value)
    if not spec:
        if isinstance(value, bool) or isinstance(value, str):
            return str(value)
        return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"
    try:
        return format(value, spec)
    except (ValueError, TypeError) as e:
        raise PlaceholderError(f"[[{key}|{spec}]]: {e}") from None


def fill(text: str, book: dict[str, dict | None], here: str | None, page: str = "index.md") -> str:
    """Replace every placeholder in ``text``; raise PlaceholderError listing all that fail to resolve.

    ``here`` is the chapter slug of the page (None outside chapters); ``page`` its path in the site,
    used to make the links in generated tables relative.
    """
    errors = []

    def replace(m):
        escaped, key, spec = m.group(1), m.group(2), m.group(3)
        if escaped:
            return m.group(0)[1:]
        try:
            if key.startswith("table:"):
                return table(key[len("table:"):], book, here, page)
            return format_value(lookup(key, book, here), spec, key)
        except PlaceholderError as e:
            errors.append(f"[[{key}{'|' + spec if spec else ''}]]: {e}")
            return m.group(0)

    out = PLACEHOLDER.sub(replace, text)
    if errors:
        raise PlaceholderError(f"{page}: {len(errors)} placeholder(s) do not resolve:\n  " + "\n  ".join(errors))
    return out


# --------------------------------------------------------------------------------------------- tables
def _link(slug: str, page: str) -> str:
    return posixpath.relpath(f"chapters/{slug}/index.md", posixpath.dirname(page) or ".")


def _pm(s: dict | None, spec: str = ".3f") -> str:
    """mean ± std; a single seed has no spread to show, so just its value."""
    if not s or s.get("mean") is None:
        return "–"
    return f"{s['mean']:{spec}}" if s.get("n", 0) < 2 else f"{s['mean']:{spec}}{PM}{s['std']:{spec}}"


def leaderboard_rows(book: dict[str, dict | None]) -> list[dict]:
    """One row per leaderboard run of every chapter that has results; the numbers the table shows."""
    rows = []
    for slug, res in book.items():
        if not res:
            continue
        for name, run in res["runs"].items():
            if not run.get("leaderboard", True):
                continue
            s = run["summary"]
            rows.append({"chapter": slug, "name": name, "rung": run["rung"], "params": s["params"],
                         "wall_s": s["wall_s"]["mean"], "tokens_per_s": (s["tokens_per_s"] or {}).get("mean"),
                         "val_bpc": s["val"]["bpc"], "test_bpc": s["test"]["bpc"], "seeds": s["val"]["bpc"]["n"]})
    return rows


def table(kind: str, book: dict[str, dict | None], here: str | None, page: str) -> str:
    if kind == "leaderboard":
        lines = ["| rung | params | training time | tokens/s | val bpc | test bpc | seeds |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for row in leaderboard_rows(book):
            tps = f"{row['tokens_per_s']:,.0f}" if row["tokens_per_s"] else "–"
            lines.append(f"| [`{row['name']}`]({_link(row['chapter'], page)}) | {row['params']:,} | "
                         f"{row['wall_s']:.1f} s | {tps} | {_pm(row['val_bpc'])} | {_pm(row['test_bpc'])} | {row['seeds']} |")
        for slug, res in book.items():
            if res is None:
                lines.append(f"| [{slug}]({_link(slug, page)}) | not yet run | | | | | |")
        return "\n".join(lines)
    if kind == "timings":
        lines = ["| chapter | runs × seeds | training | total (train, score, sample) | device |",
                 "|---|---:|---:|---:|---|"]
        total = 0.0
        for slug, res in book.items():
            if not res:
                lines.append(f"| [{slug}]({_link(slug, page)}) | not yet run | | | |")
                continue
            n = sum(len(r["per_seed"]) for r in res["runs"].values())
            train = sum(m["wall_s"] for r in res["runs"].values() for m in r["per_seed"])
            total += res["elapsed_s"]
            lines.append(f"| [{res['title']}]({_link(slug, page)}) | {n} | {duration(train)} | {duration(res['elapsed_s'])} | {res['device']} |")
        lines.append(f"| **all chapters, one run at a time** | | | **{duration(total)}** | |")
        record = book_record()
        if record and set(record["chapters"]) >= {slug for slug, res in book.items() if res}:
            lines.append(f"| **`zoo book`, {record['jobs']} runs at a time** | | | **{duration(record['wall_s'])}** (wall clock) | |")
        return "\n".join(lines)
    if kind == "runs":
        if here is None or not book.get(here):
            raise PlaceholderError("[[table:runs]] needs a chapter page whose results.json exists")
        res = book[here]
        lines = ["| run | rung | preset | params | steps | training time | val bpc | test bpc | seeds |",
                 "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for name, run in res["runs"].items():
            s = run["summary"]
            lines.append(f"| `{name}` | `{run['rung']}` | {run['preset']} | {s['params']:,} | {s['steps']:,} | "
                         f"{s['wall_s']['mean']:.1f} s | {_pm(s['val']['bpc'])} | {_pm(s['test']['bpc'])} | {len(run['per_seed'])} |")
        return "\n".join(lines)
    raise PlaceholderError(f"unknown table {kind!r} (tables: leaderboard, timings, runs)")


# ------------------------------------------------------------------------------------------------ CLI
def _parser(prog: str, description: str):
    from jsonargparse import ArgumentParser

    return ArgumentParser(prog=prog, description=description, exit_on_error=False, default_meta=False)


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ZooError(f"--seeds takes comma-separated integers, e.g. 0,1,2 (got {text!r})") from None


JOBS_HELP = "runs to train at once, each in its own process (default 0: one per usable CPU core)"


def _jobs(n: int) -> int:
    if n < 0:
        raise ZooError(f"--jobs must be >= 0 (0 = one per core), got {n}")
    return n or usable_cores()


def cmd_chapter(argv: list[str]) -> int:
    """``zoo chapter list | run NN | figures NN``."""
    p = _parser("zoo chapter", "Run a chapter's experiment (results.json + figures), or list chapters.")
    p.add_argument("action", choices=["list", "run", "figures"], help="list | run NN | figures NN")
    p.add_argument("chapter", type=Optional[str], default=None, nargs="?", help="number (00) or slug (00-setup)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, written to a temporary folder (or --out)")
    p.add_argument("--out", type=Optional[str], default=None, help="write results.json and figures here instead of the chapter")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    p.add_argument("--data", type=Optional[str], default=None, help="corpus (default: the experiment's, tinyshakespeare)")
    p.add_argument("--seeds", type=Optional[str], default=None, help="override every run's seeds, e.g. 0 or 0,1")
    p.add_argument("--jobs", type=int, default=0, help=JOBS_HELP)
    args = p.parse_args(argv)
    if args.action == "list":
        for c in chapters():
            res = c.results()
            status = "pending (no experiment)" if not (c.path / "experiment.py").is_file() else (
                f"results: {res['mode']}, {duration(res['elapsed_s'])}" if res else "not yet run")
            print(f"{c.slug:<20} {c.title[:50]:<50} {status}")
        return 0
    if not args.chapter:
        raise ZooError(f"zoo chapter {args.action} needs a chapter number, e.g. `zoo chapter {args.action} 00`")
    chapter = find_chapter(args.chapter)
    if args.action == "figures":
        source = Path(args.out) if args.out else chapter.path
        results_path = source / RESULTS
        if not results_path.is_file():
            raise ZooError(f"no {results_path}; run `zoo chapter run {chapter.number}` first")
        results = json.loads(results_path.read_text(encoding="utf-8"))
        for path in render_chapter_figures(chapter, results, source / FIGURES):
            print(path)
        return 0
    dest = run_chapter(chapter, smoke=args.smoke, out=Path(args.out) if args.out else None, force=args.force,
                       corpus=args.data, seeds=_seeds(args.seeds), jobs=_jobs(args.jobs))
    print(f"wrote {dest / RESULTS}")
    return 0


def cmd_book(argv: list[str]) -> int:
    """``zoo book``: run every chapter, then redraw the home page's plot."""
    p = _parser("zoo book", "Regenerate the book: run every chapter's experiment, then redraw the home page's plot.")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, everything written under a temporary folder (or --out)")
    p.add_argument("--out", type=Optional[str], default=None, help="write each chapter to OUT/SLUG instead of chapters/")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    p.add_argument("--chapters", type=Optional[str], default=None, help="comma-separated subset, e.g. 00,01")
    p.add_argument("--figures-only", action="store_true", help="train nothing: redraw every figure from results.json")
    p.add_argument("--data", type=Optional[str], default=None, help="corpus for every chapter (default: each experiment's)")
    p.add_argument("--jobs", type=int, default=0, help=JOBS_HELP)
    args = p.parse_args(argv)
    jobs = _jobs(args.jobs)
    root = book_root()
    selected = [find_chapter(s) for s in args.chapters.split(",")] if args.chapters else chapters(root)
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="zoo-book-smoke-")) if args.smoke else None)
    start, skipped, plans = time.perf_counter(), [], []
    for chapter in selected:
        if not (chapter.path / "experiment.py").is_file():
            skipped.append(f"{chapter.slug} (no experiment.py)")
            continue
        if args.figures_only:
            results = chapter.results()
            if results:
                render_chapter_figures(chapter, results, chapter.path / FIGURES)
            else:
                skipped.append(f"{chapter.slug} (no results.json)")
            continue
        missing = missing_rungs(chapter)
        if missing:
            print(f"chapter {chapter.slug}: skipped, rung(s) not registered: {', '.join(missing)}", flush=True)
            skipped.append(f"{chapter.slug} (needs {', '.join(missing)})")
            continue
        plans.append(plan_chapter(chapter, smoke=args.smoke, out=(out / chapter.slug) if out else None,
                                  force=args.force, corpus=args.data, root=root))
    if plans:
        # every chapter's runs in one pool, so that no core idles at a chapter's end
        print(f"book: {len(plans)} chapter(s), {sum(len(p.tasks) for p in plans)} run(s)", flush=True)
        trained = execute([t for p in plans for t in p.tasks], jobs)
        wall = time.perf_counter() - start
        for plan in plans:
            assemble_chapter(plan, trained, root, session_s=wall)
        if out is None and not args.smoke:
            record = {"command": "zoo book" + (f" --chapters {args.chapters}" if args.chapters else ""), "jobs": jobs,
                      "threads_per_job": max(1, usable_cores() // jobs) if jobs > 1 else None,
                      "chapters": [p.chapter.slug for p in plans], "wall_s": round(time.perf_counter() - start, 3),
                      "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (root / "chapters" / BOOK_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if out is None:
        book = load_book(root)
        figure = render_ladder_figure(book, root / LADDER_FIGURE)
    else:
        book = {c.slug: (json.loads((out / c.slug / RESULTS).read_text()) if (out / c.slug / RESULTS).is_file() else None) for c in chapters(root)}
        figure = render_ladder_figure(book, out / LADDER_FIGURE.name)
    verb = "redrew the figures of" if args.figures_only else "ran"
    print(f"book: {verb} {len(selected) - len(skipped)} chapter(s) in {duration(time.perf_counter() - start)}"
          + (f"; home plot {figure}" if figure else "") + (f"; output in {out}" if out else ""))
    if skipped:
        print("skipped: " + "; ".join(skipped))
    return 0
