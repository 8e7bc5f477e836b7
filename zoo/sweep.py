"""`zoo sweep`: one rung trained at every point of a grid of settings, each point a normal run directory,
and one summary table.

    zoo sweep gpt --grid model.n_layer=1,2,4 optim.lr=1e-3,3e-3 --seeds 0,1 --jobs 2 --out runs/sweep

A grid entry is a dotted setting (``model.*``, ``data.*``, ``optim.*``, ``trainer.*``) and its values; the
points are every combination, times every seed. An entry with one value just sets it for every point.
Every point's config is checked before anything is created. The sweep directory holds ``sweep.json``
(what was asked), one run directory per point, and ``summary.md`` / ``summary.json``. ``--resume``
continues an interrupted sweep: finished points are kept (``zoo.runs.train_or_reuse``), an interrupted
one resumes from its checkpoint. A point whose training diverges (the harness stops a run whose loss is
not finite, with one line) is reported in the table as diverged, and the other points go on.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

from zoo import registry
from zoo.errors import Diverged, ZooError

SECTIONS = ("model", "data", "optim", "trainer")


def parse_value(text: str):
    """A grid value: an int, a float, true/false, or else the text itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_grid(entries: list[str], rung: str) -> dict[str, list]:
    """["model.n_layer=1,2", "optim.lr=1e-3"] -> {"model.n_layer": [1, 2], "optim.lr": [0.001]}, every name checked."""
    from zoo.config import SECTIONS as CONFIG_SECTIONS

    fields = {"model": {f.name for f in dataclasses.fields(registry.get(rung).cls.Config)} - {"vocab_size", "block_size"},
              **{name: {f.name for f in dataclasses.fields(cls)} for name, cls in CONFIG_SECTIONS.items()}}
    grid: dict[str, list] = {}
    for entry in entries:
        key, sep, values = entry.partition("=")
        section, _, name = key.partition(".")
        if not sep or not name:
            raise ZooError(f"--grid takes SECTION.NAME=V1,V2,... (got {entry!r})")
        if section not in SECTIONS:
            raise ZooError(f"--grid {key}: the section must be one of {', '.join(SECTIONS)}")
        if name not in fields[section]:
            raise ZooError(f"--grid {key}: {rung!r} has no {section} option {name!r} (valid: {', '.join(sorted(fields[section]))})")
        if key in grid:
            raise ZooError(f"--grid {key} is given twice; list all its values in one entry")
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not parsed:
            raise ZooError(f"--grid {key} has no values")
        grid[key] = parsed
    if not grid:
        raise ZooError("give at least one --grid SECTION.NAME=V1,V2,...")
    return grid


def points(grid: dict[str, list], seeds: list[int]) -> list[tuple[dict, int]]:
    """Every combination of the grid's values, times every seed, in a fixed order."""
    keys = list(grid)
    return [(dict(zip(keys, combo)), seed) for combo in itertools.product(*(grid[k] for k in keys)) for seed in seeds]


def point_name(settings: dict, seed: int) -> str:
    """A run directory name that says what the point is: model.n_layer=2__optim.lr=0.003__seed0."""
    return "__".join([f"{k}={v}" for k, v in settings.items()] + [f"seed{seed}"])


def nested(settings: dict) -> dict:
    """{"model.n_layer": 2} -> {"model": {"n_layer": 2}}."""
    out: dict = {}
    for key, value in settings.items():
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def plan(rung: str, grid: dict, seeds: list[int], preset: str, corpus: str | None, trainer: dict | None):
    """(name, config) of every point, each config checked as zoo train would check it."""
    from zoo.config import deep_merge
    from zoo.runs import check_config, make_config

    planned = []
    for settings, seed in points(grid, seeds):
        overrides = deep_merge({**({"data": {"corpus": corpus}} if corpus else {}), **({"trainer": trainer} if trainer else {})}, nested(settings))
        config = make_config(rung, preset, seed, overrides)
        try:
            check_config(config)  # make_config has resolved it
        except ZooError as e:
            raise ZooError(f"point {point_name(settings, seed)}: {e}") from None
        planned.append((point_name(settings, seed), settings, seed, config))
    return planned


def train_point(config, run_dir: Path) -> dict:
    """One point: its metrics, or {"status": "diverged" | "failed", "error": one line} (the sweep goes on)."""
    from zoo.runs import train_or_reuse

    try:
        metrics, _ = train_or_reuse(config, run_dir, quiet=True)
        return {"status": "done", **metrics}
    except ZooError as e:
        return {"status": "diverged" if isinstance(e, Diverged) else "failed", "error": str(e).splitlines()[0]}


def run_sweep(rung: str, grid: dict, out: Path, *, preset: str, corpus: str | None = None, seeds: list[int] = (0,),
              jobs: int = 1, trainer: dict | None = None, resume: bool = False, log=print) -> list[dict]:
    """Train every point of the grid into ``out``; returns the summary rows (also written to summary.json/.md)."""
    if jobs < 1:
        raise ZooError(f"--jobs must be >= 1 (got {jobs})")
    planned = plan(rung, grid, list(seeds), preset, corpus, trainer)
    spec = {"rung": rung, "preset": preset, "corpus": corpus, "grid": grid, "seeds": list(seeds), "trainer": trainer or {}}
    spec_path = out / "sweep.json"
    if out.exists():
        if not resume:
            raise ZooError(f"{out} already exists; continue that sweep with --resume, or choose another --out")
        if not spec_path.is_file():
            raise ZooError(f"{out} is not a sweep directory (no sweep.json)")
        before = json.loads(spec_path.read_text(encoding="utf-8"))
        if before != json.loads(json.dumps(spec)):
            raise ZooError(f"{out} holds a different sweep ({before}); --resume continues it with the same rung, grid, seeds and options")
    elif resume:
        raise ZooError(f"cannot resume: no sweep directory {out}")
    out.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    log(f"sweep: {len(planned)} point(s) of {rung}, {jobs} at a time, into {out}")
    results = _execute([(config, out / name) for name, _, _, config in planned], jobs)
    rows = [row(name, settings, seed, out / name, result) for (name, settings, seed, _), result in zip(planned, results)]
    (out / "summary.json").write_text(json.dumps({**spec, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(markdown(rows, list(grid)), encoding="utf-8")
    return rows


def _execute(work: list, jobs: int) -> list[dict]:
    if jobs == 1 or len(work) <= 1:
        return [train_point(config, run_dir) for config, run_dir in work]
    from zoo.parallel import map_in_processes

    return map_in_processes(train_point, work, jobs)  # one torch thread per process, as zoo book --jobs


def row(name: str, settings: dict, seed: int, run_dir: Path, result: dict) -> dict:
    """One line of the summary."""
    done = result["status"] == "done"
    return {"point": name, **settings, "seed": seed, "run_dir": str(run_dir), "status": result["status"],
            "error": result.get("error"), "params": result.get("params"), "params_non_embedding": result.get("params_non_embedding"),
            "val_bpc": result["val"]["bpc"] if done else None, "test_bpc": result["test"]["bpc"] if done else None,
            "wall_s": result.get("wall_s"), "tokens_per_s": result.get("tokens_per_s")}


def markdown(rows: list[dict], keys: list[str]) -> str:
    """The summary as a markdown table, one line per point."""
    head = [*keys, "seed", "params", "non-embedding", "val bpc", "test bpc", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        score = [f"{r['val_bpc']:.4f}", f"{r['test_bpc']:.4f}"] if r["status"] == "done" else [r["status"], ""]
        cells = [str(r[k]) for k in keys] + [str(r["seed"]), f"{r['params']:,}" if r["params"] is not None else "",
                                             f"{r['params_non_embedding']:,}" if r["params_non_embedding"] is not None else "",
                                             *score, f"{r['wall_s']:.1f}" if r["wall_s"] is not None else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
