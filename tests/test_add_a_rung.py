"""The add-a-rung guide, followed as a new user would: its own files, really installed, found by zoo.

The package's two files are taken from the code blocks of docs/guides/add-a-rung.md (so the guide
cannot drift from what works), installed with pip — into a private target folder put on PYTHONPATH,
so the shared environment is left exactly as it was — then `zoo list`, `zoo train` and the
conformance suite run on it in subprocesses, as the guide's commands do.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guides" / "add-a-rung.md"
RUNG = "decay-bag"
BLOCK = re.compile(r'^(`{3,})(\w+) title="(zoo-decay-bag/[^"]+)"( verbatim)?\n(.*?)^\1$', re.S | re.M)
PACKAGE = {"zoo-decay-bag/pyproject.toml", "zoo-decay-bag/zoo_decay_bag/__init__.py"}
CHAPTER = {"zoo-decay-bag/book/chapters/90-decay-bag/experiment.py", "zoo-decay-bag/book/chapters/90-decay-bag/chapter.md"}


def guide_files() -> dict[str, str]:
    return {path: body for _, _, path, _, body in BLOCK.findall(GUIDE.read_text(encoding="utf-8"))}


def zoo_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "zoo", *args]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The guide's package, pip-installed (--no-deps --no-build-isolation) into a target folder."""
    tmp = tmp_path_factory.mktemp("add-a-rung")
    files = guide_files()
    assert set(files) == PACKAGE | CHAPTER, files.keys()
    for rel, body in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(body, encoding="utf-8")
    target = tmp / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--disable-pip-version-check", "--target", str(target), str(tmp / "zoo-decay-bag")],
        capture_output=True, text=True, timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert any(p.name.startswith("zoo_decay_bag-") and p.name.endswith(".dist-info") for p in target.iterdir())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return tmp, env


def run(cmd, env, cwd=ROOT, timeout=300):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_guide_has_the_package_files():
    files = guide_files()
    assert '[project.entry-points."zoo.rungs"]' in files["zoo-decay-bag/pyproject.toml"]
    assert f'@register("{RUNG}"' in files["zoo-decay-bag/zoo_decay_bag/__init__.py"]


def test_zoo_list_shows_the_plugin(installed):
    _, env = installed
    out = run(zoo_cmd("list"), env)
    assert out.returncode == 0, out.stderr
    line = next((ln for ln in out.stdout.splitlines() if ln.split()[:1] == [RUNG]), None)
    assert line is not None, out.stdout
    assert "90-decay-bag" in line and "Decaying bag of characters" in line
    # ... and only where it is installed: the shared environment does not see it
    clean = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    assert RUNG not in run(zoo_cmd("list"), clean).stdout.split()


def test_train_eval_and_bad_hyperparameter(installed):
    tmp, env = installed
    out_dir = tmp / "runs" / "bag"
    train = run(zoo_cmd("train", RUNG, "--preset", "quick", "--out", str(out_dir),
                        "--trainer.max_steps", "30", "--trainer.val_every", "15", "--trainer.progress_bar", "false"), env)
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["rung"] == RUNG and metrics["steps"] == 30
    assert metrics["val"]["bpc"] < 6.0  # below uniform over pydoc's alphabet after 30 steps
    ev = run(zoo_cmd("eval", str(out_dir), "--json"), env)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["bpc"] == pytest.approx(metrics["val"]["bpc"], rel=1e-9)
    bad = run(zoo_cmd("train", RUNG, "--model.decay", "2", "--out", str(tmp / "runs" / "bad")), env)
    assert bad.returncode == 2 and "decay must be in [0, 1]" in bad.stderr and "Traceback" not in bad.stderr


def test_zoo_check_passes_on_the_plugin(installed):
    """The guide's step 5, `zoo check decay-bag`: every conformance check passes (or does not apply)."""
    _, env = installed
    out = run(zoo_cmd("check", RUNG), env, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    verdicts = [line.split()[0] for line in out.stdout.splitlines()[:-1]]
    assert verdicts.count("PASS") >= 8 and "FAIL" not in verdicts, out.stdout
    assert "PASS  causality" in out.stdout


def fake_plugin(tmp_path, entry: str, module: str | None = None) -> dict:
    """An installed distribution with one zoo.rungs entry point (and, optionally, the module it names)."""
    dist = tmp_path / "zoo_plugin-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[zoo.rungs]\n{entry}\n")
    if module is not None:
        (tmp_path / "zoo_plugin_mod.py").write_text(module)
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_a_broken_plugin_is_reported_and_every_other_rung_still_works(tmp_path):
    """An entry point naming a module that does not exist: `zoo list` lists every rung and says which
    plug-in is broken in one line; zoo's own rungs train; asking for the broken one is one line, exit 2."""
    env = fake_plugin(tmp_path, "broken = zoo_brokn_typo")
    out = run(zoo_cmd("list"), env)
    assert out.returncode == 0 and "gpt" in out.stdout, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'broken'" in lines[0] and "zoo_brokn_typo" in lines[0], out.stderr
    out = run(zoo_cmd("check", "broken"), env)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "could not be loaded" in out.stderr
    out = run(zoo_cmd("train", "bigram", "--preset", "quick", "--data", "pydoc", "--out", str(tmp_path / "run"),
                      "--trainer.max_steps", "2", "--trainer.val_every", "2", "--trainer.progress_bar", "false"), env)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_plugin_that_registers_nothing_says_so(tmp_path):
    """The template copied without its @register: the module loads, no rung appears; say what is missing."""
    env = fake_plugin(tmp_path, "my-rung = zoo_plugin_mod", "X = 1\n")
    out = run(zoo_cmd("train", "my-rung"), env)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "registered no rung named 'my-rung'" in out.stderr
    assert "@register('my-rung')" in out.stderr


LEAKY = """
import torch
from dataclasses import dataclass
from zoo.registry import register

@dataclass(frozen=True)
class Config:
    vocab_size: int = 0
    block_size: int = 0

@register("leaky")
class Leaky(torch.nn.Module):
    \"\"\"A bag of the current and the NEXT character (an off-by-one a rung author could make).\"\"\"
    Config = Config
    presets = {"quick": {"trainer": {"max_steps": 5}}, "book": {}}

    def __init__(self, config):
        super().__init__()
        self.context_length = config.block_size
        self.emb = torch.nn.Embedding(config.vocab_size, config.vocab_size)

    def forward(self, idx):
        ahead = torch.cat([idx[:, 1:], idx[:, -1:]], dim=1)  # (B, T): position t sees t + 1
        return self.emb(idx) + self.emb(ahead)
"""


def test_a_rung_that_sees_the_future_is_refused_before_training(tmp_path):
    """`zoo train` checks causality before the first step: one line naming the leaking position, exit 2,
    no run directory; `zoo check` fails its causality check (exit 1)."""
    env = fake_plugin(tmp_path, "leaky = zoo_plugin_mod", LEAKY)
    out = run(zoo_cmd("train", "leaky", "--data", "pydoc", "--out", str(tmp_path / "run")), env)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "sees the future" in lines[0] and "position 0" in lines[0] and "zoo check leaky" in lines[0]
    assert not (tmp_path / "run").exists()
    out = run(zoo_cmd("check", "leaky"), env)
    assert out.returncode == 1 and "FAIL  causality" in out.stdout, out.stdout


def git(folder: Path, *args):
    out = subprocess.run(["git", "-C", str(folder), "-c", "user.name=zoo test", "-c", "user.email=test@zoo.invalid",
                          "-c", "commit.gpgsign=false", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_chapter_outside_zoo_runs_and_builds_into_the_site(installed, tmp_path):
    """The guide's step 6, from its own files: the chapter lives in the package's folder (a git repository of
    its own), `zoo chapter run 90` with ZOO_BOOK_ROOT writes its results there, and zoo's site, built with
    ZOO_BOOK_ROOT set, shows it: numbers filled in, the plug-in's own forward() included by its snippet
    markers, the guide itself showing the chapter's syntax as written. (One seed, the embedded corpus.)"""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    tmp, env = installed
    folder = tmp / "zoo-decay-bag"
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "decay-bag: a rung and its chapter")
    env = {**env, "ZOO_BOOK_ROOT": str(folder / "book")}
    listed = run(zoo_cmd("chapter", "list"), env)
    assert listed.returncode == 0 and "90-decay-bag" in listed.stdout, listed.stdout + listed.stderr
    ran = run(zoo_cmd("chapter", "run", "90", "--data", "pydoc", "--seeds", "0", "--jobs", "1"), env, timeout=900)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    chapter = folder / "book" / "chapters" / "90-decay-bag"
    results = json.loads((chapter / "results.json").read_text())
    bpc = results["runs"]["decay-bag"]["per_seed"][0]["val"]["bpc"]
    assert (chapter / "figures" / "curves.png").is_file()
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                           env={**env, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=600)
    log = built.stdout + built.stderr
    assert built.returncode == 0 and not re.search(r"^(WARNING|ERROR)\b", log, re.M), log[-5000:]
    page = plain_text(site / "chapters" / "90-decay-bag" / "index.html")
    assert f"{bpc:.3f}" in page and "[[" not in page
    assert "h_t = sum over s <= t of decay^(t-s) x_s" in page  # the plug-in's forward(), by its markers
    assert "--8<--" not in page
    assert "90-decay-bag" in (site / "index.html").read_text(encoding="utf-8")  # its run on the leaderboard, marked
    guide = plain_text(site / "guides" / "add-a-rung" / "index.html")
    assert "[[decay-bag.val.bpc|.3f±]]" in guide and '\n--8<-- "zoo_decay_bag/__init__.py:forward"' in guide
    assert "# --8<-- [start:forward]" in guide  # the markers to copy, shown in the package's listing


def plain_text(page: Path) -> str:
    """A built page's text, tags stripped (highlighted code is split into spans) and entities decoded."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_the_guides_residual_rung_passes_hook_points_and_zoo_lens_reads_it(tmp_path):
    """The guide's residual-stream example, as a plug-in: `zoo check` passes its hook-points check, and
    after a few steps `zoo lens` scores each layer (the last equal to `zoo eval`) and `zoo embed` reads it."""
    block = re.search(r'^```python title="residual-rung.py"\n(.*?)^```$', GUIDE.read_text(encoding="utf-8"), re.S | re.M)
    env = fake_plugin(tmp_path, "mean-stack = zoo_plugin_mod", block.group(1))
    out = run(zoo_cmd("check", "mean-stack"), env)
    assert out.returncode == 0 and "PASS  hook-points" in out.stdout, out.stdout + out.stderr
    out = run(zoo_cmd("train", "mean-stack", "--data", "pydoc", "--out", str(tmp_path / "run"), "--trainer.max_steps", "5",
                      "--trainer.val_every", "5", "--trainer.progress_bar", "false"), env)
    assert out.returncode == 0, out.stderr[-2000:]
    lens = run(zoo_cmd("lens", str(tmp_path / "run"), "--json", "--tuned-steps", "2"), env)
    evaluated = run(zoo_cmd("eval", str(tmp_path / "run"), "--json"), env)
    assert lens.returncode == 0 and evaluated.returncode == 0, lens.stderr + evaluated.stderr
    report = json.loads(lens.stdout)
    assert report["hook_points"] == ["resid.0", "resid.1", "resid.2"]
    assert report["logit_lens"][-1]["bpc"] == json.loads(evaluated.stdout)["bpc"]
    embed = run(zoo_cmd("embed", str(tmp_path / "run")), env)
    assert embed.returncode == 0 and "predicts itself first" in embed.stdout and "smallest angle" in embed.stdout, embed.stderr
