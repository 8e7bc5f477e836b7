"""Placeholders: how a chapter quotes its results.json, filled in by the site build.

Chapter prose never types a measured number. It writes a placeholder, and the mkdocs hook
(``docs_hooks/book.py``) replaces it with the value from results.json::

    [[bigram.val.bpc]]              mean over seeds, default format (.3f for floats, {:,} for ints)
    [[bigram.val.bpc|.4f]]          any Python format spec
    [[bigram.val.bpc|.3f±]]         "mean ± std" (the spread over seeds)
    [[bigram.val.bpc.std|.4f]]      one statistic: mean, std, min, max, n
    [[bigram.wall_s|dur]]           seconds as "1 min 23 s"
    [[bigram.sample]]               text (seed 0's sample)
    [[uniform.val.bpc]]             a value from the experiment's compute() or analyse()
    [[lens.gpt.layers.1.bpc]]       an element of a list by its index (0, 1, ...)
    [[chapter.elapsed_s|dur]]       the chapter's own fields: corpus, splits, device, elapsed_s, ...
    [[01-ngram/ngram.val.bpc]]      another chapter's results (by slug, or by number: [[01/...]])
    [[table:runs]]                  this chapter's runs as a table
    [[table:leaderboard]]           every chapter's leaderboard runs (the home page's table)
    [[table:timings]]               how long each chapter took to regenerate
    \\[[not.a.placeholder]]          a backslash keeps the brackets literally

A placeholder that does not resolve fails the build, naming the page and the keys that exist.
This module is the only part of the book the site build imports, and it never imports torch.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from zoo.book.layout import BOOK_CORPUS, RESULTS, book_record
from zoo.config import BOOK_PRESET
from zoo.errors import ZooError
from zoo.summary import duration, is_stats, leaderboard_row, size_cell, spread

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
        out += _keys(v, f"{prefix}.{k}" if prefix else str(k)) if isinstance(v, dict) and not is_stats(v) else [f"{prefix}.{k}" if prefix else str(k)]
    return out


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
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):  # a list's element by index
            value = value[int(part)]
            continue
        if not isinstance(value, dict) or part not in value:
            where = ".".join(path.split(".")[:i]) or "(top)"
            options = sorted(value) if isinstance(value, dict) else []
            raise PlaceholderError(f"{slug}: no {part!r} under {where} (there: {', '.join(map(str, options)) or 'nothing'})")
        value = value[part]
    return value


def format_value(value: Any, spec: str | None, key: str = "") -> str:
    spec = (spec or "").strip()
    if is_stats(value):
        if spec.endswith("±"):
            return spread(value, spec[:-1].strip() or ".3f")
        value = value["mean"]
    elif spec.endswith("±"):
        raise PlaceholderError(f"[[{key}|{spec}]]: '±' needs a value measured over seeds")
    if isinstance(value, dict):
        raise PlaceholderError(f"[[{key}]] names a group, not a value (it has: {', '.join(_keys(value))})")
    if value is None:
        raise PlaceholderError(f"[[{key}]] is empty in results.json")
    if isinstance(value, list):  # a list of names reads as one: "a, b and c"
        if not all(isinstance(v, str) for v in value) or spec:
            raise PlaceholderError(f"[[{key}]] is a list; only a list of names can be quoted, and without a format")
        return value[0] if len(value) == 1 else ", ".join(value[:-1]) + " and " + value[-1] if value else "none"
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


# ------------------------------------------------------------------------------------------- tables
def _link(slug: str, page: str) -> str:
    return posixpath.relpath(f"chapters/{slug}/index.md", posixpath.dirname(page) or ".")


def leaderboard_rows(book: dict[str, dict | None]) -> list[dict]:
    """One row per leaderboard run of every chapter that has results; the numbers the table shows.
    Rows off the ladder's shared setting (``beyond_budget``, another corpus or preset, fewer than three
    seeds) come last, with ``beyond`` set; so do the
    rows an experiment's analyse() adds under ``leaderboard_extra`` (a mixture of runs, say: not a run
    itself), each {"name", "size", "wall_s", "val_bpc", "test_bpc", "seeds"} with stats for the bpcs."""
    rows, beyond = [], []
    for slug, res in book.items():
        if not res:
            continue
        corpus = (res.get("corpus") or {}).get("name", BOOK_CORPUS)
        for name, run in res["runs"].items():
            if run.get("leaderboard", True) and run["summary"]["val"] is not None:  # a run whose every seed diverged has no score
                # off the ladder's shared setting: more budget, another corpus or preset, fewer than 3 seeds
                # (a chapter added outside zoo, say): such a row is marked, never ranked as if it were alike
                off = (run.get("beyond_budget") or corpus != BOOK_CORPUS or run.get("preset", BOOK_PRESET) != BOOK_PRESET
                       or len(run.get("per_seed", [])) < 3)
                row = {**leaderboard_row(name, run["rung"], run["summary"], chapter=slug), "beyond": bool(off)}
                (beyond if row["beyond"] else rows).append(row)
        for extra in res.get("values", {}).get("leaderboard_extra", []):
            beyond.append({**extra, "chapter": slug, "beyond": True, "tokens_per_s": None})
    return rows + beyond


def table(kind: str, book: dict[str, dict | None], here: str | None, page: str) -> str:
    if kind == "leaderboard":
        lines = ["| rung | params | training time | tokens/s | val bpc | test bpc | seeds |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        rows = leaderboard_rows(book)
        for row in rows:
            tps = f"{row['tokens_per_s']:,.0f}" if row["tokens_per_s"] else "–"
            mark = " †" if row["beyond"] else ""
            size = row["size"] if "size" in row else size_cell(row)
            lines.append(f"| [`{row['name']}`]({_link(row['chapter'], page)}){mark} | {size} | "
                         f"{row['wall_s']:.1f} s | {tps} | {spread(row['val_bpc'])} | {spread(row['test_bpc'])} | {row['seeds']} |")
        for slug, res in book.items():
            if res is None:
                lines.append(f"| [{slug}]({_link(slug, page)}) | not yet run | | | | | |")
        if any(row["beyond"] for row in rows):
            lines += ["", "† Not at the ladder's shared setting (the book's corpus and preset, three seeds): more "
                          "training steps, runs mixed, another corpus or preset, or fewer seeds; see the linked chapter."]
        return "\n".join(lines)
    if kind == "timings":
        lines = ["| chapter | runs × seeds | training | total (train, score, sample) | device |",
                 "|---|---:|---:|---:|---|"]
        total = 0.0
        for slug, res in book.items():
            if not res:
                lines.append(f"| [{slug}]({_link(slug, page)}) | not yet run | | | |")
                continue
            own = [r for r in res["runs"].values() if not r.get("shared_with")]  # shared runs count where they were trained
            n = sum(len(r["per_seed"]) for r in own)
            train = sum(m["wall_s"] for r in own for m in r["per_seed"])
            total += res["elapsed_s"]
            lines.append(f"| [{res['title']}]({_link(slug, page)}) | {n} | {duration(train)} | {duration(res['elapsed_s'])} | {res['device']} |")
        lines.append(f"| **all chapters, one run at a time** | | | **{duration(total)}** | |")
        record = book_record()
        have = {slug: res for slug, res in book.items() if res}
        # the record describes these results only if that `zoo book` wrote every one of them (none is newer)
        if record and set(record["chapters"]) >= set(have) and all(
                res.get("generated_utc", "") <= record.get("generated_utc", "") for res in have.values()):
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
            if s["val"] is None:  # every seed diverged: nothing to score
                lines.append(f"| `{name}` | `{run['rung']}` | {run['preset']} | | | | diverged | diverged | {len(run['per_seed'])} |")
                continue
            lost = f" ({s['diverged']} diverged)" if s.get("diverged") else ""
            lines.append(f"| `{name}` | `{run['rung']}` | {run['preset']} | {size_cell(s)} | {s['steps']:,} | "
                         f"{s['wall_s']['mean']:.1f} s | {spread(s['val']['bpc'])} | {spread(s['test']['bpc'])} | {len(run['per_seed'])}{lost} |")
        return "\n".join(lines)
    raise PlaceholderError(f"unknown table {kind!r} (tables: leaderboard, timings, runs)")


def draft_notice(results: dict | None) -> str:
    """A warning for the top of a chapter whose results were written from uncommitted code ("" if none)."""
    if not results or not (results.get("draft") or str(results.get("git_commit", "")).endswith("+dirty")):
        return ""
    return ('!!! warning "Draft"\n    The numbers on this page were written from a working tree with uncommitted '
            f'changes (`{results.get("git_commit")}`), so no commit reproduces them exactly. '
            f'`zoo chapter run {results["chapter"].split("-")[0]}` from a clean commit replaces them.\n\n')

