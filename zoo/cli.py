"""The ``zoo`` command: thin. It parses, builds through the registry and calls the run API.

    zoo list                                   rungs in ladder order
    zoo train RUNG [--preset P] [--data CORPUS] [--seed N] [--out DIR] [--resume DIR] [--quiet]
                   [--config FILE] [--model.* --data.* --optim.* --trainer.*] [--print_config]
    zoo check RUNG                             the conformance checks on one rung (exit 1 if any fails)
    zoo eval RUN_DIR [--split val|test] [--json] [--data CORPUS] [--window N] [--mix RUN_DIR... [--weight W]]
    zoo lens RUN_DIR [--split val|test] [--tuned-steps N] [--prompt TEXT] [--top-k K] [--json] [--figure PNG]
    zoo embed RUN_DIR [--split val|test] [--top-k K] [--json]
    zoo landscape RUN_DIR [--hessian] [--slices] [--between RUN_DIR] [--llc] [--step N] [--batch-size B] [--json]
    zoo sample RUN_DIR [--prompt TEXT] [--tokens N] [--strategy sample|greedy|beam] [--beam N] [--temperature T]
                   [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty θ] [--seed S] [--mix RUN_DIR]
    zoo repetition [FILE | - | --corpus NAME [--split S]] [--reference RUN_DIR] [--max-n N] [--json]
    zoo export RUN_DIR OUT [--format hf]       a gpt run as a Hugging Face Llama model and tokenizer
    zoo ladder [--preset quick|book] [--data CORPUS] [--seed N] [--out DIR] [--resume] [--rungs a,b] [--quiet] [--trainer.*]
    zoo sweep RUNG --grid SECTION.NAME=V1,V2 ... [--seeds 0,1] [--jobs N] [--out DIR] [--resume] [--trainer.*]
    zoo chapter run NN [--smoke] [--force]     train a chapter's experiment, write its results.json and figures
    zoo book [--smoke] [--figures-only]        every chapter, then the home page's table and plot

Bad input is one line on stderr and exit code 2; a run stopped by Ctrl-C or SIGTERM saves its last step,
says so in one line and exits with 130 or 143.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from jsonargparse import ActionConfigFile, ArgumentParser

from zoo import book, registry
from zoo.config import DEFAULT_CORPUS, DEFAULT_PRESET, DataConfig, OptimConfig, TrainerConfig, deep_merge
from zoo.errors import Interrupted, ZooError
from zoo.quiet import quiet_libraries
from zoo.summary import duration

COMMANDS = ("list", "check", "train", "eval", "lens", "embed", "landscape", "sample", "repetition", "export", "ladder", "sweep", "chapter", "book")


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


def _corpus_splits(run, data: str | None):
    """The corpus a command scores (``--data``, else the run's own) and its splits in the run's vocabulary
    (a character the run never saw is one clear error)."""
    from zoo.data import load_corpus, split

    corpus = load_corpus(data or run.config.data.corpus)
    return corpus, split(run.tokenizer.encode(corpus.text))


# ---------------------------------------------------------------------------------------------- list
def cmd_check(argv: list[str]) -> int:
    """Every conformance check (zoo.conformance, the same code as the test suite) on one rung."""
    p = _parser("zoo check", "Run the rung conformance checks on one registered rung (zoo's or a plug-in's).")
    p.add_argument("rung", type=str, help="a registered rung's exact name (zoo list)")
    args = p.parse_args(argv)
    from zoo.conformance import run_checks

    registry.get(args.rung)  # an unknown or broken rung: one line, exit 2
    results = run_checks(args.rung)
    width = max(len(c) for c, _, _ in results)
    for check, status, line in results:
        print(f"{status.upper():4s}  {check:{width}s}  {line}", flush=True)
    failed = [c for c, status, _ in results if status == "fail"]
    print(f"{args.rung}: {len(results) - len(failed)} of {len(results)} checks passed or skipped" +
          (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_list(argv: list[str]) -> int:
    _parser("zoo list", "List the rungs in ladder order.").parse_args(argv)
    rows = registry.infos()
    width = max(len(r.name) for r in rows)
    for r in rows:
        print(f"{r.name:<{width}}  {r.chapter or '-':<20}  {r.summary}")
    for name, why in registry.broken().items():  # listed, not fatal: every other rung still works
        print(f"zoo list: {why}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------- train
def train_parser(rung: str, preset: str, base: dict | None = None) -> ArgumentParser:
    """The parser for ``zoo train RUNG``: the rung's Config under --model, defaults from the preset."""
    info = registry.get(rung)
    p = _parser("zoo train", f"Train rung {rung!r} into a run directory.")
    p.add_argument("--config", action=ActionConfigFile, help="a YAML run config, e.g. a run's config.yaml")
    p.add_argument("rung", type=str, help="registry name, see `zoo list`")
    p.add_argument("--preset", type=str, default=DEFAULT_PRESET, help="named settings of the rung: " + ", ".join(info.cls.presets))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Optional[str], default=None, help="run directory (default runs/RUNG-PRESET[-N])")
    p.add_argument("--resume", type=Optional[str], default=None, help="continue the run in this directory")
    p.add_argument("--quiet", action="store_true", help="no progress: only the result line (and errors)")
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
    preset = known.get("preset") or (base or {}).get("preset") or DEFAULT_PRESET
    parser = train_parser(rung, preset, base)
    ns = parser.parse_args(argv)
    values = ns.as_dict()
    values.pop("config", None)
    out, resume, quiet = values.pop("out"), values.pop("resume"), values.pop("quiet")
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
    _use_free_cores(config.trainer.threads)
    metrics = train(config, run_dir, resume=bool(resume), quiet=quiet)  # a resumed run takes the threads it started with
    if metrics:
        v = metrics["val"]
        print(f"{rung}: val {v['bpc']:.4f} bpc ({v['nats']:.4f} nats/char) after {metrics['steps']} steps — run in {run_dir}")
    return 0


def _use_free_cores(threads: int) -> None:
    """--trainer.threads 0 (the default), in a command that trains in its own process: one torch thread per core
    that no other process keeps busy (zoo.parallel.free_threads), unless OMP_NUM_THREADS already says how many.
    (The Python API leaves the caller's thread setting alone, and zoo book's processes keep one thread each.)"""
    if threads == 0 and "OMP_NUM_THREADS" not in os.environ:
        from zoo.parallel import free_threads

        n = free_threads()
        if n is not None:
            import torch

            torch.set_num_threads(n)


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
    import torch

    from zoo.evaluate import nanogpt_estimate, score
    from zoo.runs import load_run

    p = _parser("zoo eval", "Re-score a run with the evaluation protocol.")
    p.add_argument("run_dir", type=str)
    p.add_argument("--split", type=Optional[str], default=None, help="val (default) or test")
    p.add_argument("--json", action="store_true", help="print {split, tokens, nats, bpc} as JSON")
    p.add_argument("--data", type=Optional[str], default=None, help="score another corpus (default: the run's)")
    p.add_argument("--estimator", type=str, default="protocol", choices=["protocol", "nanogpt"],
                   help="protocol (every target once; the book's numbers) or nanogpt (nanoGPT's estimate_loss: "
                        "random windows of the run's block size on the last 10 %% of the text, every position)")
    p.add_argument("--batches", type=int, default=200, help="with --estimator nanogpt: batches to average (nanoGPT's eval_iters)")
    p.add_argument("--seed", type=int, default=0, help="with --estimator nanogpt: where the random windows start")
    p.add_argument("--window", type=Optional[int], default=None,
                   help="cut the context: score with windows of N characters (at most the run's block size; stateful "
                        "rungs restart in every window) instead of the protocol's")
    p.add_argument("--mix", type=str, default=None, nargs="+", metavar="RUN_DIR",
                   help="score the mixture λ·RUN + (1-λ)·this run (same vocabulary), e.g. a network with an n-gram; "
                        "several runs: weights on all of them fitted on val")
    p.add_argument("--weight", type=Optional[str], default=None,
                   help="with --mix: auto (one λ fitted on val, the default), by-context (one λ per bucket of how often "
                        "the n-gram saw the context, fitted on val) or λ in [0, 1]; only auto with several --mix runs")
    args = p.parse_args(argv)
    if args.split not in (None, "val", "test"):
        raise ZooError(f"--split must be val or test, got {args.split!r}")
    if args.estimator == "nanogpt" and args.split:
        raise ZooError("--estimator nanogpt scores the last 10 % of the text (val and test together, as nanoGPT's val split); drop --split")
    if args.estimator == "nanogpt" and (args.window is not None or args.mix is not None):
        raise ZooError("--window and --mix change the book's protocol; they cannot be combined with --estimator nanogpt")
    if args.batches < 1:
        raise ZooError(f"--batches must be >= 1, got {args.batches}")
    if args.window is not None and args.window < 1:
        raise ZooError(f"--window must be >= 1 character, got {args.window}")
    weight = _mix_weight(args)
    if args.mix is not None and len(args.mix) > 1 and weight != "auto":
        raise ZooError("with several --mix runs the weights are fitted on val (--weight auto); by-context and a given λ take one")
    run = load_run(args.run_dir)
    others = [load_run(d) for d in args.mix] if args.mix is not None else []
    corpus, splits = _corpus_splits(run, args.data)
    block = run.config.data.block_size
    if args.estimator == "nanogpt":
        tokens = torch.cat([splits["val"], splits["test"]])  # the last 10 %: nanoGPT's val split
        if len(tokens) <= block:
            raise ZooError(f"the last 10 % of {corpus.name!r} is shorter than a window ({block} characters)")
        result = {"split": "val+test", **nanogpt_estimate(run.model, tokens, block, run.config.data.batch_size, args.batches, args.seed)}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{run.config.rung} nanoGPT's estimator (not the book's protocol): {result['bpc']:.4f} bpc "
                  f"({result['nats']:.4f} nats/char), the mean loss of {args.batches} batches of {result['batch_size']} random "
                  f"windows of {block} on the last 10 % of the text (seed {args.seed})")
        return 0
    name = args.split or "val"
    tokens = splits[name]
    if len(tokens) < 2:
        raise ZooError(f"the {name} split of {corpus.name!r} has fewer than two characters")
    try:
        if len(others) > 1:
            from zoo.mixture import mix_many

            result = {"split": name, **mix_many(run, others, tokens, splits["val"], window=args.window)}
        elif others:
            from zoo.mixture import mix_runs

            result = {"split": name, **mix_runs(run, others[0], tokens, weight, fit_tokens=splits["val"], window=args.window)}
        else:
            result = {"split": name, **score(run.model, tokens, block, window=args.window)}
    except ValueError as e:  # a window the model cannot take, runs that cannot be mixed
        raise ZooError(str(e)) from None
    if args.window is not None:
        result["window"] = args.window
    if others:
        result["mix"] = {"runs": [str(o.dir) for o in others], "fitted_on": None if isinstance(weight, float) else "val"}
    if args.json:
        print(json.dumps(result))
        return 0
    cut = f", windows of {args.window} characters (not the protocol's {block})" if args.window is not None else ""
    line = f"{result['bpc']:.4f} bpc ({result['nats']:.4f} nats/char over {result['tokens']} characters{cut})"
    if not others:
        print(f"{run.config.rung} {name}: {line}")
        return 0
    w = result["weights"]
    if "simplex" in w:
        names = [run.config.rung] + [o.config.rung for o in others]
        fitted = ", ".join(f"{n} {x:.3f}" for n, x in zip(names, w["simplex"]))
        alone = ", ".join(f"{n} {p['bpc']:.4f} bpc" for n, p in zip(names, result["parts"].values()))
        print(f"mixture of {len(names)} runs {name}: {line}; weights {fitted} (fitted on val)\n  alone on the same characters: {alone}")
        return 0
    how = "given" if isinstance(weight, float) else ("fitted on val" + (", where it is scored" if name == "val" else ""))
    shown = (f"λ = {w['weight']:.3f} on {run.config.rung}" if "weight" in w else
             "λ on " + run.config.rung + " by how often the n-gram saw the context: " +
             ", ".join(f"{k}: {v:.2f}" for k, v in w["by_context_count"].items()))
    parts = result["parts"]
    other = others[0].config.rung
    print(f"{run.config.rung} + {other} mixture {name}: {line}; {shown} ({how})\n"
          f"  alone on the same characters: {run.config.rung} {parts['a']['bpc']:.4f} bpc, {other} {parts['b']['bpc']:.4f} bpc")
    return 0


# ---------------------------------------------------------------------------------------------- lens
def cmd_lens(argv: list[str]) -> int:
    from zoo.inside_report import check_args, draw, format_report, lens_report
    from zoo.runs import load_run

    p = _parser("zoo lens", "What each layer of a run would predict: the logit lens and the tuned lens, scored by the protocol.")
    p.add_argument("run_dir", type=str)
    p.add_argument("--split", type=str, default="val", choices=["val", "test"], help="the split each layer's read-out is scored on")
    p.add_argument("--tuned-steps", "--tuned_steps", dest="tuned_steps", type=int, default=0,
                   help="also fit a tuned lens (one identity-initialised affine translator per layer) for N steps on the train split")
    p.add_argument("--lr", type=float, default=1e-3, help="the tuned lens's Adam learning rate")
    p.add_argument("--prompt", type=Optional[str], default=None, help="text to read layer by layer (default: the split's first 32 characters)")
    p.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=5, help="characters shown per layer after the prompt")
    p.add_argument("--seed", type=int, default=0, help="the tuned lens's windows and initial state")
    p.add_argument("--data", type=Optional[str], default=None, help="score another corpus (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--figure", type=Optional[str], default=None, help="write the prompt's layer-by-position heatmap here (PNG; not overwritten)")
    args = p.parse_args(argv)
    check_args(args.tuned_steps, args.top_k, args.lr)
    figure = Path(args.figure) if args.figure else None
    if figure is not None and figure.exists():
        raise ZooError(f"{figure} already exists; give --figure a new path")
    run = load_run(args.run_dir)
    _, splits = _corpus_splits(run, args.data)
    report = lens_report(run, splits, args.split, args.prompt, args.top_k, args.tuned_steps, args.lr, args.seed)
    if figure is not None:
        figure.parent.mkdir(parents=True, exist_ok=True)
        draw(report, figure)
        report["figure"] = str(figure)
    print(json.dumps(report) if args.json else format_report(report) + (f"\nfigure: {figure}" if figure else ""))
    return 0


def cmd_embed(argv: list[str]) -> int:
    from zoo.inside_report import embed_report, format_embed_report
    from zoo.runs import load_run

    p = _parser("zoo embed", "Each character embedded and read straight out, its nearest neighbours, and the residual stream's norm by layer.")
    p.add_argument("run_dir", type=str)
    p.add_argument("--split", type=str, default="val", choices=["val", "test"], help="the split the stream's norms are measured on")
    p.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=3, help="predictions and neighbours shown per character")
    p.add_argument("--data", type=Optional[str], default=None, help="measure the norms on another corpus (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = p.parse_args(argv)
    run = load_run(args.run_dir)
    corpus, splits = _corpus_splits(run, args.data)
    tokens = splits[args.split]
    if len(tokens) < 2:
        raise ZooError(f"the {args.split} split of {corpus.name!r} has fewer than two characters")
    report = embed_report(run, tokens, args.split, args.top_k)
    print(json.dumps(report) if args.json else format_embed_report(report))
    return 0


def cmd_landscape(argv: list[str]) -> int:
    from zoo.landscape.cli import landscape

    p = _parser("zoo landscape", "A run's loss landscape on a fixed batch of training windows: the Hessian's spectrum, loss "
                "slices, the line to another run, the local learning coefficient. Figures and report.json go beside the run.")
    p.add_argument("run_dir", type=str)
    p.add_argument("--hessian", action="store_true", help="top and bottom eigenvalues (Lanczos) and the spectral density (SLQ)")
    p.add_argument("--slices", action="store_true", help="the loss along two filter-normalised random directions and over their plane")
    p.add_argument("--between", type=Optional[str], default=None, metavar="RUN_DIR", help="the loss on the straight line to this run's weights")
    p.add_argument("--llc", action="store_true", help="the local learning coefficient by SGLD")
    p.add_argument("--step", type=Optional[int], default=None, help="the checkpoint the run kept at this step (--trainer.keep_every), not its last")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=16, help="windows in the fixed batch")
    p.add_argument("--seed", type=int, default=0, help="random directions, start vectors and SGLD noise")
    p.add_argument("--lanczos-steps", "--lanczos_steps", dest="lanczos_steps", type=int, default=40, help="Hessian-vector products per Lanczos run")
    p.add_argument("--vectors", type=int, default=3, help="start vectors of the spectral density")
    p.add_argument("--near-zero", "--near_zero", dest="near_zero", type=float, default=1e-3, help="|λ| below this share of the largest counts as flat")
    p.add_argument("--span", type=float, default=1.0, help="slices run from -span to +span")
    p.add_argument("--points", type=int, default=21, help="points per slice axis")
    p.add_argument("--llc-step", "--llc_step", dest="llc_step", type=Optional[float], default=None, help="SGLD step size ε (default: by --llc-step-rule)")
    p.add_argument("--llc-step-rule", "--llc_step_rule", dest="llc_step_rule", type=float, default=0.5,
                   help="without --llc-step: ε = c / (nβ λ_max + γ), λ_max measured by Lanczos first")
    p.add_argument("--llc-batch-size", "--llc_batch_size", dest="llc_batch_size", type=int, default=0, help="windows per SGLD minibatch (default: --batch-size)")
    p.add_argument("--llc-nbeta", "--llc_nbeta", dest="llc_nbeta", type=Optional[float], default=None,
                   help="nβ (default: n / log n, which needs very long chains on a large model; see chapter 13)")
    p.add_argument("--llc-n", "--llc_n", dest="llc_n", type=Optional[int], default=None, help="n, the samples L_n averages over (default: the training split's characters)")
    p.add_argument("--llc-localization", "--llc_localization", dest="llc_localization", type=float, default=100.0, help="γ, the pull towards the trained weights")
    p.add_argument("--llc-chains", "--llc_chains", dest="llc_chains", type=int, default=4)
    p.add_argument("--llc-steps", "--llc_steps", dest="llc_steps", type=int, default=300, help="SGLD steps per chain, burn-in included")
    p.add_argument("--llc-burn-in", "--llc_burn_in", dest="llc_burn_in", type=int, default=100, help="steps dropped at the start of each chain")
    p.add_argument("--out", type=Optional[str], default=None, help="where the report and figures go (default: RUN_DIR/landscape, -2, ...; never overwritten)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = p.parse_args(argv)
    return landscape(args)


# -------------------------------------------------------------------------------------------- sample
def cmd_sample(argv: list[str]) -> int:
    from zoo.generate import STRATEGIES, Decoding, default_prompt, generate
    from zoo.runs import load_run

    p = _parser("zoo sample", "Continue a prompt with a trained run: sampled, greedy or by beam search.")
    p.add_argument("run_dir", type=str)
    p.add_argument("--prompt", type=str, default=None, help="default: a newline, or the vocabulary's first character if it has none")
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--strategy", type=str, default="sample", help=f"one of {', '.join(STRATEGIES)} (default sample)")
    p.add_argument("--beam", type=Optional[int], default=None, help="beam width of --strategy beam (default 4)")
    p.add_argument("--temperature", type=Optional[float], default=None, help="sampling only; default 1")
    p.add_argument("--top-k", "--top_k", dest="top_k", type=Optional[int], default=None, help="sampling only: keep the k most likely")
    p.add_argument("--top-p", "--top_p", dest="top_p", type=Optional[float], default=None,
                   help="sampling only: keep the smallest set whose probability reaches p")
    p.add_argument("--min-p", "--min_p", dest="min_p", type=Optional[float], default=None,
                   help="sampling only: keep characters at least min-p times as likely as the most likely")
    p.add_argument("--repetition-penalty", "--repetition_penalty", dest="repetition_penalty", type=Optional[float], default=None,
                   help="CTRL's penalty θ on characters already in the text (> 1 discourages them; any strategy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mix", type=Optional[str], default=None, metavar="RUN_DIR",
                   help="sample from the mixture λ·RUN + (1-λ)·this run (same vocabulary; neither stateful)")
    p.add_argument("--weight", type=Optional[str], default=None,
                   help="with --mix: λ in [0, 1], or auto (fitted on the run's val split, the default)")
    args = p.parse_args(argv)
    decoding = Decoding(args.strategy, args.temperature, args.top_k, args.top_p, args.min_p, args.repetition_penalty, args.beam)
    weight = _mix_weight(args)
    if weight == "by-context":
        raise ZooError("--weight by-context is for zoo eval; sampling takes one λ (a number, or auto)")
    run = load_run(args.run_dir)
    model, block = run.model, run.config.data.block_size
    if args.mix is not None:
        other = load_run(args.mix)
        model = _sampling_mixture(run, other, weight)
        # windows every trained part accepts (a count-based part takes any length)
        block = min([r.config.data.block_size for r in (run, other) if getattr(r.model, "trainable", True)] or [block])
    prompt = default_prompt(run.tokenizer) if args.prompt is None else args.prompt
    characters = generate(model, run.tokenizer, prompt, args.tokens, decoding, args.seed, block_size=block)  # checks the prompt first
    # Stream: each character is printed as it is chosen, so a long sample shows progress and Ctrl-C keeps
    # what was already generated (beam search knows its text only at the end).
    sys.stdout.write(prompt)
    written = 0
    try:
        for ch in characters:
            sys.stdout.write(ch)
            sys.stdout.flush()
            written += 1
    except KeyboardInterrupt:
        print(flush=True)  # end the partial line before the message
        print(f"zoo sample: interrupted after {written} of {args.tokens} characters", file=sys.stderr)
        return 130
    print()
    return 0


# -------------------------------------------------------------------------------------------- export
def cmd_export(argv: list[str]) -> int:
    from zoo.export import FORMATS, export_run

    p = _parser("zoo export", "Export a trained run for other tools: --format hf writes a gpt run as a Hugging Face Llama model.")
    p.add_argument("run_dir", type=str)
    p.add_argument("out", type=str, help="a new directory (never overwritten)")
    p.add_argument("--format", type=str, default="hf", help=f"one of {', '.join(FORMATS)} (default hf)")
    args = p.parse_args(argv)
    out = export_run(args.run_dir, args.out, args.format)
    print(f"exported {args.run_dir} to {out}: AutoModelForCausalLM.from_pretrained({str(out)!r}) and AutoTokenizer.from_pretrained({str(out)!r}) load it")
    return 0


# ---------------------------------------------------------------------------------------- repetition
def cmd_repetition(argv: list[str]) -> int:
    from zoo.repetition import MAX_N, format_report, report

    p = _parser("zoo repetition", "How repetitive a text is: distinct-n, repeated n-grams, the longest repeated substring, "
                "and its bpc under a reference run.")
    p.add_argument("text", type=Optional[str], default=None, nargs="?", help="a UTF-8 text file, or - for standard input")
    p.add_argument("--corpus", type=Optional[str], default=None, help="report on a corpus instead of a file (e.g. tinyshakespeare)")
    p.add_argument("--split", type=Optional[str], default=None, help="with --corpus: train, val or test (default: the whole text)")
    p.add_argument("--reference", type=Optional[str], default=None, metavar="RUN_DIR", help="also score the text with this run")
    p.add_argument("--max-n", "--max_n", dest="max_n", type=int, default=MAX_N)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    name, text = _report_text(args)
    reference = None
    if args.reference is not None:
        from zoo.runs import load_run

        reference = load_run(args.reference)
    result = report(text, args.max_n, reference)
    print(json.dumps({"text": name, **result}) if args.json else format_report(result, name))
    return 0


def _report_text(args) -> tuple[str, str]:
    """(a name, the text) of zoo repetition: a file, standard input, or a corpus or one of its splits."""
    if (args.text is None) == (args.corpus is None):
        raise ZooError("give one text: a file (- for standard input) or --corpus NAME")
    if args.split is not None and args.corpus is None:
        raise ZooError("--split chooses a part of --corpus; give --corpus NAME too")
    if args.corpus is not None:
        from zoo.data import load_corpus, split_bounds

        bounds = split_bounds(0)
        if args.split is not None and args.split not in bounds:
            raise ZooError(f"--split must be one of {', '.join(bounds)} (got {args.split!r})")
        text = load_corpus(args.corpus).text
        if args.split is None:
            return args.corpus, text
        lo, hi = split_bounds(len(text))[args.split]  # a character is a token: the splits every run sees
        return f"{args.corpus} ({args.split})", text[lo:hi]
    if args.text == "-":
        return "standard input", sys.stdin.read()
    path = Path(args.text)
    if not path.is_file():
        raise ZooError(f"no such file: {path}")
    try:
        return str(path), path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ZooError(f"{path} is not UTF-8 text") from None


def _mix_weight(args) -> str | float:
    """--weight of eval and sample: only with --mix; auto, by-context or λ in [0, 1] (default auto)."""
    from zoo.mixture import parse_weight

    if args.weight is not None and args.mix is None:
        raise ZooError("--weight is the mixing weight of --mix; give --mix RUN_DIR too")
    try:
        return parse_weight(args.weight or "auto")
    except ValueError as e:
        raise ZooError(str(e)) from None


def _sampling_mixture(run, other, weight):
    """The two runs as one model to sample from, with λ given or fitted on the run's val split."""
    from zoo.mixture import Mixture, check_pair, fit_runs

    try:
        check_pair(run, other)
    except ValueError as e:
        raise ZooError(str(e)) from None
    for r in (run, other):
        if getattr(r.model, "stateful", False):
            raise ZooError(f"{r.dir} is a stateful {r.config.rung!r} run; sampling from a mixture takes windowed and count-based runs")
    if weight == "auto":
        val = _corpus_splits(run, None)[1]["val"]
        weight = fit_runs(run, other, val).weight
        print(f"zoo sample: λ = {weight:.3f} on {run.config.rung}, fitted on val", file=sys.stderr)
    return Mixture(run.model, other.model, weight)


# -------------------------------------------------------------------------------------------- ladder
def cmd_ladder(argv: list[str]) -> int:
    from zoo.ladder import run_ladder

    argv = _data_shortcut(argv)
    p = _parser("zoo ladder", "Train every registered rung in ladder order and write a leaderboard.")
    p.add_argument("--preset", type=str, default=DEFAULT_PRESET)
    p.add_argument("--data.corpus", type=Optional[str], default=None, help="corpus for every rung (default: each preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Optional[str], default=None, help="default runs/ladder-PRESET-CORPUS[-N]")
    p.add_argument("--resume", action="store_true", help="continue the ladder in --out: finished rungs are kept")
    p.add_argument("--rungs", type=Optional[str], default=None, help="comma-separated subset, e.g. bigram,gpt")
    p.add_argument("--quiet", action="store_true", help="only each rung's result line and the leaderboard")
    p.add_class_arguments(TrainerConfig, "trainer")  # as zoo train: --trainer.threads 1, --trainer.logger tensorboard, ...
    args = p.parse_args(argv)
    corpus = args.data.corpus if args.data else None
    rungs = args.rungs.split(",") if args.rungs else registry.names()
    if args.resume and not args.out:
        raise ZooError("--resume needs --out DIR (the ladder directory to continue)")
    trainer = _trainer_overrides(argv, args)
    out = Path(args.out) if args.out else _default_out(f"ladder-{args.preset}-{Path(corpus or DEFAULT_CORPUS).stem}")
    _use_free_cores(args.trainer.threads)  # decided once, before the first rung: later ones would see this one's load
    board = run_ladder(rungs, args.preset, out, corpus=corpus, seed=args.seed, resume=args.resume,
                       trainer=trainer, quiet=args.quiet)
    print(board)
    return 0


def _trainer_overrides(argv: list[str], args) -> dict:
    """The --trainer.* options argv sets, parsed (``--trainer.threads 1`` or ``--trainer.threads=1``); every other
    trainer setting stays each preset's, so the parser's defaults for the unset ones are dropped."""
    given = {a[len("--trainer."):].split("=", 1)[0] for a in argv if a.startswith("--trainer.")}
    return {k: v for k, v in vars(args.trainer).items() if k in given}


# --------------------------------------------------------------------------------------------- sweep
def cmd_sweep(argv: list[str]) -> int:
    from zoo.sweep import run_sweep, parse_grid

    argv = _data_shortcut(argv)
    p = _parser("zoo sweep", "Train one rung at every point of a grid of settings; one run directory per point, one summary table.")
    p.add_argument("rung", type=str)
    p.add_argument("--grid", type=str, nargs="+", default=[], help="SECTION.NAME=V1,V2,... (e.g. model.n_layer=1,2,4 optim.lr=1e-3,3e-3)")
    p.add_argument("--preset", type=str, default=DEFAULT_PRESET)
    p.add_argument("--data.corpus", type=Optional[str], default=None, help="the corpus of every point (default: the preset's)")
    p.add_argument("--seeds", type=str, default="0", help="comma-separated, e.g. 0,1,2")
    p.add_argument("--out", type=Optional[str], default=None, help="default runs/sweep-RUNG[-N]")
    p.add_argument("--jobs", type=int, default=1, help="points trained at once, each in its own process with one thread")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: finished points are kept")
    p.add_class_arguments(TrainerConfig, "trainer")  # as zoo train: --trainer.max_steps 500, ...
    args = p.parse_args(argv)
    registry.get(args.rung)
    grid = parse_grid(list(args.grid or []), args.rung)
    seeds = _seeds(args.seeds)
    if not seeds:
        raise ZooError("--seeds needs at least one seed")
    if args.resume and not args.out:
        raise ZooError("--resume needs --out DIR (the sweep directory to continue)")
    out = Path(args.out) if args.out else _default_out(f"sweep-{args.rung}")
    corpus = args.data.corpus if args.data else None
    if args.jobs == 1:  # more jobs: each process keeps one thread
        _use_free_cores(args.trainer.threads)
    rows = run_sweep(args.rung, grid, out, preset=args.preset, corpus=corpus, seeds=seeds, jobs=args.jobs,
                     trainer=_trainer_overrides(argv, args), resume=args.resume)
    print((out / "summary.md").read_text(encoding="utf-8") + f"\n({len(rows)} point(s); runs and summary.json in {out})")
    return 0


# ---------------------------------------------------------------------------------- chapter and book
def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ZooError(f"--seeds takes comma-separated integers, e.g. 0,1,2 (got {text!r})") from None


DRAFT_HELP = "write results from a working tree with uncommitted changes; the site marks the chapter as a draft"
JOBS_HELP = "runs to train at once, each in its own process (default 0: one per usable CPU core)"


def _jobs(n: int) -> int:
    if n < 0:
        raise ZooError(f"--jobs must be >= 0 (0 = one per core), got {n}")
    return n or book.usable_cores()


def cmd_chapter(argv: list[str]) -> int:
    """``zoo chapter list | run NN | figures NN``."""
    p = _parser("zoo chapter", "Run a chapter's experiment (results.json + figures), or list chapters.")
    p.add_argument("action", choices=["list", "run", "figures"], help="list | run NN | figures NN")
    p.add_argument("chapter", type=Optional[str], default=None, nargs="?", help="number (00) or slug (00-setup)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, written to a temporary folder (or --out)")
    p.add_argument("--out", type=Optional[str], default=None, help="write results.json and figures here instead of the chapter")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    p.add_argument("--draft", action="store_true", help=DRAFT_HELP)
    p.add_argument("--data", type=Optional[str], default=None, help="corpus (default: the experiment's, tinyshakespeare)")
    p.add_argument("--seeds", type=Optional[str], default=None, help="override every run's seeds, e.g. 0 or 0,1")
    p.add_argument("--jobs", type=int, default=0, help=JOBS_HELP)
    args = p.parse_args(argv)
    if args.action == "list":
        everything = book.load_book()
        for c in book.chapters():
            res = everything.get(c.slug)
            status = "pending (no experiment)" if not (c.path / "experiment.py").is_file() else (
                f"results: {res['mode']}, {duration(res['elapsed_s'])}" if res else "not yet run")
            older = sorted({s.owner for s in book.stale_runs(everything, c.slug)})
            print(f"{c.slug:<20} {c.title[:50]:<50} {status}" + (f"; made from older runs of {', '.join(older)}" if older else ""))
        return 0
    if not args.chapter:
        raise ZooError(f"zoo chapter {args.action} needs a chapter number, e.g. `zoo chapter {args.action} 00`")
    chapter = book.find_chapter(args.chapter)
    if args.action == "figures":
        source = Path(args.out) if args.out else chapter.path
        results_path = source / book.RESULTS
        if not results_path.is_file():
            raise ZooError(f"no {results_path}; run `zoo chapter run {chapter.number}` first")
        results = json.loads(results_path.read_text(encoding="utf-8"))
        for path in book.render_chapter_figures(chapter, results, source / book.FIGURES):
            print(path)
        return 0
    dest = book.run_chapter(chapter, smoke=args.smoke, out=Path(args.out) if args.out else None, force=args.force,
                       corpus=args.data, seeds=_seeds(args.seeds), jobs=_jobs(args.jobs), draft=args.draft)
    print(f"wrote {dest / book.RESULTS}")
    return 0


def cmd_book(argv: list[str]) -> int:
    """``zoo book``: run every chapter, then redraw the home page's plot."""
    p = _parser("zoo book", "Regenerate the book: run every chapter's experiment, then redraw the home page's plot.")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, everything written under a temporary folder (or --out)")
    p.add_argument("--out", type=Optional[str], default=None, help="write each chapter to OUT/SLUG instead of chapters/")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    p.add_argument("--chapters", type=Optional[str], default=None, help="comma-separated subset, e.g. 00,01")
    p.add_argument("--figures-only", action="store_true", help="train nothing: redraw every figure from results.json")
    p.add_argument("--draft", action="store_true", help=DRAFT_HELP)
    p.add_argument("--data", type=Optional[str], default=None, help="corpus for every chapter (default: each experiment's)")
    p.add_argument("--jobs", type=int, default=0, help=JOBS_HELP)
    args = p.parse_args(argv)
    jobs = _jobs(args.jobs)
    root = book.book_root()
    selected = [book.find_chapter(s) for s in args.chapters.split(",")] if args.chapters else book.chapters(root)
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="zoo-book-smoke-")) if args.smoke else None)
    start, skipped, plans = time.perf_counter(), [], []
    for chapter in selected:
        if not (chapter.path / "experiment.py").is_file():
            skipped.append(f"{chapter.slug} (no experiment.py)")
            continue
        if args.figures_only:
            results = chapter.results()
            if results:
                book.render_chapter_figures(chapter, results, chapter.path / book.FIGURES)
            else:
                skipped.append(f"{chapter.slug} (no results.json)")
            continue
        missing = book.missing_rungs(chapter)
        if missing:
            print(f"chapter {chapter.slug}: skipped, rung(s) not registered: {', '.join(missing)}", flush=True)
            skipped.append(f"{chapter.slug} (needs {', '.join(missing)})")
            continue
        plans.append(book.plan_chapter(chapter, smoke=args.smoke, out=(out / chapter.slug) if out else None,
                                  force=args.force, corpus=args.data, root=root, draft=args.draft))
    if plans:
        # every chapter's runs in one pool, so that no core idles at a chapter's end
        print(f"book: {len(plans)} chapter(s), {sum(len(p.tasks) for p in plans)} run(s)", flush=True)
        trained = book.execute([t for p in plans for t in p.tasks], jobs)
        wall = time.perf_counter() - start
        for plan in plans:
            book.assemble_chapter(plan, trained, root, session_s=wall)
        if out is None and not args.smoke and not args.chapters:  # a subset's wall time is not the book's: the last full record stays
            record = {"command": "zoo book", "jobs": jobs,
                      "threads_per_job": max(1, book.usable_cores() // jobs) if jobs > 1 else None,
                      "chapters": [p.chapter.slug for p in plans], "wall_s": round(time.perf_counter() - start, 3),
                      "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (root / "chapters" / book.BOOK_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if out is None:
        everything = book.load_book(root)
        figure = book.render_home_figures(everything, root / book.LADDER_FIGURE.parent)
        stale = {s.chapter for slug in everything for s in book.stale_runs(everything, slug)}
        if stale and not args.figures_only:
            print(f"book: made from older runs than the chapters they share them with (regenerate them next): {', '.join(sorted(stale))}")
    else:
        everything = {c.slug: (json.loads((out / c.slug / book.RESULTS).read_text()) if (out / c.slug / book.RESULTS).is_file() else None)
                      for c in book.chapters(root)}
        figure = book.render_home_figures(everything, out)
    verb = "redrew the figures of" if args.figures_only else "ran"
    print(f"book: {verb} {len(selected) - len(skipped)} chapter(s) in {duration(time.perf_counter() - start)}"
          + (f"; home plot {figure}" if figure else "") + (f"; output in {out}" if out else ""))
    if skipped:
        print("skipped: " + "; ".join(skipped))
    return 0


HANDLERS = {"list": cmd_list, "check": cmd_check, "train": cmd_train, "eval": cmd_eval, "lens": cmd_lens, "embed": cmd_embed, "landscape": cmd_landscape, "sample": cmd_sample, "repetition": cmd_repetition, "export": cmd_export,
            "ladder": cmd_ladder, "sweep": cmd_sweep,
            "chapter": cmd_chapter, "book": cmd_book}


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
    quiet_libraries()
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
    except BrokenPipeError:  # the reader went away (``zoo embed RUN | head``): stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so Python's flush at exit does not fail again
        return 0
