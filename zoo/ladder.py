"""`zoo ladder`: every rung, one preset, one corpus; a leaderboard in markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from zoo import registry
from zoo.errors import ZooError
from zoo.runs import CHECKPOINT, make_config, train

COLUMNS = ("rung", "params", "wall_s", "tokens_per_s", "val_bpc")


def leaderboard_rows(metrics: list[dict]) -> list[dict]:
    return [{"rung": m["rung"], "params": m["params"], "wall_s": m["wall_s"], "tokens_per_s": m["tokens_per_s"],
             "val_bpc": m["val"]["bpc"], "test_bpc": m["test"]["bpc"], "steps": m["steps"]} for m in metrics]


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"## {title}", "", "| rung | params | wall s | tokens/s | val bpc |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        tps = f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-"
        lines.append(f"| {r['rung']} | {r['params']:,} | {r['wall_s']:.1f} | {tps} | {r['val_bpc']:.4f} |")
    return "\n".join(lines) + "\n"


def run_ladder(rungs: list[str], preset: str, out: Path, corpus: str | None = None, seed: int = 0, resume: bool = False) -> str:
    infos = [registry.get(r) for r in rungs]  # unknown names fail before anything trains
    for info in infos:
        info.preset(preset)
    if out.exists() and not resume:
        raise ZooError(f"ladder directory {out} already exists; continue it with --resume --out {out} or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    results, samples = [], []
    for info in infos:
        run_dir = out / info.name
        metrics_file = run_dir / "metrics.json"
        if metrics_file.is_file():  # finished in an earlier, interrupted ladder
            metrics = json.loads(metrics_file.read_text())
        else:
            config = make_config(info.name, preset, seed, {"data": {"corpus": corpus}} if corpus else None)
            print(f"— {info.name} ({preset})", flush=True)
            metrics = train(config, run_dir, resume=(run_dir / CHECKPOINT).is_file())
            print(f"  val {metrics['val']['bpc']:.4f} bpc, {metrics['wall_s']:.1f} s", flush=True)
        results.append(metrics)
        samples.append(f"### {info.name}\n\n```\n{(run_dir / 'samples.txt').read_text(encoding='utf-8')[:300]}\n```\n")
    rows = leaderboard_rows(results)
    corpus_name = results[0]["corpus"]["name"] if results else corpus
    board = markdown(rows, f"Ladder — preset {preset}, corpus {corpus_name}, seed {seed}")
    (out / "leaderboard.md").write_text(board + "\n" + "\n".join(samples), encoding="utf-8")
    (out / "leaderboard.json").write_text(json.dumps({"preset": preset, "corpus": corpus_name, "seed": seed, "rows": rows}, indent=2) + "\n")
    return board + f"\n(leaderboard and samples in {out})"
