"""Decoding text from any rung: greedy, sampling (temperature, top-k, top-p, min-p) and beam search, each
with an optional repetition penalty; seeded, and the same for stateless, stateful and count-based rungs.

With logits z over the vocabulary and the text so far g, one step is:

* **repetition penalty** (Keskar et al. 2019, CTRL, as Hugging Face applies it): for every character c
  already in g (prompt included), z_c ← z_c / θ if z_c > 0 else z_c · θ; θ > 1 makes repeats less likely.
* **temperature** T: z ← z / T (sampling only).
* **top-k** (Fan et al. 2018): keep the k largest z.
* **top-p**, nucleus (Holtzman et al. 2020): sort by probability, keep the smallest prefix whose mass
  reaches p (the first character is always kept).
* **min-p** (Nguyen et al. 2024): keep characters whose probability is at least min_p · p_max.
* then **greedy** takes argmax z; **sample** draws from softmax(z) with a seeded generator; **beam
  search** keeps the N prefixes with the highest Σ log softmax(z) (the penalised log-probabilities, as
  Hugging Face scores beams), extends each by every character, keeps the best N again, and at the end
  returns the best prefix. Texts have no end token, so every beam is exactly ``tokens`` long.

Beam search with N = 1 is greedy. It is not an exact search: with N > 1 it can return a text *less*
likely than greedy's, when greedy's prefix falls out of the beam and the prefixes kept lead nowhere good
(tests/test_decoding.py builds such a model). Only a beam as wide as every prefix is exact.

The filters apply in Hugging Face's order (penalty, temperature, top-k, top-p, min-p), and each decode
also returns the text's log-likelihood under the unfiltered model, so strategies can be compared on it.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
from torch.nn import functional as F

from zoo.errors import ZooError
from zoo.evaluate import eval_mode

STRATEGIES = ("sample", "greedy", "beam")
DEFAULT_BEAM = 4


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How to choose each next character. ``None`` is "not given": temperature 1 for sampling, no filter."""

    strategy: str = "sample"
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    beam: int | None = None  # beam width, only with strategy "beam" (default DEFAULT_BEAM)

    def __post_init__(self):
        """Refuse settings that are out of range or do not go together, with the flag a user gave."""
        if self.strategy not in STRATEGIES:
            raise ZooError(f"--strategy must be one of {', '.join(STRATEGIES)} (got {self.strategy!r})")
        if self.temperature is not None and not self.temperature > 0:
            raise ZooError(f"--temperature must be > 0 (got {self.temperature})")
        if self.top_k is not None and self.top_k < 1:
            raise ZooError(f"--top-k must be >= 1 (got {self.top_k})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ZooError(f"--top-p must be in (0, 1] (got {self.top_p})")
        if self.min_p is not None and not 0 < self.min_p <= 1:
            raise ZooError(f"--min-p must be in (0, 1] (got {self.min_p})")
        if self.repetition_penalty is not None and not self.repetition_penalty > 0:
            raise ZooError(f"--repetition-penalty must be > 0, 1 for none (got {self.repetition_penalty})")
        if self.beam is not None and self.strategy != "beam":
            raise ZooError("--beam is the width of --strategy beam; give --strategy beam too")
        if self.beam is not None and self.beam < 1:
            raise ZooError(f"--beam must be >= 1 (got {self.beam})")
        if self.strategy != "sample":
            given = [flag for flag, value in (("--temperature", self.temperature), ("--top-k", self.top_k),
                                              ("--top-p", self.top_p), ("--min-p", self.min_p)) if value is not None]
            if given:
                raise ZooError(f"{', '.join(given)} shape(s) the distribution sampled from; --strategy {self.strategy} "
                               "does not sample (use --strategy sample)")

    @property
    def width(self) -> int:
        return (self.beam or DEFAULT_BEAM) if self.strategy == "beam" else 1

    def describe(self) -> str:
        """A short label: "greedy", "beam 4", "sample T=0.8 top-p 0.9", with the penalty if any."""
        if self.strategy == "beam":
            parts = [f"beam {self.width}"]
        elif self.strategy == "greedy":
            parts = ["greedy"]
        else:
            parts = [f"sample T={self.temperature if self.temperature is not None else 1.0:g}"]
            parts += [f"{name} {value:g}" for name, value in (("top-k", self.top_k), ("top-p", self.top_p), ("min-p", self.min_p))
                      if value is not None]
        if self.repetition_penalty is not None:
            parts.append(f"penalty {self.repetition_penalty:g}")
        return " ".join(parts)


# --8<-- [start:filters]
def penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float | None) -> torch.Tensor:
    """CTRL's repetition penalty: logits (..., V) of the characters marked in ``seen`` (..., V) divided by
    θ where positive, multiplied by θ where negative, so both become less likely when θ > 1."""
    if penalty is None or penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def filter_logits(logits: torch.Tensor, temperature: float | None = None, top_k: int | None = None,
                  top_p: float | None = None, min_p: float | None = None) -> torch.Tensor:
    """Logits (V,) -> logits scaled by 1/temperature, with the characters the filters drop at -inf."""
    logits = logits / (temperature if temperature is not None else 1.0)
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)  # (V,)
        probs = F.softmax(sorted_logits, dim=-1)  # (V,)
        drop = probs.cumsum(-1) - probs >= top_p  # the mass before a character already reaches p: not needed
        logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    if min_p is not None:
        probs = F.softmax(logits, dim=-1)  # (V,)
        logits = logits.masked_fill(probs < min_p * probs.max(), float("-inf"))
    return logits
# --8<-- [end:filters]


def default_prompt(tokenizer) -> str:
    """The prompt when none is given: a newline (start a fresh line) if the vocabulary has one, else its
    first character; a synthetic corpus such as copy:D has no newline."""
    return "\n" if "\n" in tokenizer.stoi else tokenizer.vocab[0]


@dataclasses.dataclass
class Decoded:
    """A continuation and how likely the model finds it: Σ -log p(c_t | c_<t) under the unfiltered model."""

    text: str
    nats: float

    @property
    def bpc(self) -> float:
        return self.nats / max(1, len(self.text)) / math.log(2)


def sample(model, tokenizer, prompt: str | None = None, tokens: int = 200, temperature: float | None = None,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0, block_size: int | None = None) -> str:
    """Continue ``prompt`` (default: ``default_prompt``) by ``tokens`` sampled characters; returns only the continuation."""
    return decode(model, tokenizer, prompt, tokens, Decoding("sample", temperature, top_k, top_p), seed, block_size).text


def decode(model, tokenizer, prompt: str | None = None, tokens: int = 200, decoding: Decoding = Decoding(),
           seed: int = 0, block_size: int | None = None) -> Decoded:
    """Continue ``prompt`` by ``tokens`` characters chosen as ``decoding`` says; the text and its log-likelihood."""
    idx, tokens = _prepare(tokenizer, prompt, tokens)
    if decoding.strategy == "beam":
        return _beam_search(model, tokenizer, idx, tokens, decoding, block_size)
    steps = list(_steps(model, idx, tokens, decoding, seed, block_size))
    return Decoded("".join(tokenizer.vocab[i] for i, _ in steps), sum(n for _, n in steps))


def generate(model, tokenizer, prompt: str | None = None, tokens: int = 200, decoding: Decoding = Decoding(),
             seed: int = 0, block_size: int | None = None):
    """The characters of ``decode``'s continuation, yielded one at a time as they are chosen (to stream them).

    Each step costs the same however long the text already is: a windowed rung is fed only the last
    ``block_size`` (else ``context_length``) tokens, kept in a buffer of that length, and a stateful rung
    only the token its state has not seen. The arguments are checked here, before the first character.
    Beam search knows its text only at the end, so it yields everything then.
    """
    idx, tokens = _prepare(tokenizer, prompt, tokens)
    if decoding.strategy == "beam":
        return iter(_beam_search(model, tokenizer, idx, tokens, decoding, block_size).text)
    return (tokenizer.vocab[i] for i, _ in _steps(model, idx, tokens, decoding, seed, block_size))


def _prepare(tokenizer, prompt, tokens):
    if tokens < 0:
        raise ZooError(f"--tokens must be >= 0 (got {tokens})")
    prompt = default_prompt(tokenizer) if prompt is None else prompt
    if not prompt:
        raise ZooError("the prompt is empty; give at least one character")
    return tokenizer.encode(prompt), tokens  # (P,), raises on characters outside the vocabulary


class _Feed:
    """Feeds one text to a rung step by step: a stateful rung only what its state has not seen, a windowed
    one the last ``window`` tokens from a buffer of that length, never the whole history."""

    def __init__(self, model, idx: torch.Tensor, block_size: int | None, tokens: int):
        self.model, self.stateful = model, getattr(model, "stateful", False)
        self.window = block_size or getattr(model, "context_length", None) or len(idx) + tokens
        self.context = idx[None] if self.stateful else idx[None, -self.window:]  # (1, P): what the model is fed next
        self.state = None

    def logits(self) -> torch.Tensor:
        """The next character's logits (V,), in float32."""
        if self.stateful:
            logits, self.state = self.model(self.context, self.state)  # feed only what the state has not seen yet
        else:
            logits = self.model(self.context)  # (1, T, V), T <= window
        return logits[0, -1].float()

    def push(self, next_id: torch.Tensor) -> None:
        """next_id (1,): the character chosen."""
        if self.stateful:
            self.context = next_id[None]  # (1, 1)
        else:  # slide the window: drop the oldest token once it is full
            self.context = torch.cat([self.context[:, max(0, self.context.shape[1] - self.window + 1):], next_id[None]], dim=1)


@torch.no_grad()  # on a generator: gradients are off while it runs, not in the caller between characters
def _steps(model, idx, tokens, decoding: Decoding, seed, block_size):
    """Yield (character id, its -log p under the model) for greedy decoding or sampling."""
    generator = torch.Generator().manual_seed(seed)
    feed = _Feed(model, idx, block_size, tokens)
    seen = None
    with eval_mode(model):
        for _ in range(tokens):
            logits = feed.logits()  # (V,)
            if seen is None:
                seen = torch.zeros(logits.numel(), dtype=torch.bool).index_fill_(0, idx, True)  # (V,): the prompt's characters
            nats = -F.log_softmax(logits.double(), dim=-1)  # (V,): the unfiltered model's surprise, in float64 as beams sum it
            logits = penalize(logits, seen, decoding.repetition_penalty)
            if decoding.strategy == "greedy":
                next_id = logits.argmax()[None]  # (1,)
            else:
                probs = F.softmax(filter_logits(logits, decoding.temperature, decoding.top_k, decoding.top_p, decoding.min_p), dim=-1)
                next_id = torch.multinomial(probs, 1, generator=generator)  # (1,)
            seen[next_id] = True
            yield int(next_id), float(nats[next_id])
            feed.push(next_id)


# --8<-- [start:beam]
@torch.no_grad()
def _beam_search(model, tokenizer, idx, tokens, decoding: Decoding, block_size) -> Decoded:
    """Keep the ``width`` most likely prefixes (by penalised log-probability), extend each by every character,
    keep the best ``width`` again; return the best after ``tokens`` steps."""
    with eval_mode(model):
        width, penalty = decoding.width, decoding.repetition_penalty
        beams = [_Feed(model, idx, block_size, tokens)]  # one feed per prefix kept: its window or its state
        chosen = torch.zeros(1, 0, dtype=torch.long)  # (N, t): the characters each beam has chosen
        scores = torch.zeros(1, dtype=torch.float64)  # (N,): Σ penalised log-probabilities
        nats = torch.zeros(1, dtype=torch.float64)  # (N,): Σ -log p under the unfiltered model
        seen = None
        for _ in range(tokens):
            logits = _beam_logits(model, beams)  # (N, V)
            V = logits.shape[1]
            if seen is None:
                seen = torch.zeros(1, V, dtype=torch.bool).index_fill_(1, idx, True)  # (1, V)
            log_p = F.log_softmax(logits.double(), dim=-1)  # (N, V)
            ranked = F.log_softmax(penalize(logits, seen, penalty).double(), dim=-1)  # (N, V)
            total = (scores[:, None] + ranked).flatten()  # (N·V,): every one-character extension
            best = torch.sort(total, descending=True, stable=True).indices[:width]  # ties: the lower index, as argmax
            parent, char = best // V, best % V  # (N',) each
            scores = total[best]
            nats = nats[parent] - log_p[parent, char]
            chosen = torch.cat([chosen[parent], char[:, None]], dim=1)  # (N', t + 1)
            seen = seen[parent].scatter(1, char[:, None], True)  # (N', V)
            beams = [_child(beams[p], c) for p, c in zip(parent.tolist(), char.tolist())]
        top = int(scores.argmax())
        return Decoded("".join(tokenizer.vocab[i] for i in chosen[top].tolist()), float(nats[top]))
# --8<-- [end:beam]


def _beam_logits(model, beams: list[_Feed]) -> torch.Tensor:
    """The next logits (N, V) of every beam: windowed beams in one batch (they are all the same length),
    stateful ones one by one (their states are the rung's own business)."""
    if beams[0].stateful:
        return torch.stack([b.logits() for b in beams])
    return model(torch.cat([b.context for b in beams]))[:, -1].float()  # (N, V)


def _child(parent: _Feed, char: int) -> _Feed:
    """A beam's feed extended by one character. A shallow copy: the parent's context and state tensors are
    shared by its children, which is safe because a feed replaces them, never changes them in place."""
    child = copy.copy(parent)
    child.push(torch.tensor([char]))
    return child
