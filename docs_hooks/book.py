"""mkdocs hooks that turn chapters/ and results.json into site pages (configured in mkdocs.yml ``hooks:``).

* on_config: snippets read from the repository root and fail on a missing file or section; every
  ``chapters/NN-slug/`` is appended to the nav section "Chapters".
* on_files: each chapter's ``chapter.md`` becomes ``chapters/NN-slug/index.md`` in the site, with its
  figures and results.json beside it; ``reference/models.md`` is generated from ``zoo/models/*.py``.
* on_page_markdown: placeholders (``[[bigram.val.bpc|.3f]]``, see ``zoo.book.placeholders``) are filled from
  results.json; one that does not resolve aborts the build. A chapter whose results were written from
  uncommitted code gets a "Draft" warning under its title, and one that quotes an older training of a run it
  shares with another chapter than that chapter now shows gets a "Made from older runs" warning.
* on_page_content: TeX from ``pymdownx.arithmatex`` (generic mode) becomes MathML at build time
  (latex2mathml), which browsers render natively: no script, no font and no CDN.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # a checkout that was not pip-installed still builds
    sys.path.insert(0, str(ROOT))

from zoo.book import consistency, layout, placeholders  # noqa: E402  (torch-free: the build never loads a model)
from zoo.errors import ZooError  # noqa: E402

_state: dict = {}
CHAPTER_ASSETS = (".png", ".svg", ".json", ".txt")


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config):
    root = _root(config)
    _state["root"] = root
    try:
        _state["chapters"] = layout.site_chapters(root)
    except ZooError as e:
        raise PluginError(str(e)) from None
    _state.pop("book", None)
    snippets = config.mdx_configs.setdefault("pymdownx.snippets", {})
    # snippets resolve against zoo's checkout, a book of your own ($ZOO_BOOK_ROOT), and the source folders
    # of installed plug-in rungs, so a chapter can show a plug-in's code by its own markers
    bases = [root, *{c.path.parent.parent for c in _state["chapters"]}, *layout.plugin_source_roots()]
    snippets["base_path"] = list(dict.fromkeys(str(b) for b in bases))
    snippets["check_paths"] = True  # a missing file or section marker is an error, not an empty block
    for entry in config.nav or []:
        if isinstance(entry, dict) and "Chapters" in entry:
            listed = entry["Chapters"] or []
            entry["Chapters"] = list(listed) + [f"chapters/{c.slug}/index.md" for c in _state["chapters"]]
    return config


def on_files(files, config):
    root = _state["root"]
    for chapter in _state["chapters"]:
        files.append(File.generated(config, f"chapters/{chapter.slug}/index.md", abs_src_path=str(chapter.path / "chapter.md")))
        for path in sorted(chapter.path.rglob("*")):
            rel = path.relative_to(chapter.path)
            if path.is_file() and path.suffix in CHAPTER_ASSETS and rel.parts[0] != "runs":
                files.append(File.generated(config, f"chapters/{chapter.slug}/{rel.as_posix()}", abs_src_path=str(path)))
    files.append(File.generated(config, "reference/models.md", content=_models_page(root)))
    return files


def _models_page(root: Path) -> str:
    """One section per rung module, in ladder order (read from the @register lines, nothing imported)."""
    modules = []
    for path in sorted((root / "zoo" / "models").glob("*.py")):
        if path.name.startswith("_"):
            continue
        m = re.search(r'@register\(\s*"[^"]+"\s*,\s*chapter="([^"]+)"', path.read_text(encoding="utf-8"))
        modules.append((m.group(1) if m else "99", path.stem))
    parts = ["# Models\n", "Every rung in `zoo/models/`, in ladder order, documented from its docstrings.\n"]
    for _, stem in sorted(modules):
        parts.append(f"## `zoo.models.{stem}`\n\n::: zoo.models.{stem}\n    options:\n      show_root_heading: false\n      members_order: source\n")
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    src = page.file.src_uri
    here = src.split("/")[1] if src.startswith("chapters/") and src.count("/") >= 2 else None
    try:
        if "book" not in _state:  # every results.json, read once per build (on_config starts a new build)
            _state["book"] = layout.load_book(found=_state["chapters"])
        book = _state["book"]
        markdown = SECTION_MARKER.sub(r";\1", markdown)
        text = _verbatim_fences(markdown, lambda part: placeholders.fill(part, book, here, page=src))
        return _after_title(text, placeholders.draft_notice(book.get(here)) + consistency.stale_notice(book, here)) if here else text
    except ZooError as e:
        raise PluginError(str(e)) from None


# A fence whose opening line ends in the word "verbatim" shows its content as written: e.g. a chapter.md
# in a guide, whose placeholders and snippet lines are the syntax being taught, not things to fill in.
VERBATIM = re.compile(r"^(?P<open>(?P<fence>`{3,}|~{3,})[^\n]*?)[ \t]+verbatim[ \t]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
# pymdownx.snippets drops every line of a page holding a section marker ("# --8<-- [start:name]"): in a page
# (not a file it includes) a marker is always an example of the syntax, so it is escaped to be shown as written.
SECTION_MARKER = re.compile(r"(?<!;)(-+8<-+[ \t]+\[[ \t]*(?:start|end)[ \t]*:)", re.I)
SNIPPET_LINE = re.compile(r"^([ \t]*)(-{1,}8<-{1,})", re.M)


def _verbatim_fences(markdown: str, fill) -> str:
    """``fill`` the text outside verbatim fences; inside them drop the "verbatim" flag, leave placeholders
    alone and escape snippet lines (pymdownx.snippets turns ";--8<--" back into "--8<--")."""
    out, pos = [], 0
    for m in VERBATIM.finditer(markdown):
        out.append(fill(markdown[pos:m.start()]))
        body = SNIPPET_LINE.sub(r"\1;\2", m.group("body"))
        out.append(f"{m.group('open')}\n{body}{m.group('fence')}")
        pos = m.end()
    out.append(fill(markdown[pos:]))
    return "".join(out)


def _after_title(markdown: str, notice: str) -> str:
    """Insert ``notice`` right after the page's "# Title" line (or at the top when there is none)."""
    if not notice:
        return markdown
    head, sep, rest = markdown.partition("\n")
    return f"{head}\n\n{notice}{rest}" if head.startswith("# ") else notice + markdown


MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
UNKNOWN_COMMAND = re.compile(r">\\[A-Za-z]+<")


def _mathml(m, page: str) -> str:
    from latex2mathml.converter import convert

    tag, tex = m.group(1), html.unescape(m.group(2)).strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$"), ("$", "$")):
        if tex.startswith(left) and tex.endswith(right):
            tex = tex[len(left):-len(right)]
            break
    display = "block" if tag == "div" else "inline"
    try:
        out = convert(tex, display=display)
    except Exception as e:  # latex2mathml raises its own exception types
        raise PluginError(f"{page}: cannot render formula {tex!r}: {e}") from None
    bad = UNKNOWN_COMMAND.search(out)
    if bad:
        raise PluginError(f"{page}: formula {tex!r} uses {bad.group(0)[1:-1]}, which the MathML renderer does not know")
    return f'<div class="math-display">{out}</div>' if display == "block" else out


# A snippet marker line ("# --8<-- [start:name]") in source that mkdocstrings shows in the API reference:
# scaffolding for the chapters' includes, not code, so it is dropped from the rendered listing.
MARKER_LINE = re.compile(r'[ \t]*<span class="c1"># --8&lt;-- \[(?:start|end):[\w.-]+\]</span>\n')


def on_page_content(content, page, config, files):
    if page.file.src_uri.startswith("reference/"):  # a guide that teaches the markers keeps them
        content = MARKER_LINE.sub("", content)
    return MATH.sub(lambda m: _mathml(m, page.file.src_uri), content)


def on_serve(server, config, builder):
    root = _state.get("root") or _root(config)
    for folder in ("chapters", "zoo"):
        server.watch(str(root / folder))
    return server
