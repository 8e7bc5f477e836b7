"""Corpora, the character tokenizer, contiguous splits and the TextDataModule.

Every batch is a pure function of (seed, step): the training loader asks for the batch of step s, and
a generator seeded from (seed, s) draws it. A resumed run therefore sees exactly the batches the
uninterrupted run would have seen, and ``--trainer.devices N`` shards the same global batch across
ranks instead of drawing new ones.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from zoo.config import DEFAULT_CORPUS
from zoo.errors import ZooError
from zoo.splits import split_bounds


# --------------------------------------------------------------------------------------------- corpora
@dataclass(frozen=True)
class Corpus:
    name: str  # what the user asked for: "pydoc", "tinyshakespeare", "copy:8", or a path
    text: str
    sha256: str  # of the UTF-8 bytes; goes into every run's provenance

    @classmethod
    def from_text(cls, name: str, text: str) -> "Corpus":
        if not text:
            raise ZooError(f"corpus {name!r} is empty")
        return cls(name, text, hashlib.sha256(text.encode("utf-8")).hexdigest())


def pydoc_corpus() -> Corpus:
    """CPython's reference-manual topics (``pydoc_data.topics``), sorted by topic and joined: no download."""
    from pydoc_data.topics import topics

    return Corpus.from_text("pydoc", "\n\n".join(topics[key] for key in sorted(topics)))


TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SIZE = 1_115_394
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo"


def _verified(data: bytes, where: str) -> bytes:
    if len(data) != TINYSHAKESPEARE_SIZE or hashlib.sha256(data).hexdigest() != TINYSHAKESPEARE_SHA256:
        raise ZooError(f"{where} is not tinyshakespeare: expected {TINYSHAKESPEARE_SIZE} bytes with sha256 {TINYSHAKESPEARE_SHA256[:12]}…")
    return data


def tinyshakespeare_corpus() -> Corpus:
    """Found via $ZOO_DATA_DIR, then the user cache, then downloaded once into the cache (verified)."""
    candidates = []
    if os.environ.get("ZOO_DATA_DIR"):
        candidates.append(Path(os.environ["ZOO_DATA_DIR"]) / "tinyshakespeare.txt")
    cached = user_cache_dir() / "tinyshakespeare.txt"
    candidates.append(cached)
    for path in candidates:
        if path.is_file():
            return Corpus.from_text("tinyshakespeare", _verified(path.read_bytes(), str(path)).decode("utf-8"))
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=30) as response:
            data = _verified(response.read(), TINYSHAKESPEARE_URL)
    except (OSError, ValueError) as e:
        raise ZooError(
            "tinyshakespeare not found and could not be downloaded "
            f"({e.__class__.__name__}); supply it as --data PATH/TO/tinyshakespeare.txt, "
            f"or put it in $ZOO_DATA_DIR/tinyshakespeare.txt, or in {cached}"
        ) from None
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, cached)
    return Corpus.from_text("tinyshakespeare", data.decode("utf-8"))


def file_corpus(path: str) -> Corpus:
    p = Path(path).expanduser()
    if not p.exists():
        raise ZooError(f"corpus file not found: {path} (named corpora: {', '.join(NAMED_CORPORA)}, or copy:D)")
    if not p.is_file():
        raise ZooError(f"corpus path is not a file: {path}")
    data = p.read_bytes()
    if not data:
        raise ZooError(f"corpus file is empty: {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ZooError(f"corpus file is not UTF-8 text: {path} (byte {e.start}: {data[e.start:e.start + 1]!r})") from None
    # A byte-order mark that some editors write at the start of a file is not text: kept, it would be
    # a character of the vocabulary and the first token of the train split.
    return Corpus.from_text(str(path), text.removeprefix("\ufeff"))


NAMED_CORPORA: dict[str, Callable[[], Corpus]] = {
    "pydoc": pydoc_corpus,
    "tinyshakespeare": tinyshakespeare_corpus,
}
# Parametrised corpora: "prefix:argument" -> loader(argument). Synthetic tasks register here.
PARAMETRISED_CORPORA: dict[str, Callable[[str], Corpus]] = {}


def load_corpus(spec: str) -> Corpus:
    """A corpus by name (pydoc, tinyshakespeare), by "prefix:argument" (copy:8), or by file path."""
    if spec in NAMED_CORPORA:
        return NAMED_CORPORA[spec]()
    prefix, sep, argument = spec.partition(":")
    if sep and prefix in PARAMETRISED_CORPORA:
        return PARAMETRISED_CORPORA[prefix](argument)
    return file_corpus(spec)


# ------------------------------------------------------------------------------------------- tokenizer
class CharTokenizer:
    """Characters are the tokens; the vocabulary is the sorted set of the corpus's characters."""

    def __init__(self, vocab: str):
        self.vocab = vocab
        self.stoi = {ch: i for i, ch in enumerate(vocab)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            shown = " ".join(repr(ch) for ch in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            raise ZooError(f"{len(unknown)} character(s) not in the model's vocabulary: {shown}")
        lookup = np.zeros(max(map(ord, self.vocab)) + 1, dtype=np.int64)
        lookup[[ord(ch) for ch in self.vocab]] = np.arange(len(self.vocab))
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # one code point per char, fast
        return torch.from_numpy(lookup[codes])

    def decode(self, ids) -> str:
        return "".join(self.vocab[i] for i in (ids.tolist() if hasattr(ids, "tolist") else ids))


def split(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Contiguous train / val / test = first 90 %, next 5 %, last 5 % (see ``split_bounds``)."""
    return {name: tokens[lo:hi] for name, (lo, hi) in split_bounds(len(tokens)).items()}


def load_splits(spec: str) -> tuple[CharTokenizer, dict[str, torch.Tensor]]:
    """A corpus's tokenizer and its encoded train / val / test splits, as every run sees them."""
    text = load_corpus(spec).text
    tokenizer = CharTokenizer.from_text(text)
    return tokenizer, split(tokenizer.encode(text))


# ------------------------------------------------------------------------------------------ batching
def step_generator(seed: int, step: int) -> torch.Generator:
    """A torch generator whose state is a pure function of (seed, step)."""
    entropy = np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(entropy[0]) << 32 | int(entropy[1]))


def window_batch(tokens: torch.Tensor, block_size: int, batch_size: int, seed: int, step: int, starts: torch.Tensor | None = None):
    """Random windows for step ``step``: x = tokens[i : i+T], y = tokens[i+1 : i+T+1]; i uniform over every
    start, or over ``starts`` only (the windows a ``--data.select`` rule kept)."""
    if starts is None:
        starts = torch.randint(0, len(tokens) - block_size, (batch_size,), generator=step_generator(seed, step))  # (B,)
    else:
        starts = starts[torch.randint(0, len(starts), (batch_size,), generator=step_generator(seed, step))]  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    x = tokens[starts[:, None] + offsets]  # (B, T)
    y = tokens[starts[:, None] + offsets + 1]  # (B, T)
    return x, y


# --8<-- [start:stream_batch]
def stream_batch(tokens: torch.Tensor, block_size: int, batch_size: int, step: int):
    """Chunk ``step`` of ``batch_size`` contiguous streams, for truncated BPTT.

    The train split is cut into B equal streams; step s reads chunk s mod (chunks per stream) of each,
    so the hidden state at the end of one step is the right start for the next. ``reset`` is True on
    the first chunk of a pass, where the carried state must be dropped.
    """
    stream_len = (len(tokens) - 1) // batch_size
    chunks = stream_len // block_size
    if chunks < 1:
        raise ZooError(f"train split too short for {batch_size} streams of {block_size}-token chunks")
    chunk = step % chunks
    starts = torch.arange(batch_size) * stream_len + chunk * block_size  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    x = tokens[starts[:, None] + offsets]  # (B, T)
    y = tokens[starts[:, None] + offsets + 1]  # (B, T)
    return x, y, torch.tensor(chunk == 0)
# --8<-- [end:stream_batch]


class StepBatches(IterableDataset):
    """Yields the batch of every step from ``start_step`` on, forever; the trainer stops at max_steps.

    With several ranks, the global batch of ``batch_size * world_size`` rows is drawn once from
    (seed, step) and rank r keeps rows r, r + world, ...: more devices = the same data, sharded.
    """

    def __init__(self, tokens, block_size, batch_size, seed, streams, start_step=0, rank=0, world_size=1, starts=None):
        super().__init__()
        self.tokens, self.block_size, self.batch_size, self.seed, self.starts = tokens, block_size, batch_size, seed, starts
        self.streams, self.start_step, self.rank, self.world_size = streams, start_step, rank, world_size

    def batch(self, step: int):
        rows = self.batch_size * self.world_size
        if self.streams:
            x, y, reset = stream_batch(self.tokens, self.block_size, rows, step)
            return x[self.rank::self.world_size], y[self.rank::self.world_size], reset
        x, y = window_batch(self.tokens, self.block_size, rows, self.seed, step, self.starts)
        return x[self.rank::self.world_size], y[self.rank::self.world_size]

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


class TextDataModule(L.LightningDataModule):
    """Loads a corpus, builds the tokenizer and splits, and serves step-indexed batches."""

    def __init__(self, corpus: str = DEFAULT_CORPUS, block_size: int = 64, batch_size: int = 32, seed: int = 0,
                 streams: bool = False, val_batch_size: int | None = None, tokenizer: CharTokenizer | None = None,
                 noise: str = "none", noise_fraction: float = 0.0, noise_span: int = 0, select: str = "none",
                 select_drop: float = 0.0):
        super().__init__()
        if block_size < 1 or batch_size < 1:
            raise ZooError(f"block_size and batch_size must be >= 1 (got {block_size}, {batch_size})")
        self.corpus_spec, self.block_size, self.batch_size = corpus, block_size, batch_size
        self.seed, self.streams = seed, streams
        self.val_batch_size = val_batch_size or batch_size
        self.corpus = load_corpus(corpus)
        # A checkpoint brings its own vocabulary; otherwise it is the corpus's character set.
        self.tokenizer = tokenizer or CharTokenizer.from_text(self.corpus.text)
        self.splits = split(self.tokenizer.encode(self.corpus.text))
        # worse training data on request (zoo.corruption); val and test are always the corpus's own
        from zoo.corruption import corrupt

        clean = self.splits["train"]
        other = None
        if noise.startswith("corpus:") and noise != "corpus:":
            try:
                other = load_corpus(noise.removeprefix("corpus:")).text
            except ZooError as e:
                raise ZooError(f"--data.noise {noise}: {e}") from None
        self.splits["train"], self.corruption = corrupt(clean, self.tokenizer.vocab, noise, noise_fraction, noise_span or block_size,
                                                        seed, other)
        # and which windows to learn from (zoo.selection): the starts training may draw, None for all
        from zoo.selection import select as select_windows

        if select != "none" and streams:
            raise ZooError("--data.select draws chosen windows; a stateful rung reads contiguous streams instead (use a windowed rung)")
        self.starts, self.selection = select_windows(self.splits["train"], self.tokenizer.vocab_size, select, select_drop, block_size,
                                                     changed=(self.splits["train"] != clean) if noise != "none" else None)
        shortest = min(self.splits, key=lambda k: len(self.splits[k]))
        if len(self.splits[shortest]) <= block_size + 1:
            raise ZooError(
                f"corpus {corpus!r} is too short for a {block_size}-token window: its {shortest} split has "
                f"{len(self.splits[shortest])} characters (need more than {block_size + 1}; use a longer text or a smaller --data.block_size)"
            )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def split_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}

    def train_dataloader(self):
        trainer = self.trainer
        dataset = StepBatches(
            self.splits["train"], self.block_size, self.batch_size, self.seed, self.streams,
            start_step=trainer.global_step if trainer else 0,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1, starts=self.starts,
        )
        return DataLoader(dataset, batch_size=None)

    def val_dataloader(self):
        """Non-overlapping val windows in order: the quick estimate logged during training."""
        val, T = self.splits["val"], self.block_size
        n = (len(val) - 1) // T
        x = val[: n * T].view(n, T)  # (n, T)
        y = val[1 : n * T + 1].view(n, T)  # (n, T)
        return DataLoader(TensorDataset(x, y), batch_size=self.val_batch_size, shuffle=False)

    def state_dict(self) -> dict:
        return {"corpus_sha256": self.corpus.sha256, "seed": self.seed, "vocab": self.tokenizer.vocab}

    def load_state_dict(self, state: dict) -> None:
        if state.get("corpus_sha256") != self.corpus.sha256 or state.get("vocab") != self.tokenizer.vocab:
            raise ZooError("the checkpoint was trained on a different corpus or vocabulary than this run's data")


# ---- synthetic copy task (copy:D) ----
import functools  # noqa: E402  (kept inside this section: it is self-contained)
import math  # noqa: E402

COPY_LETTERS = "abcd"  # the A = 4 letters; their upper-case forms are the cues
COPY_CUE_P = 0.5  # probability that a free position is a cue (upper case)
COPY_LENGTH = 200_000  # characters per generated text
COPY_SEED = 4  # the generator's fixed seed (combined with D): the same D always gives the same text


def copy_task_text(D: int) -> str:
    """The text of corpus ``copy:D``: a letter must be recalled D steps after it was seen.

    Every position is either *free* or a *recall* position:

    * free: a letter drawn uniformly from ``abcd``; with probability p = 1/2 it is written in upper
      case, which is a *cue*: "the next character is a recall";
    * recall (the position right after a cue): the letter D steps earlier, in lower case —
      ``s[t] = lower(s[t - D])`` — and never a cue itself.

    So where to recall is visible from the previous character alone; *what* to recall is D steps
    back. With D = 3 the text begins ``acBaAbcBbcbcAbcdcdaBd…``: each upper-case letter is followed
    by the letter three places before that follower (``acBa``, ``aAb``, ``cBb``, …). No cue occurs
    before position D - 1, so every recall has a source. The text is 200,000 characters, generated from a fixed seed (``np.random.default_rng([4, D])``):
    deterministic, no download. Vocabulary: ``ABCDabcd``.

    Exact entropies (A = 4 letters, p = 1/2; a recall follows a free position with probability p,
    so a fraction 1/(1+p) = 2/3 of positions are free and p/(1+p) = 1/3 are recalls):

    * memoryless baseline — the best any model can do without seeing s[t - D] (for D >= 2 a bigram,
      which sees only s[t - 1], reaches it):
      free positions cost log A + H(p) = 3 bits, recalls log A = 2 bits (a uniform guess), so
      log A + H(p)/(1+p) = 8/3 ≈ 2.667 bits/char = 1.848 nats/char;
    * oracle — the process itself, which remembers: recalls cost 0, so
      (log A + H(p))/(1+p) = 2 bits/char = 1.386 nats/char.

    The whole gap between the two, 2/3 bit per character, sits at the recall positions.
    ``copy_task_bounds(D, split)`` gives both numbers exactly on a split's actual characters.
    """
    if D < 1:
        raise ZooError(f"copy:D needs a delay D >= 1, got {D}")
    A = len(COPY_LETTERS)
    rng = np.random.default_rng([COPY_SEED, D])
    letters = rng.integers(0, A, COPY_LENGTH).tolist()  # the letter of each free position
    cues = (rng.random(COPY_LENGTH) < COPY_CUE_P).tolist()  # whether a free position is a cue
    codes: list[int] = []  # 0..A-1 lower-case letters, A..2A-1 their upper-case cues
    recall = False  # is this position the one after a cue?
    for t in range(COPY_LENGTH):
        if recall:
            codes.append(codes[t - D] % A)  # the letter D steps back, lower case
            recall = False
        else:
            recall = cues[t] and t >= D - 1  # a cue at t means a recall at t + 1 >= D
            codes.append(letters[t] + (A if recall else 0))
    chars = COPY_LETTERS + COPY_LETTERS.upper()
    return "".join(chars[c] for c in codes)


def copy_task_bounds(D: int, split_name: str = "val") -> dict[str, float]:
    """Exact nats/char of the memoryless baseline and of the oracle on one split of ``copy:D``.

    Averaged over the split's characters after its first (each predicted from everything before it,
    as in every evaluation), with the probabilities of the generating process: a free character costs
    −log(1/A) − log(p or 1−p) for both; a recall costs log A for the memoryless model and 0 for the oracle.
    Also the theoretical per-character values (``*_theory``) that the ``copy_task_text`` docstring derives.
    """
    text = copy_task_text(D)
    A, p = len(COPY_LETTERS), COPY_CUE_P
    is_upper = np.frombuffer(text.encode("ascii"), dtype=np.uint8) < ord("a")  # cues (upper case)
    recall = np.zeros(len(text), dtype=bool)
    recall[1:] = is_upper[:-1]  # the position after a cue
    may_cue = np.arange(len(text)) >= D - 1  # the generator allows cues from position D - 1 on
    case_nats = np.where(may_cue, np.where(is_upper, -math.log(p), -math.log(1 - p)), 0.0)
    free_nats = math.log(A) + case_nats
    memoryless = np.where(recall, math.log(A), free_nats)
    oracle = np.where(recall, 0.0, free_nats)
    bounds = split_bounds(len(text))
    if split_name not in bounds:
        raise ZooError(f"unknown split {split_name!r} (train, val or test)")
    lo, hi = bounds[split_name]
    Hp = -p * math.log(p) - (1 - p) * math.log(1 - p)
    return {
        "memoryless": float(memoryless[lo + 1:hi].mean()),
        "oracle": float(oracle[lo + 1:hi].mean()),
        "memoryless_theory": math.log(A) + Hp / (1 + p),
        "oracle_theory": (math.log(A) + Hp) / (1 + p),
    }


@functools.lru_cache(maxsize=8)
def copy_corpus(argument: str) -> Corpus:
    """``copy:D``: the synthetic recall task with delay D (see ``copy_task_text``)."""
    try:
        D = int(argument)
    except ValueError:
        D = 0
    if not 1 <= D < COPY_LENGTH // 20:
        raise ZooError(f"corpus copy:D needs a whole-number delay 1 <= D < {COPY_LENGTH // 20}, got {argument!r} (e.g. copy:8)")
    return Corpus.from_text(f"copy:{D}", copy_task_text(D))


PARAMETRISED_CORPORA["copy"] = copy_corpus
# ---- end copy task ----


# ---- synthetic long-range recall (recall:D), generated by zoo.recall ----
@functools.lru_cache(maxsize=8)
def recall_corpus(argument: str) -> Corpus:
    """``recall:D``: random passages ``=qkzvbmwe``, each repeated once (``?qkzvbmwe``), half right away and half
    about D characters later (see ``zoo.recall``)."""
    from zoo.recall import parse_recall_argument, recall_task

    D = parse_recall_argument(argument)
    return Corpus.from_text(f"recall:{D}", recall_task(D).text)


PARAMETRISED_CORPORA["recall"] = recall_corpus
# ---- end recall ----
