"""Running a chapter: plan its (run, seed) tasks, execute them (in parallel processes), assemble results.json.

``plan_chapter`` resolves an experiment into tasks, ``execute`` trains them through the public run API
(:func:`zoo.runs.train_or_reuse`, the same call ``zoo ladder`` makes), and ``assemble_chapter`` writes
results.json — every run's metrics.json with its provenance, a mean/spread summary over seeds, the
validation curve, a sample and the time it took — and the chapter's figures. ``zoo book`` plans every
chapter and executes all their tasks in one pool.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.book.figures import render_chapter_figures
from zoo.book.layout import BOOK_CORPUS, FIGURES, RESERVED, RESULTS, Chapter, RunSpec, book_root
from zoo.errors import ZooError
from zoo.parallel import map_in_processes, usable_cores
from zoo.summary import summarise

SMOKE = {  # tiny budgets for --smoke: the same experiment, minutes become seconds
    "trainer": {"max_steps": 4, "val_every": 2, "val_batches": 1, "checkpoint_every": 0},
    "data": {"batch_size": 4},
}
MAX_CURVE_POINTS = 200
TIMING = "book.json"  # in each run directory: the seconds the book spent on it (train + score + sample)
DIVERGED = "diverged.json"  # in a run directory whose training diverged: the harness's one line, the config, the seconds spent


@dataclass(frozen=True)
class Task:
    """One (run, seed) of one chapter: what a worker process needs to train it."""

    chapter: str
    run: RunSpec
    seed: int
    corpus: str
    smoke: bool
    run_dir: Path
    force: bool
    root: Path

    def config(self):
        """The run's RunConfig: the spec's preset and overrides on the chapter's corpus (shrunk for --smoke)."""
        import zoo
        from zoo.config import deep_merge
        from zoo.registry import get

        # the chapter's corpus, unless the spec names its own (a synthetic task beside the chapter's text)
        overrides = deep_merge({"data": {"corpus": self.corpus}}, self.run.overrides)
        if self.smoke:
            base = deep_merge(get(self.run.rung).preset(self.run.preset), overrides)
            shrink = {s: {k: (min(v, base.get(s, {}).get(k, v)) if k != "checkpoint_every" else v) for k, v in vals.items()}
                      for s, vals in SMOKE.items()}
            overrides = deep_merge(overrides, shrink)
        return zoo.make_config(self.run.rung, self.run.preset, self.seed, overrides)

    def cost(self) -> float:
        """A rough cost for scheduling the longest runs first: 6 · params · training tokens (+ a floor)."""
        from zoo.registry import build

        config = self.config()
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
    draft: bool = False  # results written from uncommitted code, on purpose (--draft): the site marks the chapter


def missing_rungs(chapter: Chapter) -> list[str]:
    """Rungs an experiment declares that are not registered (yet)."""
    return _unregistered(chapter.experiment().RUNS)


def _unregistered(runs: list[RunSpec]) -> list[str]:
    from zoo import registry

    return sorted({r.rung for r in runs} - set(registry.names()))


def uncommitted_changes(root: Path) -> list[str] | None:
    """The paths ``git status`` reports in ``root`` (untracked files included, ignored ones not);
    None when it is not a git checkout or git cannot tell."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [line[3:] for line in out.stdout.splitlines() if line.strip()]


def require_clean_tree(root: Path) -> None:
    """The book's results are written only from a clean commit, so every number names the code that made it."""
    changes = uncommitted_changes(root)
    if changes is None:
        raise ZooError(f"{root} is not a git checkout, so its results could not name the code that made them; "
                       "run from a clone, or pass --draft")
    if changes:
        shown = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
        raise ZooError(f"uncommitted changes ({shown}): the book's results are written only from a clean commit; "
                       "commit first, or pass --draft to write results the site marks as a draft")


def plan_chapter(chapter: Chapter, *, smoke: bool = False, out: Path | None = None, force: bool = False,
                 corpus: str | None = None, seeds: list[int] | None = None, root: Path | None = None,
                 draft: bool = False) -> Plan:
    """Resolve a chapter's experiment into tasks. Results written into the chapter itself (not --smoke,
    not --out) need a clean commit unless ``draft``; a draft is marked as one in results.json."""
    root = root or book_root()
    into_chapter = out is None and not smoke
    if into_chapter and not draft:
        require_clean_tree(root)
    module = chapter.experiment()
    runs: list[RunSpec] = list(module.RUNS)
    corpus = corpus or getattr(module, "CORPUS", BOOK_CORPUS)
    missing = _unregistered(runs)  # (the experiment is imported once)
    if missing:
        raise ZooError(f"chapter {chapter.slug} needs rung(s) that are not registered yet: {', '.join(missing)}")
    for run in runs:
        if run.shared_with and not (root / "chapters" / run.shared_with / "chapter.md").is_file():
            raise ZooError(f"chapter {chapter.slug}: run {run.key!r} is shared with chapter {run.shared_with!r}, which does not exist")
    if out is None:
        dest = Path(tempfile.mkdtemp(prefix=f"zoo-{chapter.slug}-smoke-")) if smoke else chapter.path
    else:
        dest = Path(out)
    runs_root = (dest / "runs") if (smoke or out is not None) else root / "runs" / "book" / chapter.slug
    def run_dir(run: RunSpec, seed: int) -> Path:
        # a run another chapter trains too lives in that chapter's folder, so neither trains a second copy
        # (train_or_reuse refuses a finished run there whose config differs)
        if run.shared_with and not (smoke or out is not None):
            return root / "runs" / "book" / run.shared_with / f"{run.key}-seed{seed}"
        return runs_root / f"{run.key}-seed{seed}"

    tasks = [Task(chapter.slug, run, seed, corpus, smoke, run_dir(run, seed), force, root)
             for run in runs for seed in (seeds if seeds is not None else run.seeds)]
    from zoo.runs import git_commit

    return Plan(chapter, module, runs, corpus, dest, smoke, tasks, git_commit(), draft=draft and into_chapter)


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the book's root, as results.json records it. Lexically first: with ``runs/``
    a symbolic link to another disk, the resolved path is no longer under the root, and results.json
    would name one machine's folder."""
    for p, r in ((path, root), (path.resolve(), root.resolve())):
        try:
            return p.relative_to(r).as_posix()
        except ValueError:
            continue
    return str(path)


def run_task(task: Task, log=None) -> dict:
    """Train (or reuse, or resume) one task's run; its metrics with the seconds the book spent on it. A run
    whose loss stops being finite is recorded as diverged (``{"seed", "config", "diverged", "elapsed_s"}``,
    no scores) and kept so, not retrained, until ``--force``: a learning-rate sweep reports it and goes on."""
    from zoo.errors import Diverged
    from zoo.runs import train_or_reuse

    log = log or (lambda msg: print(msg, flush=True))
    config = task.config()
    diverged = task.run_dir / DIVERGED
    if diverged.is_file() and not task.force:
        record = json.loads(diverged.read_text())
        if record["config"] == config.to_dict():
            log(f"  {task.run.key} seed {task.seed}: diverged before, not retrained ({record['diverged']})")
            return {"seed": task.seed, **record}
    timing = task.run_dir / TIMING
    # a run whose metrics.json exists but whose timing was never written did not finish for the book
    force = task.force or ((task.run_dir / "metrics.json").is_file() and not timing.is_file())
    before = json.loads(timing.read_text()).get("elapsed_s", 0.0) if timing.is_file() and not force else 0.0
    start = time.perf_counter()
    try:
        metrics, reused = train_or_reuse(config, task.run_dir, force=force, quiet=True)
    except Diverged as e:
        record = {"config": config.to_dict(), "diverged": str(e).splitlines()[0], "elapsed_s": round(before + time.perf_counter() - start, 3)}
        task.run_dir.mkdir(parents=True, exist_ok=True)
        diverged.write_text(json.dumps(record) + "\n")
        log(f"  {task.run.key} seed {task.seed}: diverged — {record['diverged']}")
        return {"seed": task.seed, **record}
    if reused:
        log(f"  {task.run.key} seed {task.seed}: reusing the finished run in {_relative(task.run_dir, task.root)}")
        return {**metrics, "elapsed_s": before}
    elapsed = before + time.perf_counter() - start  # a resumed run adds the time its first attempt spent
    timing.write_text(json.dumps({"elapsed_s": round(elapsed, 3)}) + "\n")
    log(f"  {task.run.key} seed {task.seed}: val {metrics['val']['bpc']:.4f} bpc, test {metrics['test']['bpc']:.4f} bpc "
        f"({metrics['wall_s']:.1f} s training, {elapsed:.1f} s in all)")
    return {**metrics, "elapsed_s": round(elapsed, 3)}


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
        return {(t.chapter, t.run.key, t.seed): run_task(t, log) for t in tasks}
    threads = max(1, usable_cores() // jobs)
    order = sorted(tasks, key=lambda t: -t.cost())
    log(f"training {len(tasks)} run(s), {jobs} at a time, {threads} torch thread(s) each")
    trained = map_in_processes(run_task, [(t,) for t in order], jobs, threads)
    return {(t.chapter, t.run.key, t.seed): m for t, m in zip(order, trained)}


def read_curve(run_dir: Path) -> dict:
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


def portable(value: Any, root: Path) -> Any:
    """``value`` with every string that names a path under the book's root made relative to it: an
    analysis that records the run it read (``zoo repetition``'s reference, ``zoo landscape``'s other
    run) gets the absolute run directories the runner hands it, and results.json must not name one
    machine's folders."""
    prefixes = tuple(dict.fromkeys(str(r).rstrip("/") + "/" for r in (root, root.resolve())))  # as given, then resolved

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str):
            base = next((b for b in prefixes if v.startswith(b)), None)
            return v[len(base):] if base else v
        return v

    return walk(value)


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
                "curve": read_curve(task.run_dir),
                "sample": sample_path.read_text(encoding="utf-8") if sample_path.is_file() else "",
            })
        results_runs[run.key] = {
            "rung": run.rung, "preset": run.preset, "overrides": run.overrides, "seeds": [m["seed"] for m in per_seed],
            "label": run.label or run.key, "leaderboard": run.leaderboard, "beyond_budget": run.beyond_budget,
            "shared_with": run.shared_with,
            "summary": summarise(per_seed), "sample": per_seed[0]["sample"], "per_seed": per_seed,
        }
    values, compute_s = {}, 0.0
    run_dirs = {run.key: [t.run_dir for t in plan.tasks if t.run.key == run.key] for run in plan.runs}
    # compute(corpus): numbers measured without training; analyse(run_dirs, corpus): measured on the trained runs
    for hook, args in (("compute", (plan.corpus,)), ("analyse", (run_dirs, plan.corpus))):
        if not hasattr(module, hook):
            continue
        t0 = time.perf_counter()
        found = getattr(module, hook)(*args)
        compute_s += time.perf_counter() - t0
        if not isinstance(found, dict):
            raise ZooError(f"{chapter.slug}/experiment.py: {hook}() must return a dict")
        clash = set(found) & (set(results_runs) | set(RESERVED) | set(values))
        if clash:
            raise ZooError(f"{chapter.slug}/experiment.py: {hook}() keys clash with run names or other values: {sorted(clash)}")
        values.update(portable(found, root))
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
        "draft": plan.draft or plan.commit.endswith("+dirty"),  # the site marks a draft chapter as such
        "versions": versions(),
        "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # time to regenerate the chapter one run at a time: every run's train + evaluation + sampling, plus compute()
        # runs shared with an earlier chapter are that chapter's time, not this one's
        "elapsed_s": round(sum(m["elapsed_s"] for r in results_runs.values() if not r["shared_with"] for m in r["per_seed"]) + compute_s, 3),
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
                jobs: int = 1, draft: bool = False, log=print) -> Path:
    """Train a chapter's runs and write results.json and figures; returns the folder written.

    By default the chapter's own folder (runs go to runs/book/SLUG/, ignored by git). ``smoke`` shrinks
    every budget to a few steps and, unless ``out`` is given, writes into a fresh temporary folder, so
    committed results are never touched by a smoke run. ``jobs`` runs that many trainings at once.
    """
    root = root or book_root()
    plan = plan_chapter(chapter, smoke=smoke, out=out, force=force, corpus=corpus, seeds=seeds, root=root, draft=draft)
    log(f"chapter {chapter.slug}{' (smoke)' if smoke else ''}: {len(plan.tasks)} run(s) on {plan.corpus}")
    start = time.perf_counter()
    trained = execute(plan.tasks, jobs, log)
    return assemble_chapter(plan, trained, root, session_s=time.perf_counter() - start, log=log)
