"""`zoo ladder`: every rung, one preset, one corpus; a leaderboard in markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from zoo import registry
from zoo.errors import ZooError
from zoo.runs import check_config, make_config, train_or_reuse
from zoo.summary import leaderboard_row, size_cell, spread, summarise


QUICK_NOTE = """

The quick preset trains each rung for a few hundred steps on a small model: enough to see that every rung
trains, not to rank them. The counted n-gram needs no training, so it leads here; the networks, the
attention rungs most of all, have barely started. The ranking at the book's budget (thousands of steps,
every rung on the same text, three seeds) is the book's leaderboard, or run it yourself:
zoo ladder --preset book --data tinyshakespeare"""


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"## {title}", "", "| rung | params | wall s | tokens/s | val bpc |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        tps = f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-"
        lines.append(f"| {r['rung']} | {size_cell(r)} | {r['wall_s']:.1f} | {tps} | {spread(r['val_bpc'], '.4f')} |")
    return "\n".join(lines) + "\n"


def run_ladder(rungs: list[str], preset: str, out: Path, corpus: str | None = None, seed: int = 0, resume: bool = False,
               trainer: dict | None = None, quiet: bool = False) -> str:
    """Train (or keep, with ``resume``) every rung in ``rungs``; ``trainer`` overrides every preset's trainer
    options (threads, logger, ...); ``quiet`` prints one result line per rung and no progress."""
    infos = [registry.get(r) for r in rungs]  # unknown names fail before anything trains
    for info in infos:
        info.preset(preset)
    overrides = {**({"data": {"corpus": corpus}} if corpus else {}), **({"trainer": trainer} if trainer else {})}
    configs = [make_config(info.name, preset, seed, overrides or None) for info in infos]
    for config in configs:  # a bad --trainer.* option fails here, before the ladder's directory exists
        check_config(config)  # (make_config has resolved it)
    if out.exists() and not resume:
        raise ZooError(f"ladder directory {out} already exists; continue it with --resume --out {out} or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    rows, samples, corpus_name = [], [], corpus
    for info, config in zip(infos, configs):
        run_dir = out / info.name
        if not (run_dir / "metrics.json").is_file() and not quiet:
            print(f"— {info.name} ({preset})", flush=True)
        metrics, reused = train_or_reuse(config, run_dir, quiet=quiet)  # a rung finished by an earlier, interrupted ladder is kept
        if not reused:
            lead = f"{info.name}: " if quiet else "  "
            print(f"{lead}val {metrics['val']['bpc']:.4f} bpc, {metrics['wall_s']:.1f} s", flush=True)
        rows.append(leaderboard_row(info.name, info.name, summarise([metrics])))
        corpus_name = metrics["corpus"]["name"]
        samples.append(f"### {info.name}\n\n```\n{(run_dir / 'samples.txt').read_text(encoding='utf-8')[:300]}\n```\n")
    board = markdown(rows, f"Ladder — preset {preset}, corpus {corpus_name}, seed {seed}")
    (out / "leaderboard.md").write_text(board + "\n" + "\n".join(samples), encoding="utf-8")
    (out / "leaderboard.json").write_text(json.dumps({"preset": preset, "corpus": corpus_name, "seed": seed, "rows": rows}, indent=2) + "\n")
    note = QUICK_NOTE if preset == "quick" else ""
    return board + f"\n(leaderboard and samples in {out})" + note
