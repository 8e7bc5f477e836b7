"""The book: chapters whose experiments train rungs through the public API, and the numbers the site quotes.

One module per job:

* :mod:`zoo.book.layout` — where chapters live and what an experiment declares (:class:`RunSpec`);
* :mod:`zoo.book.runner` — plan a chapter's (run, seed) tasks, train them (in parallel processes),
  write results.json with every run's provenance;
* :mod:`zoo.book.figures` — the chapters' validation curves and the home page's plot;
* :mod:`zoo.book.consistency` — whether a chapter's copy of a shared run is the training its owner now shows;
* :mod:`zoo.book.placeholders` — ``[[run.val.bpc]]`` in the prose, filled from results.json by the site
  build (the only part the build imports; no torch).

A chapter's ``experiment.py`` needs only this package::

    from zoo.book import RunSpec
    RUNS = [RunSpec("bigram", preset="book", seeds=(0, 1, 2))]

and optionally ``CORPUS`` (default ``"tinyshakespeare"``), ``compute(corpus) -> dict`` (numbers the
chapter measures without training, e.g. counted baselines), ``analyse(run_dirs, corpus) -> dict``
(numbers measured on the trained runs: ``run_dirs`` maps each RunSpec's key to its run directories,
one per seed, which :func:`zoo.load_run` opens) and ``figures(results, figdir)`` (extra plots).
``zoo chapter run NN`` and ``zoo book`` (in :mod:`zoo.cli`) drive the runner.
"""

from zoo.book.consistency import StaleRun, stale_notice, stale_runs
from zoo.book.figures import (plot_curves, render_chapter_figures, render_home_figures, render_ladder_figure,
                              render_ladder_scores)
from zoo.book.layout import (BOOK_CORPUS, BOOK_RECORD, FIGURES, LADDER_FIGURE, LADDER_SCORES, RESULTS, Chapter, RunSpec, book_record, book_root,
                             chapters, find_chapter, load_book)
from zoo.book.placeholders import PLACEHOLDER, PlaceholderError, draft_notice, fill, format_value, leaderboard_rows, lookup, namespace, table
from zoo.book.runner import assemble_chapter, execute, missing_rungs, plan_chapter, require_clean_tree, run_chapter
from zoo.parallel import usable_cores
from zoo.summary import duration, stats, summarise


def __getattr__(name):
    if name == "Run":  # the name RunSpec had before zoo.runs.Run (a trained run) made it ambiguous
        import warnings

        warnings.warn("zoo.book.Run is now zoo.book.RunSpec", DeprecationWarning, stacklevel=2)
        return RunSpec
    raise AttributeError(f"module 'zoo.book' has no attribute {name!r}")


__all__ = ["RunSpec", "Chapter", "chapters", "find_chapter", "book_root", "book_record", "load_book", "BOOK_CORPUS", "BOOK_RECORD", "BOOK_RECORD",
           "RESULTS", "FIGURES", "LADDER_FIGURE", "LADDER_SCORES", "plan_chapter", "execute", "assemble_chapter", "run_chapter",
           "missing_rungs", "usable_cores", "require_clean_tree", "plot_curves", "render_chapter_figures", "render_ladder_figure", "render_ladder_scores", "render_home_figures", "fill",
           "lookup", "format_value", "draft_notice", "namespace", "table", "leaderboard_rows", "PLACEHOLDER", "PlaceholderError",
           "stats", "summarise", "duration", "StaleRun", "stale_runs", "stale_notice"]
