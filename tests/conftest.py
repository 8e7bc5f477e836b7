import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _find_shared_corpus():
    """Developer checkouts and CI have the book's corpus in ../shared/data; use it if nothing else is set."""
    if "ZOO_DATA_DIR" not in os.environ and (SHARED_DATA / "tinyshakespeare.txt").is_file():
        os.environ["ZOO_DATA_DIR"] = str(SHARED_DATA)
    yield


@pytest.fixture(autouse=True, scope="session")
def _fixed_thread_count():
    """The CLI's default picks torch threads by the machine's load (zoo.parallel.free_threads); a test that
    compares runs must not depend on the load, so the suite (and every zoo it starts) keeps one fixed count,
    torch's own default, through OMP_NUM_THREADS, which the CLI respects. tests/test_threads.py unsets it."""
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    yield


def have_tinyshakespeare() -> bool:
    d = os.environ.get("ZOO_DATA_DIR") or (str(SHARED_DATA) if SHARED_DATA.is_dir() else "")
    return bool(d) and (Path(d) / "tinyshakespeare.txt").is_file()


@pytest.fixture
def tiny_corpus(tmp_path):
    """A small deterministic UTF-8 text (~6k chars) so end-to-end runs take seconds."""
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it", "then", "slept"]
    lines, state = [], 7
    for _ in range(600):
        state = (state * 1103515245 + 12345) % 2**31
        lines.append(" ".join(words[(state >> (3 * k)) % len(words)] for k in range(3)) + ".")
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def one_thread():
    """Tiny models step through many tiny ops; on a busy shared CPU a second intra-op thread only adds
    synchronisation (tens of times slower here), so these end-to-end runs use one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class StopAt(Callback):
    """Stop training after optimiser step ``step``, as an interrupted run would (the resume tests' cut)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            trainer.should_stop = True


def cli(capsys, *argv):
    """Run ``zoo ARGV`` in-process: (exit code, stdout, stderr)."""
    from zoo.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, *fragments, status=2):
    """Bad input's contract: exit ``status``, one line on stderr holding every fragment, no traceback."""
    assert code == status, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, f"expected one line, got: {err!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
