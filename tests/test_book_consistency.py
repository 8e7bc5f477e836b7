"""Shared runs across chapters: a chapter whose copy of a shared run is an older training than the owner
chapter now shows is found, named in `zoo chapter list`, and warned about on its page."""

from __future__ import annotations

import copy
import json

from zoo import book, cli


def seed(run_dir: str, val: float, commit: str = "aaaa1111") -> dict:
    return {"seed": int(run_dir[-1]), "run_dir": run_dir, "git_commit": commit, "val": {"bpc": val}, "test": {"bpc": val + 0.2}}


def results(slug: str, runs: dict) -> dict:
    """Just the fields consistency reads: each run's shared_with and its seeds."""
    return {"chapter": slug, "title": slug, "runs": {key: {"shared_with": owner, "per_seed": seeds} for key, (owner, seeds) in runs.items()}}


def a_book() -> dict:
    gpt = [seed(f"runs/book/07-gpt/gpt-seed{i}", 2.10 + i / 100) for i in range(3)]
    return {
        "07-gpt": results("07-gpt", {"gpt": (None, gpt)}),
        "12-scaling": results("12-scaling", {"gpt": ("07-gpt", copy.deepcopy(gpt)),
                                             "wide": (None, [seed("runs/book/12-scaling/wide-seed0", 2.3)])}),
        "13-empty": None,
    }


def test_a_chapter_that_copies_the_owners_runs_is_consistent():
    b = a_book()
    assert book.stale_runs(b, "12-scaling") == [] and book.stale_runs(b, "07-gpt") == [] and book.stale_runs(b, "13-empty") == []
    assert book.stale_notice(b, "12-scaling") == "" and book.stale_notice(b, None) == ""


def test_a_regenerated_owner_leaves_the_copy_stale():
    b = a_book()
    for i, s in enumerate(b["07-gpt"]["runs"]["gpt"]["per_seed"]):  # chapter 07 retrained at another commit
        s.update(git_commit="bbbb2222", val={"bpc": 2.09 + i / 100})
    (stale,) = book.stale_runs(b, "12-scaling")
    assert (stale.run, stale.owner, stale.here_commit, stale.there_commit) == ("gpt", "07-gpt", "aaaa1111", "bbbb2222")
    assert abs(stale.here - 2.11) < 1e-12 and abs(stale.there - 2.10) < 1e-12
    notice = book.stale_notice(b, "12-scaling")
    assert notice.startswith('!!! warning "Made from older runs"')
    assert "`07-gpt/gpt`: val 2.1100 bpc here (trained at `aaaa1111`), 2.1000 in chapter 07 (trained at `bbbb2222`)" in notice
    assert "zoo chapter run 12" in notice


def test_retrained_to_the_same_scores_is_not_stale():
    b = a_book()
    for s in b["07-gpt"]["runs"]["gpt"]["per_seed"]:  # a counted model retrained at a later commit: same numbers
        s["git_commit"] = "cccc3333"
    assert book.stale_runs(b, "12-scaling") == []


def test_an_absolute_run_dir_from_an_older_record_still_matches():
    b = a_book()
    for s in b["12-scaling"]["runs"]["gpt"]["per_seed"]:
        s["run_dir"] = "/some/machine/zoo/" + s["run_dir"]
    assert book.stale_runs(b, "12-scaling") == []


def test_one_seed_retrained_or_a_seed_missing_is_enough():
    b = a_book()
    b["07-gpt"]["runs"]["gpt"]["per_seed"][2]["test"]["bpc"] += 1e-9  # one score of one seed differs
    assert [s.run for s in book.stale_runs(b, "12-scaling")] == ["gpt"]
    b = a_book()
    del b["07-gpt"]["runs"]["gpt"]["per_seed"][1]  # the owner now trains fewer seeds
    assert [s.run for s in book.stale_runs(b, "12-scaling")] == ["gpt"]


def test_an_owner_without_the_run_or_without_results_is_named():
    b = a_book()
    b["07-gpt"]["runs"] = {}
    (stale,) = book.stale_runs(b, "12-scaling")
    assert stale.there is None and stale.there_commit is None
    assert "(not there any more)" in book.stale_notice(b, "12-scaling")
    b["07-gpt"] = None
    assert [s.owner for s in book.stale_runs(b, "12-scaling")] == ["07-gpt"]


def test_chapter_list_marks_the_stale_chapter(tmp_path, monkeypatch, capsys):
    b = a_book()
    for slug, res in b.items():
        folder = tmp_path / "chapters" / slug
        folder.mkdir(parents=True)
        (folder / "chapter.md").write_text(f"# {slug}\n")
        (folder / "experiment.py").write_text("from zoo.book import RunSpec\nRUNS = []\n")
        if res:
            (folder / "results.json").write_text(json.dumps({**res, "mode": "book", "elapsed_s": 1.0}))
    monkeypatch.setenv("ZOO_BOOK_ROOT", str(tmp_path))
    assert cli.main(["chapter", "list"]) == 0
    assert "made from older runs" not in capsys.readouterr().out
    res = json.loads((tmp_path / "chapters" / "07-gpt" / "results.json").read_text())
    res["runs"]["gpt"]["per_seed"][0]["val"]["bpc"] = 2.0
    (tmp_path / "chapters" / "07-gpt" / "results.json").write_text(json.dumps(res))
    assert cli.main(["chapter", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["12-scaling"].endswith("made from older runs of 07-gpt")
    assert "older" not in lines["07-gpt"] and "not yet run" in lines["13-empty"]
