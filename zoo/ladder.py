"""`zoo ladder`: every rung, one preset, one corpus; a leaderboard in markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from zoo import registry
from zoo.errors import ZooError
from zoo.runs import make_config, train_or_reuse
from zoo.summary import leaderboard_row, size_cell, spread, summarise


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"## {title}", "", "| rung | params | wall s | tokens/s | val bpc |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        tps = f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-"
        lines.append(f"| {r['rung']} | {size_cell(r)} | {r['wall_s']:.1f} | {tps} | {spread(r['val_bpc'], '.4f')} |")
    return "\n".join(lines) + "\n"


def run_ladder(rungs: list[str], preset: str, out: Path, corpus: str | None = None, seed: int = 0, resume: bool = False) -> str:
    infos = [registry.get(r) for r in rungs]  # unknown names fail before anything trains
    for info in infos:
        info.preset(preset)
    if out.exists() and not resume:
        raise ZooError(f"ladder directory {out} already exists; continue it with --resume --out {out} or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    rows, samples, corpus_name = [], [], corpus
    for info in infos:
        run_dir = out / info.name
        config = make_config(info.name, preset, seed, {"data": {"corpus": corpus}} if corpus else None)
        if not (run_dir / "metrics.json").is_file():
            print(f"— {info.name} ({preset})", flush=True)
        metrics, reused = train_or_reuse(config, run_dir)  # a rung finished by an earlier, interrupted ladder is kept
        if not reused:
            print(f"  val {metrics['val']['bpc']:.4f} bpc, {metrics['wall_s']:.1f} s", flush=True)
        rows.append(leaderboard_row(info.name, info.name, summarise([metrics])))
        corpus_name = metrics["corpus"]["name"]
        samples.append(f"### {info.name}\n\n```\n{(run_dir / 'samples.txt').read_text(encoding='utf-8')[:300]}\n```\n")
    board = markdown(rows, f"Ladder — preset {preset}, corpus {corpus_name}, seed {seed}")
    (out / "leaderboard.md").write_text(board + "\n" + "\n".join(samples), encoding="utf-8")
    (out / "leaderboard.json").write_text(json.dumps({"preset": preset, "corpus": corpus_name, "seed": seed, "rows": rows}, indent=2) + "\n")
    return board + f"\n(leaderboard and samples in {out})"
