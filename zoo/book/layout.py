"""Where the book lives and what a chapter declares: run specifications, chapters, their results.

A chapter is a folder ``chapters/NN-slug/`` holding ``chapter.md`` (the prose), ``experiment.py`` (the
runs the chapter shows, as a list of :class:`RunSpec`), and — written by ``zoo chapter run NN`` and
committed — ``results.json`` and ``figures/*.png``. Plain Python: the site build imports this module,
so it never imports torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from zoo.config import BOOK_PRESET
from zoo.errors import ZooError

RESULTS = "results.json"
FIGURES = "figures"
BOOK_RECORD = "book.json"  # chapters/book.json: how the last full `zoo book` ran (jobs, wall time)
LADDER_FIGURE = Path("docs") / "assets" / "figures" / "ladder-val-curves.png"
LADDER_SCORES = LADDER_FIGURE.with_name("ladder-scores.png")  # the home page's picture of the final scores
BOOK_CORPUS = "tinyshakespeare"  # the corpus an experiment trains on unless it sets CORPUS
RESERVED = ("chapter",)  # namespace key for a chapter's own fields


@dataclass(frozen=True)
class RunSpec:
    """What a chapter asks to be trained: a rung at a preset, with overrides, over several seeds.

    A specification, not a run: the runner turns each (spec, seed) into a run directory
    (:class:`zoo.runs.Run` loads one back). ``name`` is the key placeholders use
    (``[[NAME.val.bpc]]``); it defaults to the rung's name. ``leaderboard`` puts the run on the home
    page's table (set it False for ablations; ``beyond_budget`` marks a run there that had more
    compute than the ladder's shared budget). ``shared_with`` names an earlier chapter that trains
    the very same runs (same key, rung, preset, overrides and seeds): this chapter reads and, if need
    be, trains them in that chapter's run directories instead of training a second copy.
    """

    rung: str
    preset: str = BOOK_PRESET
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: dict = field(default_factory=dict)  # {"model": {...}, "data": {...}, "optim": {...}, "trainer": {...}}; a data.corpus here beats the chapter's
    name: Optional[str] = None
    label: Optional[str] = None  # legend label in plots (default: name)
    leaderboard: bool = True
    beyond_budget: bool = False  # trained past the ladder's shared budget: marked so on the leaderboard
    shared_with: Optional[str] = None  # an earlier chapter's slug ("07-gpt") whose run directories these are

    @property
    def key(self) -> str:
        return self.name or self.rung


@dataclass(frozen=True)
class Chapter:
    slug: str  # "00-setup"
    path: Path

    @property
    def number(self) -> str:
        return self.slug.split("-", 1)[0]

    @property
    def title(self) -> str:
        md = self.path / "chapter.md"
        if md.is_file():
            for line in md.read_text(encoding="utf-8").splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
        return self.slug

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def results(self) -> dict | None:
        return json.loads(self.results_path.read_text(encoding="utf-8")) if self.results_path.is_file() else None

    def experiment(self):
        """Import the chapter's experiment.py as a module (a fresh import each call)."""
        path = self.path / "experiment.py"
        if not path.is_file():
            raise ZooError(f"chapter {self.slug} has no experiment.py")
        name = f"zoo_chapter_{re.sub(r'[^0-9a-zA-Z_]', '_', self.slug)}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules.pop(name, None)
        runs = getattr(module, "RUNS", None)
        if not isinstance(runs, (list, tuple)) or not all(isinstance(r, RunSpec) for r in runs):
            raise ZooError(f"{path}: RUNS must be a list of zoo.book.RunSpec")
        keys = [r.key for r in runs]
        if len(set(keys)) != len(keys):
            raise ZooError(f"{path}: run names must be unique (got {keys})")
        if any(k in RESERVED or "/" in k or "." in k for k in keys):
            raise ZooError(f"{path}: run names may not be {RESERVED} or contain '/' or '.' (got {keys})")
        for r in runs:
            if r.shared_with is not None and not re.match(r"^\d\d-[a-z0-9-]+$", r.shared_with):
                raise ZooError(f"{path}: shared_with must be a chapter's folder name such as '07-gpt' (got {r.shared_with!r})")
        return module


def book_root() -> Path:
    """The folder holding ``chapters/`` and ``mkdocs.yml``: $ZOO_BOOK_ROOT, the source checkout, or cwd."""
    if os.environ.get("ZOO_BOOK_ROOT"):
        return Path(os.environ["ZOO_BOOK_ROOT"]).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "chapters").is_dir():
        return checkout
    return Path.cwd()


def chapters(root: Path | None = None) -> list[Chapter]:
    """Every ``chapters/NN-slug/`` folder with a chapter.md, in order."""
    base = (root or book_root()) / "chapters"
    if not base.is_dir():
        return []
    found = [Chapter(p.name, p) for p in sorted(base.iterdir()) if p.is_dir() and re.match(r"^\d\d-[a-z0-9-]+$", p.name)]
    return [c for c in found if (c.path / "chapter.md").is_file()]


def find_chapter(spec: str, root: Path | None = None) -> Chapter:
    """A chapter by number ("0", "00") or slug ("00-setup")."""
    all_chapters = chapters(root)
    spec = str(spec).strip()
    for c in all_chapters:
        if spec == c.slug or (spec.isdigit() and int(spec) == int(c.number)):
            return c
    valid = ", ".join(c.slug for c in all_chapters) or "none"
    raise ZooError(f"no chapter {spec!r} (chapters: {valid})")


def book_record(root: Path | None = None) -> dict | None:
    """chapters/book.json, written by the last full ``zoo book``: its jobs and wall time."""
    path = (root or book_root()) / "chapters" / BOOK_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def site_chapters(site_root: Path) -> list[Chapter]:
    """The chapters a site built from ``site_root`` shows: its own, and those of $ZOO_BOOK_ROOT when that is
    another folder (a book of your own chapters, kept outside zoo's checkout), in number order. Two
    chapters with one slug would be one page: refused."""
    found = chapters(site_root)
    extra = os.environ.get("ZOO_BOOK_ROOT")
    if extra and Path(extra).resolve() != site_root.resolve():
        mine = {c.slug: c for c in found}
        for c in chapters(Path(extra).resolve()):
            if c.slug in mine:
                raise ZooError(f"chapter {c.slug} is both in {mine[c.slug].path} and in {c.path} ($ZOO_BOOK_ROOT); rename one")
            found.append(c)
    return sorted(found, key=lambda c: c.slug)


def plugin_source_roots() -> list[Path]:
    """The folders holding the modules that installed plug-ins register rungs from (their ``zoo.rungs`` entry
    points), so that a chapter's snippet ``--8<-- "my_package/model.py:forward"`` can show a plug-in's own
    source. Located without importing anything; a plug-in that cannot be found is left out (``zoo list``
    reports it)."""
    from importlib.metadata import entry_points

    from zoo.registry import ENTRY_POINT_GROUP  # torch-free, as this module must stay

    roots = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        top = ep.module.split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            continue
        origin = Path(spec.origin).resolve()
        root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
        if root not in roots:
            roots.append(root)
    return roots


def load_book(root: Path | None = None, found: list[Chapter] | None = None) -> dict[str, dict | None]:
    """slug -> results dict (None for a chapter not yet run), in chapter order: of the chapters under
    ``root``, or of the chapters ``found``."""
    out = {}
    for c in found if found is not None else chapters(root):
        try:
            out[c.slug] = c.results()
        except json.JSONDecodeError as e:
            raise ZooError(f"{c.results_path} is not valid JSON ({e})") from None
    return out
