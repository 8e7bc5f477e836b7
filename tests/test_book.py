"""The book's machinery: chapters, experiments, results.json, placeholders, tables and figures.

The end-to-end tests run chapter 00 with --smoke (a few steps per run) into temporary folders and
check that the committed chapter is never touched.
"""

from __future__ import annotations

import hashlib
import json
import math
import textwrap
from pathlib import Path

import pytest

from zoo import book, cli
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parent.parent
CH00 = ROOT / "chapters" / "00-setup"


def fake_results(slug="00-setup", runs=None, values=None, title="Setup"):
    """A results dict shaped like run_chapter's, with made-up numbers (for the formatting tests only)."""
    runs = runs or {"bigram": [2.5, 2.6, 2.7]}
    out = {"chapter": slug, "title": title, "mode": "book", "corpus": {"name": "tinyshakespeare", "vocab_size": 65},
           "splits": {"train": 900, "val": 50, "test": 50}, "device": "cpu: test", "elapsed_s": 125.0, "runs": {}, "values": values or {}}
    for name, bpcs in runs.items():
        per_seed = [{"seed": i, "val": {"bpc": b, "nats": b * math.log(2), "tokens": 49}, "test": {"bpc": b + 0.1, "nats": (b + 0.1) * math.log(2), "tokens": 49},
                     "params": 4225, "steps": 100, "tokens_seen": 6400, "wall_s": 10.0 + i, "tokens_per_s": 640.0, "elapsed_s": 12.0 + i,
                     "config": {"data": {"batch_size": 8, "block_size": 8}}, "curve": {"val_bpc": [[9, b + 1], [19, b]], "train_loss": []},
                     "sample": f"sample of {name}"} for i, b in enumerate(bpcs)]
        out["runs"][name] = {"rung": name, "preset": "book", "overrides": {}, "seeds": list(range(len(bpcs))), "label": name,
                             "leaderboard": True, "summary": book.summarise(per_seed), "sample": per_seed[0]["sample"], "per_seed": per_seed}
    return out


# ------------------------------------------------------------------------------------------ numbers
def test_stats_use_the_sample_standard_deviation():
    s = book.stats([1.0, 2.0, 3.0])
    assert s == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "n": 3}
    assert book.stats([4.0])["std"] == 0.0


def test_format_value():
    st = book.stats([2.5, 2.6, 2.7])
    assert book.format_value(st, None) == "2.600"
    assert book.format_value(st, ".2f") == "2.60"
    assert book.format_value(st, ".3f±") == "2.600\u00a0±\u00a00.100"
    assert book.format_value(1234567, None) == "1,234,567"
    assert book.format_value(0.123456, ".1%") == "12.3%"
    assert book.format_value(59, "dur") == "59 s"
    assert book.format_value(185, "dur") == "3 min 05 s"
    assert book.format_value(3 * 3600 + 60 * 7, "dur") == "3 h 07 min"
    assert book.format_value("cpu: x", None) == "cpu: x"
    assert [book.format_value(v, None) for v in (["0"], ["0", "1", "2–3"], [])] == ["0", "0, 1 and 2–3", "none"]
    with pytest.raises(book.PlaceholderError, match="list"):
        book.format_value([1.5, 2.5], None, "x.y")
    with pytest.raises(book.PlaceholderError, match="group"):
        book.format_value({"bpc": st}, None, "bigram.val")
    with pytest.raises(book.PlaceholderError, match="over seeds"):
        book.format_value(4225, ".3f±", "bigram.params")


# ------------------------------------------------------------------------------------- placeholders
@pytest.fixture
def two_chapters():
    return {"00-setup": fake_results(values={"uniform": {"val": {"bpc": 6.022}}}),
            "01-ngram": fake_results("01-ngram", {"ngram": [2.0, 2.0, 2.0]}, title="N-grams"),
            "02-bengio-mlp": None}


def test_fill_resolves_own_other_and_escaped(two_chapters):
    text = ("a [[bigram.val.bpc|.3f±]] b [[ uniform.val.bpc | .1f ]] c [[01-ngram/ngram.test.bpc]] "
            "d [[01/ngram.params]] e [[bigram.sample]] f [[chapter.elapsed_s|dur]] g \\[[bigram.val.bpc]] "
            "h [[bigram.val.bpc.max|.1f]] i [[bigram.seeds]]")
    out = book.fill(text, two_chapters, "00-setup", "chapters/00-setup/index.md")
    assert out == ("a 2.600\u00a0±\u00a00.100 b 6.0 c 2.100 d 4,225 e sample of bigram f 2 min 05 s g [[bigram.val.bpc]] "
                   "h 2.7 i 3")


def test_fill_reports_every_unresolved_placeholder(two_chapters):
    text = "[[bigram.val.bpcc]] [[02/x.y]] [[09/x]] [[nope]] [[bigram.val.bpc]]"
    with pytest.raises(book.PlaceholderError) as e:
        book.fill(text, two_chapters, "00-setup", "chapters/00-setup/index.md")
    message = str(e.value)
    assert "4 placeholder(s)" in message and "chapters/00-setup/index.md" in message
    assert "no 'bpcc' under bigram.val (there: bpc, nats)" in message
    assert "02-bengio-mlp has no results.json yet" in message
    assert "no chapter '09'" in message
    assert "no 'nope' under (top)" in message


def test_fill_indexes_lists_and_names_what_is_out_of_range():
    chapters = {"10-inside": fake_results("10-inside", values={"lens": {"layers": [{"bpc": 21.4}, {"bpc": 3.4}]}})}
    assert book.fill("[[lens.layers.1.bpc|.1f]]", chapters, "10-inside", "x.md") == "3.4"
    with pytest.raises(book.PlaceholderError, match="no '2' under lens.layers"):
        book.fill("[[lens.layers.2.bpc]]", chapters, "10-inside", "x.md")


def test_fill_outside_a_chapter_needs_a_chapter_name(two_chapters):
    with pytest.raises(book.PlaceholderError, match="outside a chapter"):
        book.fill("[[bigram.val.bpc]]", two_chapters, None, "index.md")
    assert book.fill("[[00-setup/bigram.val.bpc|.1f]]", two_chapters, None, "index.md") == "2.6"


def test_leaderboard_table_and_links(two_chapters):
    home = book.fill("[[table:leaderboard]]", two_chapters, None, "index.md")
    lines = home.splitlines()
    assert lines[0].startswith("| rung | params | training time | tokens/s | val bpc | test bpc | seeds |")
    assert "| [`bigram`](chapters/00-setup/index.md) | 4,225 | 11.0 s | 640 | 2.600\u00a0±\u00a00.100 | 2.700\u00a0±\u00a00.100 | 3 |" in lines
    assert "| [`ngram`](chapters/01-ngram/index.md) | 4,225 | 11.0 s | 640 | 2.000\u00a0±\u00a00.000 | 2.100\u00a0±\u00a00.000 | 3 |" in lines
    assert "| [02-bengio-mlp](chapters/02-bengio-mlp/index.md) | not yet run | | | | | |" in lines
    guide = book.fill("[[table:timings]]", two_chapters, None, "guides/reproduce.md")
    assert "[Setup](../chapters/00-setup/index.md) | 3 | 33 s | 2 min 05 s | cpu: test |" in guide
    assert "**4 min 10 s**" in guide
    runs = book.fill("[[table:runs]]", two_chapters, "00-setup", "chapters/00-setup/index.md")
    assert "| `bigram` | `bigram` | book | 4,225 | 100 | 11.0 s | 2.600\u00a0±\u00a00.100 | 2.700\u00a0±\u00a00.100 | 3 |" in runs


def test_runs_beyond_the_budget_and_mixtures_come_last_and_marked(two_chapters):
    """A beyond_budget run and an experiment's leaderboard_extra rows follow the ladder's rows, marked †,
    with a footnote; runs shared with another chapter count in that chapter's timings only."""
    ch = two_chapters["00-setup"]
    ch["runs"]["bigram"]["beyond_budget"] = True
    ch["values"]["leaderboard_extra"] = [{"name": "bigram + ngram", "size": "4,225 + 10 n-grams × 6", "wall_s": 21.0,
                                          "val_bpc": book.stats([1.5]), "test_bpc": book.stats([1.6]), "seeds": 1}]
    assert [(r["name"], r["beyond"]) for r in book.leaderboard_rows(two_chapters)] == [
        ("ngram", False), ("bigram", True), ("bigram + ngram", True)]
    home = book.fill("[[table:leaderboard]]", two_chapters, None, "index.md")
    assert "| [`bigram + ngram`](chapters/00-setup/index.md) † | 4,225 + 10 n-grams × 6 | 21.0 s | – | 1.500 | 1.600 | 1 |" in home
    assert "| [`bigram`](chapters/00-setup/index.md) † |" in home and "† Not at the ladder's shared setting" in home
    other = two_chapters["01-ngram"]
    other["corpus"] = {"name": "pydoc", "vocab_size": 90}  # a chapter on another corpus: marked, not ranked alike
    assert [r["name"] for r in book.leaderboard_rows(two_chapters) if not r["beyond"]] == []
    other["corpus"] = {"name": "tinyshakespeare", "vocab_size": 65}
    other["runs"]["ngram"]["per_seed"] = other["runs"]["ngram"]["per_seed"][:1]  # one seed at the shared budget
    assert [r["name"] for r in book.leaderboard_rows(two_chapters) if not r["beyond"]] == []
    ch["runs"]["bigram"]["shared_with"] = "01-ngram"
    guide = book.fill("[[table:timings]]", two_chapters, None, "guides/reproduce.md")
    assert "[Setup](../chapters/00-setup/index.md) | 0 | 0 s |" in guide


def test_ablations_stay_off_the_leaderboard(two_chapters):
    two_chapters["00-setup"]["runs"]["bigram"]["leaderboard"] = False
    assert [r["name"] for r in book.leaderboard_rows(two_chapters)] == ["ngram"]


# ----------------------------------------------------------------------------------------- chapters
def write_chapter(root: Path, slug: str, experiment: str, md: str = "# Title\n") -> Path:
    d = root / "chapters" / slug
    d.mkdir(parents=True)
    (d / "chapter.md").write_text(md)
    (d / "experiment.py").write_text(textwrap.dedent(experiment))
    return d


def test_chapter_discovery_and_lookup(tmp_path):
    write_chapter(tmp_path, "00-setup", "from zoo.book import RunSpec\nRUNS = [RunSpec('bigram')]\n", "# Zero\n\ntext\n")
    write_chapter(tmp_path, "10-later", "RUNS = []\n")
    (tmp_path / "chapters" / "notes").mkdir()
    found = book.chapters(tmp_path)
    assert [c.slug for c in found] == ["00-setup", "10-later"]
    assert found[0].title == "Zero" and found[0].number == "00"
    assert book.find_chapter("0", tmp_path).slug == "00-setup"
    assert book.find_chapter("10-later", tmp_path).slug == "10-later"
    with pytest.raises(ZooError, match="no chapter '3'"):
        book.find_chapter("3", tmp_path)


@pytest.mark.parametrize("experiment, message", [
    ("RUNS = 3\n", "RUNS must be a list"),
    ("from zoo.book import RunSpec\nRUNS = [RunSpec('bigram'), RunSpec('bigram')]\n", "unique"),
    ("from zoo.book import RunSpec\nRUNS = [RunSpec('bigram', name='chapter')]\n", "may not be"),
])
def test_bad_experiments_are_clear_errors(tmp_path, experiment, message):
    chapter = book.Chapter("00-x", write_chapter(tmp_path, "00-x", experiment))
    with pytest.raises(ZooError, match=message):
        chapter.experiment()


def test_a_chapter_with_an_unregistered_rung_is_refused(tmp_path):
    chapter = book.Chapter("00-x", write_chapter(tmp_path, "00-x", "from zoo.book import RunSpec\nRUNS = [RunSpec('no-such-rung')]\n"))
    assert book.missing_rungs(chapter) == ["no-such-rung"]
    with pytest.raises(ZooError, match="not registered yet: no-such-rung"):
        book.run_chapter(chapter, smoke=True, out=tmp_path / "out", root=tmp_path)


def test_cli_errors():
    with pytest.raises(ZooError, match="no chapter '99'"):
        cli.cmd_chapter(["run", "99", "--smoke"])
    with pytest.raises(ZooError, match="needs a chapter number"):
        cli.cmd_chapter(["run"])
    with pytest.raises(ZooError, match="comma-separated integers"):
        cli.cmd_chapter(["run", "00", "--smoke", "--seeds", "a,b"])


# ----------------------------------------------------------------------------- the committed chapters
def test_every_chapter_declares_honest_runs():
    """Leaderboard runs at the ladder's budget have >= 3 seeds (a run beyond it is marked so, and its seeds
    column says how many); a chapter without results says it is pending and quotes nothing."""
    for chapter in book.chapters(ROOT):
        runs = chapter.experiment().RUNS
        assert all(len(r.seeds) >= 3 for r in runs if r.leaderboard and not r.beyond_budget), chapter.slug
        text = (chapter.path / "chapter.md").read_text()
        if chapter.results() is None:
            assert "Pending" in text and not book.PLACEHOLDER.search(text), chapter.slug


def test_committed_chapter_00_is_a_real_book_run():
    results = json.loads((CH00 / "results.json").read_text())
    assert results["mode"] == "book" and results["corpus"]["name"] == "tinyshakespeare"
    assert results["corpus"]["sha256"] == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    run = results["runs"]["bigram"]
    assert run["preset"] == "book" and len(run["per_seed"]) >= 3
    for m in run["per_seed"]:  # full provenance of every run
        assert {"config", "git_commit", "versions", "device", "params", "wall_s", "tokens_per_s", "splits"} <= set(m)
        assert m["config"]["rung"] == "bigram" and m["config"]["preset"] == "book"
    bpcs = [m["val"]["bpc"] for m in run["per_seed"]]
    assert run["summary"]["val"]["bpc"]["mean"] == pytest.approx(sum(bpcs) / len(bpcs))
    v = results["values"]
    assert v["uniform"]["val"]["bpc"] == pytest.approx(math.log2(results["corpus"]["vocab_size"]))
    # the ordering the chapter's prose relies on
    assert v["uniform"]["val"]["bpc"] > v["unigram"]["val"]["bpc"] > v["counted_bigram"]["val"]["bpc"]
    for split in ("val", "test"):  # "to within a few hundredths of a bit on both splits"
        assert abs(run["summary"][split]["bpc"]["mean"] - v["counted_bigram"][split]["bpc"]) < 0.05
    for figure in ("curves.png", "baselines.png", "bigram-table.png"):
        assert (CH00 / "figures" / figure).stat().st_size > 10_000


# ------------------------------------------------------------------------------------- end to end
def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def corpus():
    import os

    data = os.environ.get("ZOO_DATA_DIR")  # set by conftest when ../shared/data has the book's corpus
    return "tinyshakespeare" if data and (Path(data) / "tinyshakespeare.txt").is_file() else "pydoc"


def test_smoke_chapter_run_end_to_end(tmp_path, monkeypatch, corpus):
    before = digest(CH00)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where --smoke without --out writes
    assert cli.cmd_chapter(["run", "00", "--smoke", "--data", corpus]) == 0
    assert digest(CH00) == before, "a smoke run touched the committed chapter"
    (out,) = tmp_path.glob("zoo-00-setup-smoke-*")
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "smoke" and results["corpus"]["name"] == corpus
    run = results["runs"]["bigram"]
    assert run["seeds"] == [0, 1, 2] and run["summary"]["val"]["bpc"]["n"] == 3
    for m in run["per_seed"]:
        assert m["steps"] == 4 and m["config"]["data"]["batch_size"] == 4 and m["config"]["data"]["corpus"] == corpus
        assert m["curve"]["val_bpc"] and m["sample"] and m["elapsed_s"] > 0
    assert {p.name for p in (out / "figures").glob("*.png")} == {"curves.png", "baselines.png", "bigram-table.png", "bigram-rows.png"}
    # the committed prose resolves against a fresh results.json: its placeholders name real keys
    text = (CH00 / "chapter.md").read_text()
    filled = book.fill(text, {"00-setup": results, "01-ngram": None}, "00-setup", "chapters/00-setup/index.md")
    assert "[[" not in filled

    # running again reuses the finished runs; --force retrains them
    log = []
    book.run_chapter(book.find_chapter("00"), smoke=True, out=out, corpus=corpus, log=log.append)
    assert sum("reusing" in line for line in log) == 3
    again = json.loads((out / "results.json").read_text())
    assert again["runs"]["bigram"]["summary"] == run["summary"]


def test_smoke_book_writes_the_home_plot(tmp_path, corpus):
    before = digest(CH00)
    assert cli.cmd_book(["--smoke", "--chapters", "00", "--out", str(tmp_path), "--data", corpus]) == 0
    assert digest(CH00) == before
    assert (tmp_path / "00-setup" / "results.json").is_file()
    assert (tmp_path / "ladder-val-curves.png").stat().st_size > 10_000


def test_wired_into_the_zoo_command(capsys):
    from zoo import cli

    if "chapter" not in cli.HANDLERS:
        pytest.skip("zoo/cli.py does not route `chapter` and `book` yet")
    assert cli.main(["chapter", "run", "42"]) == 2
    assert "no chapter '42'" in capsys.readouterr().err
    assert cli.main(["chapter", "list"]) == 0
    assert "00-setup" in capsys.readouterr().out
    assert cli.main(["book", "--chapters", "00,x"]) == 2


def test_parallel_runs_match_serial_ones(tmp_path, corpus):
    """--jobs 2 trains each run in its own process; the numbers are the runs' own, whichever process made them."""
    chapter = book.find_chapter("00")
    serial = book.run_chapter(chapter, smoke=True, out=tmp_path / "serial", corpus=corpus, seeds=[0, 1], jobs=1, log=lambda m: None)
    parallel = book.run_chapter(chapter, smoke=True, out=tmp_path / "parallel", corpus=corpus, seeds=[0, 1], jobs=2, log=lambda m: None)
    a, b = (json.loads((d / "results.json").read_text())["runs"]["bigram"] for d in (serial, parallel))
    assert [m["seed"] for m in b["per_seed"]] == [0, 1]
    for x, y in zip(a["per_seed"], b["per_seed"]):
        assert x["val"]["bpc"] == pytest.approx(y["val"]["bpc"], rel=1e-6)
        assert x["test"]["nats"] == pytest.approx(y["test"]["nats"], rel=1e-6)
    assert f"({max(1, book.usable_cores() // 2)} threads)" in b["per_seed"][0]["device"]  # cores // jobs torch threads each
    with pytest.raises(ZooError, match="--jobs must be"):
        cli.cmd_chapter(["run", "00", "--smoke", "--jobs", "-1"])


# ------------------------------------------------------------------------------ results need a clean commit
def git(root, *args):
    import subprocess

    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True)


@pytest.fixture
def committed_book(tmp_path):
    write_chapter(tmp_path, "00-setup", "from zoo.book import RunSpec\nRUNS = [RunSpec('bigram', seeds=(0,))]\n", "# Zero\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "book")
    return tmp_path


def test_results_are_written_only_from_a_clean_commit(committed_book):
    chapter = book.find_chapter("00", committed_book)
    assert book.plan_chapter(chapter, root=committed_book).draft is False  # clean: fine
    (committed_book / "notes.txt").write_text("an untracked file is an uncommitted change too\n")
    with pytest.raises(ZooError, match=r"uncommitted changes \(notes.txt\).*--draft"):
        book.plan_chapter(chapter, root=committed_book)
    assert book.plan_chapter(chapter, root=committed_book, draft=True).draft is True
    # smoke runs and --out never write into the chapter, so they need no clean tree
    assert book.plan_chapter(chapter, root=committed_book, smoke=True).draft is False


def test_outside_a_git_checkout_results_need_draft(tmp_path):
    write_chapter(tmp_path, "00-setup", "from zoo.book import RunSpec\nRUNS = [RunSpec('bigram')]\n", "# Zero\n")
    with pytest.raises(ZooError, match="not a git checkout"):
        book.plan_chapter(book.find_chapter("00", tmp_path), root=tmp_path)


def test_the_draft_notice_names_the_commit():
    assert book.draft_notice({"chapter": "02-x", "git_commit": "abc"}) == ""
    assert book.draft_notice(None) == ""
    notice = book.draft_notice({"chapter": "02-x", "git_commit": "abc+dirty"})
    assert notice.startswith('!!! warning "Draft"') and "abc+dirty" in notice and "zoo chapter run 02" in notice
    assert book.draft_notice({"chapter": "02-x", "git_commit": "abc", "draft": True})


def test_the_book_record_is_quoted_only_for_results_it_wrote(tmp_path, monkeypatch):
    from zoo.book import placeholders

    book_ = {"00-setup": {**fake_results(), "generated_utc": "2026-01-01T00:00:00Z"}}
    record = {"jobs": 2, "wall_s": 3000.0, "chapters": ["00-setup"], "generated_utc": "2026-01-02T00:00:00Z"}
    monkeypatch.setattr(placeholders, "book_record", lambda: record)
    assert "runs at a time" in book.fill("[[table:timings]]", book_, None, "guides/reproduce.md")
    book_["00-setup"]["generated_utc"] = "2026-01-03T00:00:00Z"  # regenerated alone after that book run
    assert "runs at a time" not in book.fill("[[table:timings]]", book_, None, "guides/reproduce.md")


def test_only_a_full_book_run_writes_the_book_record(tmp_path, monkeypatch, corpus):
    """chapters/book.json times the whole `zoo book`: a --chapters subset leaves the last full record alone."""
    tiny = ("from zoo.book import RunSpec\nRUNS = [RunSpec('bigram', seeds=(0,), overrides={'trainer': {'max_steps': 4, "
            "'val_every': 2, 'val_batches': 1, 'checkpoint_every': 0}, 'data': {'batch_size': 4}})]\n")
    write_chapter(tmp_path, "00-setup", tiny, "# Zero\n")
    write_chapter(tmp_path, "01-next", tiny, "# One\n")
    monkeypatch.setenv("ZOO_BOOK_ROOT", str(tmp_path))
    record = tmp_path / "chapters" / "book.json"
    assert cli.cmd_book(["--chapters", "01", "--draft", "--jobs", "1", "--data", corpus]) == 0
    assert (tmp_path / "chapters" / "01-next" / "results.json").is_file() and not record.exists()
    assert cli.cmd_book(["--draft", "--jobs", "1", "--data", corpus]) == 0
    full = json.loads(record.read_text())
    assert full["command"] == "zoo book" and full["chapters"] == ["00-setup", "01-next"]
    assert cli.cmd_book(["--chapters", "00", "--draft", "--jobs", "1", "--data", corpus, "--force"]) == 0
    assert json.loads(record.read_text()) == full


def test_run_dirs_are_recorded_relative_to_the_book_when_runs_is_a_link(tmp_path):
    """results.json names runs/book/..., not one machine's folder, when runs/ links to another disk."""
    from zoo.book.runner import _relative

    (tmp_path / "book").mkdir()
    (tmp_path / "disk" / "book" / "07-gpt").mkdir(parents=True)
    (tmp_path / "book" / "runs").symlink_to(tmp_path / "disk")
    assert _relative(tmp_path / "book" / "runs" / "book" / "07-gpt", tmp_path / "book") == "runs/book/07-gpt"
    assert _relative(tmp_path / "elsewhere", tmp_path / "book") == str(tmp_path / "elsewhere")


def test_paths_an_analysis_records_are_made_relative_to_the_book(tmp_path):
    from zoo.book.runner import portable

    run = str(tmp_path / "runs" / "book" / "08-x" / "best-seed0")
    found = {"reference": {"run": run, "bpc": 1.5}, "lines": [run, "runs/book/a", str(tmp_path) + "-other/x"], "n": 3}
    assert portable(found, tmp_path) == {"reference": {"run": "runs/book/08-x/best-seed0", "bpc": 1.5},
                                         "lines": ["runs/book/08-x/best-seed0", "runs/book/a", str(tmp_path) + "-other/x"], "n": 3}


def test_shared_runs_live_in_the_chapter_that_shares_them(tmp_path):
    """A RunSpec with shared_with trains into (and reuses) the other chapter's run directory; a smoke run
    keeps its own copy, and a chapter that does not exist is refused before anything is trained."""
    write_chapter(tmp_path, "01-first", "from zoo.book import RunSpec\nRUNS = [RunSpec('bigram', seeds=(0,))]\n", "# One\n")
    second = write_chapter(tmp_path, "02-second", "from zoo.book import RunSpec\n"
                           "RUNS = [RunSpec('bigram', seeds=(0,), shared_with='01-first'), RunSpec('ngram', seeds=(0,))]\n", "# Two\n")
    chapter = book.Chapter("02-second", second)
    plan = book.plan_chapter(chapter, root=tmp_path, draft=True)
    dirs = {t.run.key: t.run_dir for t in plan.tasks}
    assert dirs["bigram"] == tmp_path / "runs" / "book" / "01-first" / "bigram-seed0"
    assert dirs["ngram"] == tmp_path / "runs" / "book" / "02-second" / "ngram-seed0"
    smoke = book.plan_chapter(chapter, root=tmp_path, smoke=True)
    assert all("01-first" not in str(t.run_dir) for t in smoke.tasks)
    third = write_chapter(tmp_path, "03-third", "from zoo.book import RunSpec\nRUNS = [RunSpec('bigram', shared_with='09-missing')]\n", "# Three\n")
    with pytest.raises(ZooError, match="shared with chapter '09-missing', which does not exist"):
        book.plan_chapter(book.Chapter("03-third", third), root=tmp_path, draft=True)
    bad = write_chapter(tmp_path, "04-bad", "from zoo.book import RunSpec\nRUNS = [RunSpec('bigram', shared_with='../x')]\n", "# Four\n")
    with pytest.raises(ZooError, match="shared_with must be a chapter's folder name"):
        book.Chapter("04-bad", bad).experiment()


def test_a_diverged_run_is_reported_not_fatal(tmp_path, corpus):
    """A run whose loss stops being finite is recorded as diverged: the chapter still writes its results,
    its table says so, the leaderboard leaves it out, and a second run of the chapter does not retrain it."""
    wild = "{'optim': {'lr': 1e7, 'grad_clip': 0}}"
    folder = write_chapter(tmp_path, "05-lr", "from zoo.book import RunSpec\n"
                           f"RUNS = [RunSpec('gpt', name='calm', seeds=(0,)), RunSpec('gpt', name='wild', seeds=(0, 1), overrides={wild})]\n",
                           "# Five\n\n[[table:runs]]\n")
    chapter, log = book.Chapter("05-lr", folder), []
    book.run_chapter(chapter, smoke=True, out=tmp_path / "out", corpus=corpus, root=tmp_path, log=log.append)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    wild_run = results["runs"]["wild"]
    assert wild_run["summary"]["val"] is None and wild_run["summary"]["diverged"] == 2
    assert all("loss became" in s["diverged"] for s in wild_run["per_seed"])
    assert results["runs"]["calm"]["summary"]["val"]["bpc"]["n"] == 1 and results["runs"]["calm"]["summary"]["diverged"] == 0
    table = book.placeholders.table("runs", {"05-lr": results}, "05-lr", "index.md")
    assert "| `wild` | `gpt` | book | | | | diverged | diverged | 2 |" in table
    assert [r["name"] for r in book.placeholders.leaderboard_rows({"05-lr": results})] == ["calm"]
    log.clear()
    book.run_chapter(chapter, smoke=True, out=tmp_path / "out", corpus=corpus, root=tmp_path, log=log.append)
    assert sum("diverged before, not retrained" in line for line in log) == 2
