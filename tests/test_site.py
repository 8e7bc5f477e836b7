"""The site: `mkdocs build --strict` passes offline, fails on what must not pass, and renders in a browser.

The browser test serves the built site on 127.0.0.1, opens it in headless Chromium (Debian's
package) driven over the DevTools protocol through a pipe (no driver, no websocket library), and
checks that the leaderboard table, the figures and the formulas render and that no request leaves
localhost. Screenshots of the home page and chapter 00 are kept in $ZOO_ARTIFACTS (default: a
``zoo-artifacts`` folder in the temporary directory).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "docs_hooks" / "book.py"
sys.path.insert(0, str(ROOT))
from zoo import book  # noqa: E402
from zoo.summary import size_cell  # noqa: E402

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=config.parent)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    result = mkdocs_build(ROOT / "mkdocs.yml", out)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert not re.search(r"^(WARNING|ERROR)\b", log, re.M), log[-5000:]
    return out


# ------------------------------------------------------------------------------------------ the build
def test_strict_build_has_every_page(site):
    for page in ("index.html", "chapters/00-setup/index.html", "guides/cli/index.html", "guides/reproduce/index.html",
                 "guides/add-a-rung/index.html", "reference/index.html", "reference/models/index.html",
                 "chapters/00-setup/figures/baselines.png", "assets/figures/ladder-val-curves.png"):
        assert (site / page).is_file(), page
    for chapter in book.chapters(ROOT):
        assert (site / "chapters" / chapter.slug / "index.html").is_file(), chapter.slug


def test_no_placeholder_or_snippet_marker_survives(site):
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        rel = page.relative_to(site).as_posix()
        if rel.startswith(("guides/add-a-rung/", "reference/book/")):  # they show the syntax on purpose
            continue
        assert not book.PLACEHOLDER.search(text.replace("&quot;", '"')), page
        assert "--8&lt;--" not in text and "--8<--" not in text, page


def test_a_chapter_written_from_uncommitted_code_says_it_is_a_draft(site):
    for chapter in book.chapters(ROOT):
        html = (site / "chapters" / chapter.slug / "index.html").read_text(encoding="utf-8")
        draft = bool(book.draft_notice(chapter.results()))
        assert ('class="admonition warning"' in html and ">Draft<" in html) == draft, chapter.slug


def test_a_chapter_made_from_older_shared_runs_says_so(site):
    everything = book.load_book(ROOT)
    for chapter in book.chapters(ROOT):
        html = (site / "chapters" / chapter.slug / "index.html").read_text(encoding="utf-8")
        stale = book.stale_runs(everything, chapter.slug)
        assert (">Made from older runs<" in html) == bool(stale), chapter.slug
        for s in stale:
            assert f"{s.owner}/{s.run}" in html, (chapter.slug, s.run)


def test_api_reference_is_generated_from_docstrings(site):
    runs = (site / "reference" / "runs" / "index.html").read_text(encoding="utf-8")
    assert "zoo.runs.train" in runs and "metrics.json" in runs  # the docstring of train, rendered
    models = (site / "reference" / "models" / "index.html").read_text(encoding="utf-8")
    assert "zoo.models.bigram" in models and "Elhage" in models


def test_formulas_become_mathml_at_build_time(site):
    page = (site / "chapters" / "00-setup" / "index.html").read_text(encoding="utf-8")
    assert page.count("<math") >= 8
    assert 'class="arithmatex"' not in page  # every formula was converted; no script is needed


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_home_table_matches_results_json_exactly(site):
    parser = Tables()
    parser.feed((site / "index.html").read_text(encoding="utf-8"))
    board = next(t for t in parser.tables if t and "val bpc" in t[0] and "params" in t[0])
    header, rows = board[0], [r for r in board[1:] if r[1] != "not yet run"]
    expected = book.leaderboard_rows(book.load_book(ROOT))
    assert len(rows) == len(expected) and expected, (rows, expected)
    col = {name: header.index(name) for name in ("rung", "params", "training time", "tokens/s", "val bpc", "test bpc", "seeds")}
    for row, want in zip(rows, expected):
        assert row[col["rung"]] == want["name"] + (" †" if want["beyond"] else "")  # † past the ladder's budget
        # parameters, what a counting rung stores, or a mixture's parts
        assert row[col["params"]] == (want["size"] if "size" in want else size_cell(want))
        assert float(row[col["training time"]].removesuffix(" s")) == round(want["wall_s"], 1)
        for split in ("val", "test"):
            cell = [float(x) for x in row[col[f"{split} bpc"]].split("±")]
            assert cell[0] == round(want[f"{split}_bpc"]["mean"], 3)
            assert cell[1:] == ([round(want[f"{split}_bpc"]["std"], 3)] if want["seeds"] > 1 else [])  # one seed: no spread
        assert int(row[col["seeds"]]) == want["seeds"] >= (1 if want["beyond"] else 3)
    pending = [r for r in board[1:] if r[1] == "not yet run"]
    assert len(pending) == sum(1 for res in book.load_book(ROOT).values() if res is None)


# ------------------------------------------------------------------------------- builds that must fail
@pytest.fixture
def mini_book(tmp_path):
    """A one-page site with the real hook and chapter 00's committed results, for builds meant to fail."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n[[00-setup/bigram.val.bpc|.3f]]\n")
    chapter = tmp_path / "chapters" / "00-setup"
    chapter.mkdir(parents=True)
    shutil.copy(ROOT / "chapters" / "00-setup" / "results.json", chapter / "results.json")
    (chapter / "chapter.md").write_text("# Setup\n\nok: [[bigram.val.bpc|.3f±]]\n")
    models = tmp_path / "zoo" / "models"
    models.mkdir(parents=True)
    shutil.copy(ROOT / "zoo" / "models" / "bigram.py", models / "bigram.py")
    (tmp_path / "mkdocs.yml").write_text(f"""site_name: mini
theme: {{name: material, font: false}}
hooks: [{HOOK}]
nav: [index.md, {{Chapters: []}}]
markdown_extensions: [pymdownx.superfences, {{pymdownx.arithmatex: {{generic: true}}}}, pymdownx.snippets]
validation: {{omitted_files: info}}
""")
    return tmp_path


def test_mini_book_builds(mini_book):
    result = mkdocs_build(mini_book / "mkdocs.yml", mini_book / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    page = (mini_book / "site" / "chapters" / "00-setup" / "index.html").read_text()
    mean = book.load_book(ROOT)["00-setup"]["runs"]["bigram"]["summary"]["val"]["bpc"]["mean"]
    assert f"ok: {mean:.3f}\u00a0±\u00a0" in page or f"ok: {mean:.3f}&nbsp;±&nbsp;" in page


@pytest.mark.parametrize("text, message", [
    ("[[bigram.val.bpcc]]", "no 'bpcc' under bigram.val"),
    ("[[01-nope/x.y]]", "no chapter '01-nope'"),
    ("[[bigram.val]]", "names a group"),
    ("[[bigram.params|.3f±]]", "needs a value measured over seeds"),
    ("[[table:nope]]", "unknown table"),
    ('```python\n--8<-- "zoo/models/bigram.py:no_such_section"\n```', "no_such_section"),
    ('```python\n--8<-- "zoo/models/missing.py"\n```', "missing.py"),
    ("$\\foo x$", "\\foo"),
])
def test_build_fails_on_what_does_not_resolve(mini_book, text, message):
    path = mini_book / "chapters" / "00-setup" / "chapter.md"
    path.write_text(path.read_text() + "\n" + text + "\n")
    result = mkdocs_build(mini_book / "mkdocs.yml", mini_book / "site")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]


# ------------------------------------------------------------------------------------------ the browser
def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "chromium-headless-shell", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """Headless Chromium over the DevTools protocol on fds 3 and 4 (--remote-debugging-pipe)."""

    def __init__(self, binary: str, profile: Path):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child_fds():  # runs in the child before exec: the pipe ends become fds 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
             "--mute-audio", f"--user-data-dir={profile}", "--window-size=1280,1000",
             # anything not on loopback goes to a closed port: the page cannot reach the network, and
             # every attempt still shows up as a request below
             "--proxy-server=http://127.0.0.1:9", "about:blank"],
            close_fds=False, preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.events = b"", 0, []
        target = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, timeout: float = 30, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read(max(0.1, end - time.monotonic())))

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")
        time.sleep(0.5)  # late requests (search index, ...) also count
        self.evaluate("0")  # drain pending events into self.events

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> None:
        import base64

        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": 1280, "height": min(int(size["height"]), 6000), "scale": 1}
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True, clip=clip)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self._r)
        os.close(self._w)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        if os.environ.get("ZOO_REQUIRE_BROWSER"):
            pytest.fail("ZOO_REQUIRE_BROWSER is set but no chromium was found")
        pytest.skip("no chromium on PATH: install Debian's package with `apt-get install chromium` (.ci/run does)")
    b = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def artifacts() -> Path:
    path = Path(os.environ.get("ZOO_ARTIFACTS") or Path(tempfile.gettempdir()) / "zoo-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


PAGE_REPORT = """(() => {
  const article = document.querySelector("article") || document.body;
  const box = (el) => { const r = el.getBoundingClientRect(); return {w: r.width, h: r.height}; };
  return {
    title: document.title,
    tables: [...article.querySelectorAll("table")].map(t => ({rows: t.rows.length, header: t.rows[0].innerText})),
    images: [...article.querySelectorAll("img")].map(i => ({src: i.currentSrc, loaded: i.complete && i.naturalWidth > 0, ...box(i)})),
    math: [...article.querySelectorAll("math")].map(m => ({display: getComputedStyle(m).display, ...box(m)})),
    fractions: [...article.querySelectorAll("mfrac")].map(box),
  };
})()"""


def offsite(urls: list[str]) -> list[str]:
    return [u for u in urls if urlparse(u).scheme not in ("data", "blob", "about") and urlparse(u).hostname not in ("127.0.0.1", "localhost")]


def test_home_page_in_a_browser(browser, served):
    browser.open(served + "/")
    report = browser.evaluate(PAGE_REPORT)
    requests = browser.requests()
    browser.screenshot(artifacts() / "home.png")
    assert requests and not offsite(requests), offsite(requests)
    board = [t for t in report["tables"] if "val bpc" in t["header"]]
    assert board and board[0]["rows"] >= 2, report["tables"]
    figures = [i for i in report["images"] if "ladder-val-curves" in i["src"]]
    assert figures and all(i["loaded"] and i["w"] >= 400 for i in figures), report["images"]


def test_chapter_in_a_browser(browser, served):
    browser.open(served + "/chapters/00-setup/")
    report = browser.evaluate(PAGE_REPORT)
    requests = browser.requests()
    browser.screenshot(artifacts() / "chapter-00-setup.png")
    assert requests and not offsite(requests), offsite(requests)
    assert len(report["images"]) >= 2 and all(i["loaded"] and i["w"] >= 400 for i in report["images"]), report["images"]
    # MathML laid out as math by the browser's own engine: math display types, real boxes, and
    # fractions taller than a line of text (numerator stacked over denominator)
    assert len(report["math"]) >= 8
    assert all(m["display"] in ("inline math", "block math", "math") and m["w"] > 0 and m["h"] > 0 for m in report["math"]), report["math"]
    assert report["fractions"] and all(f["h"] > 25 for f in report["fractions"]), report["fractions"]
    assert any("val bpc" in t["header"] for t in report["tables"])
