"""Shared runs across chapters: does a chapter quote the same training of a run as the chapter that owns it?

A run another chapter trains (``RunSpec(shared_with="07-gpt")``) is copied into this chapter's results.json
when this chapter is assembled. Regenerate the owner later (new defaults, a fix) and the copy is left behind:
this chapter's page would then quote one training of ``07-gpt/gpt`` while chapter 07 quotes another. The book
is regenerated chapter by chapter, so that state is normal for a while; it must be visible, not silent.

:func:`stale_runs` compares each shared run's seeds with the owner's (by run directory: the validation and
test scores); :func:`stale_notice` is the warning the site puts under such a chapter's
title, and ``zoo chapter list`` marks it. Plain Python: the site build imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StaleRun:
    """One shared run whose copy in ``chapter`` is not the training its ``owner`` now shows."""

    chapter: str
    run: str  # the run's key, the same in both chapters
    owner: str  # the slug of the chapter that trains it
    here: float | None  # the copy's mean val bpc over its seeds
    there: float | None  # the owner's mean val bpc (None: the owner no longer has that run, or has no results)
    here_commit: str  # the commit the copy's seed-0 run was trained at
    there_commit: str | None


def _scores(seed: dict) -> tuple:
    """What a page quotes of one seed: its scores. A run retrained at another commit that scores exactly the
    same (a counted n-gram, say) leaves every quote true, so only the scores are compared."""
    return tuple((seed.get(split) or {}).get("bpc") for split in ("val", "test"))  # a diverged seed has none


def _where(seed: dict) -> str | None:
    """A seed's run directory from runs/book/ on: results.json written before run_dir was always relative
    named the absolute folder of the machine that made it."""
    run_dir = seed.get("run_dir")
    return run_dir[run_dir.find("runs/book/"):] if run_dir and "runs/book/" in run_dir else run_dir


def _mean_val(per_seed: list[dict]) -> float | None:
    vals = [s["val"]["bpc"] for s in per_seed if s.get("val")]
    return sum(vals) / len(vals) if vals else None


def stale_runs(book: dict[str, dict | None], slug: str) -> list[StaleRun]:
    """The shared runs of chapter ``slug`` whose seeds differ from the owner chapter's seeds in the same run
    directories (or that the owner no longer has); [] when the chapter has no results or agrees."""
    results = book.get(slug)
    if not results:
        return []
    out = []
    for key, run in results.get("runs", {}).items():
        owner = run.get("shared_with")
        if not owner:
            continue
        owned = ((book.get(owner) or {}).get("runs") or {}).get(key)
        theirs = {_where(s): s for s in (owned or {}).get("per_seed", [])}
        mine = run.get("per_seed", [])
        if all(_where(s) in theirs and _scores(s) == _scores(theirs[_where(s)]) for s in mine):
            continue
        first = mine[0] if mine else {}
        match = theirs.get(_where(first)) or next(iter(theirs.values()), {})
        out.append(StaleRun(slug, key, owner, _mean_val(mine), _mean_val(list(theirs.values())) if theirs else None,
                            str(first.get("git_commit", "?")), match.get("git_commit")))
    return out


def _bpc(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def stale_notice(book: dict[str, dict | None], slug: str | None) -> str:
    """A warning for the top of a chapter whose shared runs are older trainings than their owners show
    ("" when there are none). The page's own numbers stay consistent with each other; they name the runs
    they were made from."""
    stale = stale_runs(book, slug) if slug else []
    if not stale:
        return ""
    lines = "\n".join(f"    - `{s.owner}/{s.run}`: val {_bpc(s.here)} bpc here (trained at `{s.here_commit[:8]}`), "
                      f"{_bpc(s.there)} in chapter {s.owner.split('-')[0]}"
                      + (f" (trained at `{s.there_commit[:8]}`)" if s.there_commit else " (not there any more)")
                      for s in stale)
    number = slug.split("-")[0]
    return ('!!! warning "Made from older runs"\n'
            "    This chapter was generated before the chapters it shares runs with were last regenerated. Where it "
            "quotes these runs from its own results.json, it quotes an older training than their own chapters now show:\n\n"
            f"{lines}\n\n"
            "    Its other numbers are from its own runs, as its results.json records them. "
            f"`zoo chapter run {number}` at the current commit brings the chapter up to date.\n\n")
