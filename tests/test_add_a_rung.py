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
BLOCK = re.compile(r'^```(\w+) title="(zoo-decay-bag/[^"]+)"\n(.*?)^```', re.S | re.M)


def guide_files() -> dict[str, str]:
    return {path: body for _, path, body in BLOCK.findall(GUIDE.read_text(encoding="utf-8"))}


def zoo_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "zoo", *args]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The guide's package, pip-installed (--no-deps --no-build-isolation) into a target folder."""
    tmp = tmp_path_factory.mktemp("add-a-rung")
    files = guide_files()
    assert set(files) == {"zoo-decay-bag/pyproject.toml", "zoo-decay-bag/zoo_decay_bag/__init__.py"}, files.keys()
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


def test_conformance_suite_passes_on_the_plugin(installed):
    _, env = installed
    if not (ROOT / "tests" / "test_conformance.py").is_file():
        pytest.skip("tests/test_conformance.py not present")
    out = run([sys.executable, "-m", "pytest", "tests/test_conformance.py", "-k", RUNG, "-q",
               "-p", "no:cacheprovider", "-o", "addopts="], env, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed and int(passed.group(1)) >= 8, out.stdout[-2000:]
    assert "failed" not in out.stdout.splitlines()[-1]


def test_a_broken_plugin_is_one_line_naming_it(tmp_path):
    """An entry point naming a module that does not exist: `zoo list` says which plug-in, in one line."""
    dist = tmp_path / "zoo_broken-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-broken\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[zoo.rungs]\nbroken = zoo_brokn_typo\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = run(zoo_cmd("list"), env)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken" in lines[0] and "zoo_brokn_typo" in lines[0], out.stderr
