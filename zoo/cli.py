"""The ``zoo`` command: thin. It parses, builds through the registry and calls the run API.

    zoo list                                   rungs in ladder order
    zoo train RUNG [--preset P] [--data CORPUS] [--seed N] [--out DIR] [--resume DIR]
                   [--config FILE] [--model.* --data.* --optim.* --trainer.*] [--print_config]
    zoo eval RUN_DIR [--split val|test] [--json] [--data CORPUS]
    zoo sample RUN_DIR [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
    zoo ladder [--preset quick|book] [--data CORPUS] [--seed N] [--out DIR] [--resume] [--rungs a,b]
    zoo chapter run NN [--smoke] [--force]     train a chapter's experiment, write its results.json and figures
    zoo book [--smoke] [--figures-only]        every chapter, then the home page's table and plot

Bad input is one line on stderr and exit code 2; a run stopped by Ctrl-C or SIGTERM saves its last step,
says so in one line and exits with 130 or 143.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

from jsonargparse import ActionConfigFile, ArgumentParser

from zoo import book, registry
from zoo.config import DataConfig, OptimConfig, TrainerConfig, deep_merge
from zoo.errors import Interrupted, ZooError

COMMANDS = ("list", "train", "eval", "sample", "ladder", "chapter", "book")


def _quiet_libraries() -> None:
    """Keep Lightning's banners ("GPU available: False", tips) and library deprecation chatter off the screen."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|exists and is not empty|resuming from a checkpoint).*")
    warnings.filterwarnings("ignore", module="lightning.*", category=UserWarning)


def _parser(prog: str, description: str) -> ArgumentParser:
    return ArgumentParser(prog=prog, description=description, exit_on_error=False, default_meta=False)


def _data_shortcut(argv: list[str]) -> list[str]:
    """``--data CORPUS`` is shorthand for ``--data.corpus CORPUS`` (the data section keeps its dotted flags)."""
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith("--data=") and not arg[7:].lstrip().startswith("{"):
            out.append("--data.corpus=" + arg[7:])
        elif arg == "--data" and i + 1 < len(argv) and not argv[i + 1].lstrip().startswith("{"):
            out.append("--data.corpus")
        else:
            out.append(arg)
    return out


def _default_out(stem: str) -> Path:
    """runs/STEM, or runs/STEM-2, -3, ... : a new run never lands in an old directory."""
    base = Path("runs") / stem
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# ---------------------------------------------------------------------------------------------- list
def cmd_list(argv: list[str]) -> int:
    _parser("zoo list", "List the rungs in ladder order.").parse_args(argv)
    rows = registry.infos()
    width = max(len(r.name) for r in rows)
    for r in rows:
        print(f"{r.name:<{width}}  {r.chapter or '-':<20}  {r.summary}")
    return 0


# --------------------------------------------------------------------------------------------- train
def train_parser(rung: str, preset: str, base: dict | None = None) -> ArgumentParser:
    """The parser for ``zoo train RUNG``: the rung's Config under --model, defaults from the preset."""
    info = registry.get(rung)
    p = _parser("zoo train", f"Train rung {rung!r} into a run directory.")
    p.add_argument("--config", action=ActionConfigFile, help="a YAML run config, e.g. a run's config.yaml")
    p.add_argument("rung", type=str, help="registry name, see `zoo list`")
    p.add_argument("--preset", type=str, default="quick", help="named settings of the rung: " + ", ".join(info.cls.presets))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Optional[str], default=None, help="run directory (default runs/RUNG-PRESET[-N])")
    p.add_argument("--resume", type=Optional[str], default=None, help="continue the run in this directory")
    p.add_class_arguments(info.cls.Config, "model", skip={"vocab_size", "block_size"}, fail_untyped=False)
    p.add_class_arguments(DataConfig, "data")
    p.add_class_arguments(OptimConfig, "optim")
    p.add_class_arguments(TrainerConfig, "trainer")
    defaults = deep_merge(info.preset(preset), base or {})
    flat = {f"{section}.{k}": v for section, values in defaults.items() if isinstance(values, dict) for k, v in values.items()}
    flat.update({k: v for k, v in (base or {}).items() if not isinstance(v, dict) and k in ("seed", "preset")})
    p.set_defaults(flat)
    return p


def cmd_train(argv: list[str]) -> int:
    from zoo.runs import check_resume, read_config, train

    argv = _data_shortcut(argv)
    known = _prescan(argv)
    if known.get("help") and not known.get("rung"):
        print("usage: zoo train RUNG [--preset P] [--data CORPUS] [--seed N] [--out DIR] [--resume DIR] [--config FILE] "
              "[--model.* --data.* --optim.* --trainer.*] [--print_config]\n\nrungs: " + ", ".join(registry.names()))
        return 0
    rung = known.get("rung")
    if not rung:
        raise ZooError("zoo train needs a rung name (see `zoo list`)")
    base = None
    if known.get("resume"):
        saved = read_config(Path(known["resume"]))
        if saved.rung != rung:
            raise ZooError(f"{known['resume']} holds a {saved.rung!r} run, not {rung!r}")
        base = saved.to_dict()
    preset = known.get("preset") or (base or {}).get("preset") or "quick"
    parser = train_parser(rung, preset, base)
    ns = parser.parse_args(argv)
    values = ns.as_dict()
    values.pop("config", None)
    out, resume = values.pop("out"), values.pop("resume")
    from zoo.config import RunConfig

    config = RunConfig.from_dict(values)
    if resume and out and Path(out) != Path(resume):
        raise ZooError("--out and --resume name different directories; --resume continues the run in place")
    run_dir = Path(resume or out or _default_out(f"{rung}-{preset}"))
    finished = check_resume(config, run_dir) if resume else None
    if finished is not None:  # nothing to do, and nothing is rewritten; exit 0, so that a repeated job is harmless
        further = "; raise --trainer.max_steps to train it further" if registry.get(rung).trainable else ""
        print(f"{rung}: the run in {run_dir} is already finished ({finished['steps']} steps, val {finished['val']['bpc']:.4f} bpc){further}")
        return 0
    metrics = train(config, run_dir, resume=bool(resume))
    if metrics:
        v = metrics["val"]
        print(f"{rung}: val {v['bpc']:.4f} bpc ({v['nats']:.4f} nats/char) after {metrics['steps']} steps — run in {run_dir}")
    return 0


def _prescan(argv: list[str]) -> dict:
    """Find the rung, --preset and --resume before the full parser (which depends on them) exists."""
    found, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            found["help"] = True
        elif arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            if key in ("preset", "resume"):
                found[key] = value
        elif arg in ("--preset", "--resume") and i + 1 < len(argv):
            found[arg[2:]] = argv[i + 1]
            i += 1
        elif arg.startswith("--"):
            i += 1 if (i + 1 < len(argv) and not argv[i + 1].startswith("--") and arg != "--print_config") else 0
        elif "rung" not in found:
            found["rung"] = arg
        i += 1
    return found


# ---------------------------------------------------------------------------------------------- eval
def cmd_eval(argv: list[str]) -> int:
    from zoo.data import CharTokenizer, split, load_corpus
    from zoo.evaluate import score
    from zoo.runs import load_run

    p = _parser("zoo eval", "Re-score a run with the evaluation protocol.")
    p.add_argument("run_dir", type=str)
    p.add_argument("--split", type=str, default="val", choices=["val", "test"])
    p.add_argument("--json", action="store_true", help="print {split, tokens, nats, bpc} as JSON")
    p.add_argument("--data", type=Optional[str], default=None, help="score another corpus (default: the run's)")
    args = p.parse_args(argv)
    run = load_run(args.run_dir)
    corpus = load_corpus(args.data or run.config.data.corpus)
    tokens = split(run.tokenizer.encode(corpus.text))[args.split]  # unknown characters: a clear error
    if len(tokens) < 2:
        raise ZooError(f"the {args.split} split of {corpus.name!r} has fewer than two characters")
    result = {"split": args.split, **score(run.model, tokens, run.config.data.block_size)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{run.config.rung} {args.split}: {result['bpc']:.4f} bpc ({result['nats']:.4f} nats/char over {result['tokens']} characters)")
    return 0


# -------------------------------------------------------------------------------------------- sample
def cmd_sample(argv: list[str]) -> int:
    from zoo.generate import sample
    from zoo.runs import load_run

    p = _parser("zoo sample", "Sample text from a trained run.")
    p.add_argument("run_dir", type=str)
    p.add_argument("--prompt", type=str, default="\n")
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", "--top_k", dest="top_k", type=Optional[int], default=None)
    p.add_argument("--top-p", "--top_p", dest="top_p", type=Optional[float], default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run = load_run(args.run_dir)
    text = sample(run.model, run.tokenizer, args.prompt, args.tokens, args.temperature, args.top_k, args.top_p,
                  args.seed, block_size=run.config.data.block_size)
    print(args.prompt + text)
    return 0


# -------------------------------------------------------------------------------------------- ladder
def cmd_ladder(argv: list[str]) -> int:
    from zoo.ladder import run_ladder

    argv = _data_shortcut(argv)
    p = _parser("zoo ladder", "Train every registered rung in ladder order and write a leaderboard.")
    p.add_argument("--preset", type=str, default="quick")
    p.add_argument("--data.corpus", type=Optional[str], default=None, help="corpus for every rung (default: each preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Optional[str], default=None, help="default runs/ladder-PRESET-CORPUS[-N]")
    p.add_argument("--resume", action="store_true", help="continue the ladder in --out: finished rungs are kept")
    p.add_argument("--rungs", type=Optional[str], default=None, help="comma-separated subset, e.g. bigram,gpt")
    args = p.parse_args(argv)
    corpus = args.data.corpus if args.data else None
    rungs = args.rungs.split(",") if args.rungs else registry.names()
    if args.resume and not args.out:
        raise ZooError("--resume needs --out DIR (the ladder directory to continue)")
    out = Path(args.out) if args.out else _default_out(f"ladder-{args.preset}-{Path(corpus or 'pydoc').stem}")
    board = run_ladder(rungs, args.preset, out, corpus=corpus, seed=args.seed, resume=args.resume)
    print(board)
    return 0


HANDLERS = {"list": cmd_list, "train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "ladder": cmd_ladder,
            "chapter": book.cmd_chapter, "book": book.cmd_book}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in HANDLERS:
        import difflib

        close = difflib.get_close_matches(command, COMMANDS, n=1)
        print(f"zoo: error: unknown command {command!r}" + (f"; did you mean {close[0]!r}?" if close else "") + f" (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    _quiet_libraries()
    try:
        return HANDLERS[command](rest)
    except Interrupted as e:
        print(f"zoo {command}: {e}", file=sys.stderr)
        return e.exit_code
    except SystemExit as e:  # --help and --print_config finish by exiting; report their code
        return e.code if isinstance(e.code, int) else 0
    except ZooError as e:
        print(f"zoo {command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # jsonargparse's ArgumentError and friends: one line, not a traceback
        if e.__class__.__name__ in ("ArgumentError", "NSKeyError") or e.__class__.__module__.startswith("jsonargparse"):
            message = " ".join(str(e).split())
            print(f"zoo {command}: error: {message}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(f"zoo {command}: interrupted", file=sys.stderr)
        return 130
