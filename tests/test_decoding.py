"""Decoding strategies (issue 13): each one is what its paper says, on every kind of rung — stateless,
stateful and count-based — and `zoo sample`'s flags refuse what does not go together."""

import itertools
import math

import pytest
import torch
from torch.nn import functional as F

import zoo
from zoo.cli import main
from zoo.data import CharTokenizer
from zoo.generate import Decoded, Decoding, decode, filter_logits, penalize
from zoo.registry import build

from test_cli import assert_one_line_error, run

VOCAB = "\nabcdefgh ."
RUNGS = ["bigram", "ngram", "lstm", "gpt", "bengio-mlp"]
PROMPTS = ["a", "abc. fed cab hag bad", "\n"]


def tiny_model(rung, block_size=8):
    """A small rung with weights that say something (random, or counted from a short text)."""
    tokenizer = CharTokenizer(VOCAB)
    options = {"bigram": {}, "ngram": {"order": 3}, "lstm": {"n_embd": 8, "n_hidden": 16},
               "gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16}, "bengio-mlp": {"context": 4, "n_embd": 8, "n_hidden": 16}}[rung]
    torch.manual_seed(0)
    model = build(rung, vocab_size=tokenizer.vocab_size, block_size=block_size, **options)
    if rung == "bigram":  # it starts at the uniform table
        torch.nn.init.normal_(model.table.weight)
    if rung == "gpt":  # a freshly initialised gpt is near uniform: sharpen it so that greedy and beam differ
        torch.nn.init.normal_(model.lm_head.weight, std=0.3)
    if rung == "ngram":
        model.fit(tokenizer.encode("abc abd bca. hag\nfed cab. " * 20))
    return model.eval(), tokenizer


@torch.no_grad()
def nats_of(model, tokenizer, prompt, text, block_size=8):
    """-Σ log p(c_t | c_<t) of ``text`` after ``prompt``, feeding the whole history every step (an independent
    reference for the windowed / stateful feeding of zoo.generate)."""
    ids = tokenizer.encode(prompt + text).tolist()
    total = 0.0
    for t in range(len(prompt), len(ids)):
        context = torch.tensor([ids[:t]])
        if getattr(model, "stateful", False):
            logits = model(context)[0]
        else:
            logits = model(context[:, -block_size:])
        total -= float(F.log_softmax(logits[0, -1].float(), -1)[ids[t]])
    return total


# ------------------------------------------------------------------------------------- the filters
def test_top_p_keeps_the_smallest_set_that_reaches_p():
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])  # sorted: 0.5, 0.3, 0.15, 0.05
    logits = probs.log()
    kept = lambda **kw: set(torch.isfinite(filter_logits(logits, **kw)).nonzero().flatten().tolist())  # noqa: E731
    assert kept(top_p=0.4) == {1}  # 0.5 alone reaches 0.4
    assert kept(top_p=0.5) == {1}
    assert kept(top_p=0.79) == {1, 3}
    assert kept(top_p=0.9) == {1, 3, 0}
    assert kept(top_p=0.97) == {0, 1, 2, 3}
    assert kept(top_p=1.0) == {0, 1, 2, 3}
    assert kept(top_k=2) == {1, 3}
    assert kept(min_p=0.5) == {1, 3}  # at least half of the largest, 0.5
    assert kept(min_p=0.2) == {0, 1, 3}
    assert kept(top_k=3, top_p=0.6) == {1, 3}  # filters compose


def test_temperature_scales_the_logits():
    logits = torch.tensor([1.0, -2.0, 0.5])
    assert torch.allclose(filter_logits(logits, temperature=0.5), logits * 2)
    assert torch.equal(filter_logits(logits), logits)


def test_repetition_penalty_is_ctrls():
    """Seen characters: positive logits divided by θ, negative ones multiplied; unseen ones untouched."""
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    seen = torch.tensor([True, True, False, False])
    assert penalize(logits, seen, 2.0).tolist() == [1.0, -2.0, 0.5, -3.0]
    assert torch.equal(penalize(logits, seen, None), logits)
    p0, p1 = F.softmax(logits, -1), F.softmax(penalize(logits, seen, 2.0), -1)
    assert (p1[:2] < p0[:2]).all() and (p1[2:] > p0[2:]).all()  # θ > 1: what was seen is less likely


# ------------------------------------------------------------------------------ strategies, every rung
@pytest.mark.parametrize("rung", RUNGS)
def test_greedy_takes_the_argmax_and_beam_of_one_is_greedy(rung):
    model, tokenizer = tiny_model(rung)
    for prompt in PROMPTS:
        greedy = decode(model, tokenizer, prompt, 30, Decoding("greedy"), block_size=8)
        ids = tokenizer.encode(prompt).tolist()
        for ch in greedy.text:  # every character is the most likely one given everything before it
            context = torch.tensor([ids])
            logits = model(context)[0] if getattr(model, "stateful", False) else model(context[:, -8:])
            assert int(logits[0, -1].argmax()) == tokenizer.stoi[ch]
            ids.append(tokenizer.stoi[ch])
        beam1 = decode(model, tokenizer, prompt, 30, Decoding("beam", beam=1), block_size=8)
        assert beam1.text == greedy.text
        assert beam1.nats == pytest.approx(greedy.nats, rel=1e-9)
        assert greedy.nats == pytest.approx(nats_of(model, tokenizer, prompt, greedy.text), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("rung", RUNGS)
def test_beam_is_at_least_as_likely_as_greedy_here(rung):
    """On these models, for these prompts and widths, beam search finds a text at least as likely as
    greedy's (not a theorem: see test_beam_search_can_lose_to_greedy), and reports its likelihood right."""
    model, tokenizer = tiny_model(rung)
    for prompt, width in itertools.product(PROMPTS, (2, 4, 8)):
        greedy = decode(model, tokenizer, prompt, 24, Decoding("greedy"), block_size=8)
        beam = decode(model, tokenizer, prompt, 24, Decoding("beam", beam=width), block_size=8)
        assert len(beam.text) == 24
        assert beam.nats <= greedy.nats + 1e-9, (prompt, width)
        assert beam.nats == pytest.approx(nats_of(model, tokenizer, prompt, beam.text), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("rung", ["ngram", "lstm", "gpt"])
def test_a_beam_as_wide_as_every_prefix_is_exact(rung):
    """With width V^(L-1) nothing is ever pruned: beam search returns the most likely of all V^L texts."""
    model, tokenizer = tiny_model(rung)
    V, L = tokenizer.vocab_size, 3
    for prompt in ("a", "fed c"):
        best = min(("".join(t) for t in itertools.product(tokenizer.vocab, repeat=L)),
                   key=lambda text: nats_of(model, tokenizer, prompt, text))
        beam = decode(model, tokenizer, prompt, L, Decoding("beam", beam=V ** (L - 1)), block_size=8)
        assert beam.text == best
        assert beam.nats == pytest.approx(nats_of(model, tokenizer, prompt, best), rel=1e-5)


class Table(torch.nn.Module):
    """A model that reads its next-character distribution from a table keyed by the whole prefix after the
    prompt 'x'; a prefix not in the table predicts uniformly."""

    stateful, context_length = False, None

    def __init__(self, tokenizer, table):
        super().__init__()
        self.tokenizer, self.table = tokenizer, table

    def forward(self, idx):
        out = torch.zeros(idx.shape[0], idx.shape[1], self.tokenizer.vocab_size)  # (B, T, V)
        for b in range(idx.shape[0]):
            row = self.table.get(self.tokenizer.decode(idx[b])[1:])
            if row is not None:
                out[b, -1] = -1e9
                for ch, p in row.items():
                    out[b, -1, self.tokenizer.stoi[ch]] = math.log(p)
        return out


def test_beam_search_can_lose_to_greedy():
    """Beam search is a heuristic, not an exact search. Greedy: a (.4), a (.4), a (1) -> .16. Width 2 keeps
    a and b after one step; after two, ba and bb (.19 each) beat greedy's aa (.16), which is dropped; both
    then continue uniformly (.25): .0475, less likely than greedy's text. Width 3 keeps aa and finds it."""
    tokenizer = CharTokenizer("xabcd")
    quarter = {c: 0.25 for c in "abcd"}
    model = Table(tokenizer, {"": {"a": 0.4, "b": 0.38, "c": 0.22}, "a": {"a": 0.4, "b": 0.3, "c": 0.3}, "aa": {"a": 1.0},
                              "b": {"a": 0.5, "b": 0.5}, "ba": quarter, "bb": quarter})
    greedy = decode(model, tokenizer, "x", 3, Decoding("greedy"))
    assert greedy.text == "aaa" and math.exp(-greedy.nats) == pytest.approx(0.16)
    narrow = decode(model, tokenizer, "x", 3, Decoding("beam", beam=2))
    assert narrow.text[:2] in ("ba", "bb") and math.exp(-narrow.nats) == pytest.approx(0.38 * 0.5 * 0.25)
    assert narrow.nats > greedy.nats  # beam search returned a less likely text than greedy's
    wide = decode(model, tokenizer, "x", 3, Decoding("beam", beam=3))
    assert wide.text == "aaa" and wide.nats == pytest.approx(greedy.nats)


@pytest.mark.parametrize("rung", RUNGS)
def test_temperature_towards_zero_is_greedy(rung):
    """As T -> 0 a sample takes a most likely character at every step: greedy's text, where the model has
    no ties (a counted model has exact ones, between which a sample may take either)."""
    model, tokenizer = tiny_model(rung)
    for prompt in PROMPTS:
        greedy = decode(model, tokenizer, prompt, 30, Decoding("greedy"), block_size=8).text
        for cold in (Decoding("sample", temperature=1e-4), Decoding("sample", top_k=1), Decoding("sample", min_p=1.0)):
            text = decode(model, tokenizer, prompt, 30, cold, seed=3, block_size=8).text
            ids = tokenizer.encode(prompt).tolist()
            for ch in text:
                context = torch.tensor([ids])
                logits = (model(context)[0] if getattr(model, "stateful", False) else model(context[:, -8:]))[0, -1]
                assert logits[tokenizer.stoi[ch]] >= logits.max() - 1e-6
                ids.append(tokenizer.stoi[ch])
            if rung != "ngram":
                assert text == greedy


@pytest.mark.parametrize("rung", RUNGS)
def test_every_strategy_is_reproducible_and_sampling_follows_the_seed(rung):
    model, tokenizer = tiny_model(rung)
    settings = [Decoding("greedy"), Decoding("beam", beam=3), Decoding("greedy", repetition_penalty=1.5),
                Decoding("sample", temperature=0.8, top_p=0.9, min_p=0.05, repetition_penalty=1.2)]
    for d in settings:
        first = decode(model, tokenizer, "abc", 40, d, seed=1, block_size=8)
        assert decode(model, tokenizer, "abc", 40, d, seed=1, block_size=8) == first
    sampled = {decode(model, tokenizer, "abc", 40, Decoding("sample"), seed=s, block_size=8).text for s in range(4)}
    assert len(sampled) > 1


@pytest.mark.parametrize("rung", ["gpt", "lstm", "ngram"])
def test_greedy_with_a_penalty_takes_the_argmax_of_the_penalised_logits(rung):
    """Every character is the argmax of CTRL-penalised logits, with "seen" recomputed from the text itself;
    θ = 1 changes nothing."""
    model, tokenizer = tiny_model(rung)
    text = decode(model, tokenizer, "ab", 30, Decoding("greedy", repetition_penalty=1.8), block_size=8).text
    ids = tokenizer.encode("ab").tolist()
    for ch in text:
        context = torch.tensor([ids])
        logits = (model(context)[0] if getattr(model, "stateful", False) else model(context[:, -8:]))[0, -1]
        seen = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        seen[ids] = True
        expected = torch.where(seen, torch.where(logits > 0, logits / 1.8, logits * 1.8), logits)
        assert int(expected.argmax()) == tokenizer.stoi[ch]
        ids.append(tokenizer.stoi[ch])
    assert decode(model, tokenizer, "a", 20, Decoding("greedy", repetition_penalty=1.0), block_size=8).text == \
        decode(model, tokenizer, "a", 20, Decoding("greedy"), block_size=8).text


def test_descriptions():
    assert Decoding("greedy").describe() == "greedy"
    assert Decoding("beam").describe() == "beam 4" and Decoding("beam").width == 4
    assert Decoding("sample", 0.8, top_p=0.9, repetition_penalty=1.2).describe() == "sample T=0.8 top-p 0.9 penalty 1.2"
    assert isinstance(decode(*tiny_model("bigram"), "a", 5), Decoded)


# ------------------------------------------------------------------------------------------ the CLI
def test_sample_strategies_from_the_command_line(trained, capsys):
    run_dir = trained[0]
    model, tokenizer = zoo.load_run(run_dir).model, zoo.load_run(run_dir).tokenizer
    for flags, decoding in ((["--strategy", "greedy"], Decoding("greedy")), (["--strategy", "beam", "--beam", "3"], Decoding("beam", beam=3)),
                            (["--min-p", "0.1", "--repetition-penalty", "1.3", "--seed", "4"], Decoding("sample", min_p=0.1, repetition_penalty=1.3))):
        code, out, err = run(capsys, "sample", run_dir, "--prompt", "the ", "--tokens", "25", *flags)
        assert code == 0, err
        seed = 4 if "--seed" in flags else 0
        assert out == "the " + decode(model, tokenizer, "the ", 25, decoding, seed, block_size=zoo.load_run(run_dir).config.data.block_size).text + "\n"


@pytest.mark.parametrize("flags, fragments", [
    (["--strategy", "nucleus"], ["--strategy must be one of", "greedy"]),
    (["--beam", "4"], ["give --strategy beam"]),
    (["--strategy", "beam", "--beam", "0"], ["--beam must be >= 1"]),
    (["--strategy", "greedy", "--temperature", "0.5"], ["--temperature", "does not sample"]),
    (["--strategy", "beam", "--top-k", "5", "--top-p", "0.9"], ["--top-k, --top-p", "does not sample"]),
    (["--min-p", "0"], ["--min-p must be in (0, 1]"]),
    (["--min-p", "1.5"], ["--min-p"]),
    (["--repetition-penalty", "0"], ["--repetition-penalty must be > 0"]),
    (["--top-k", "0"], ["--top-k must be >= 1"]),
    (["--tokens", "-1"], ["--tokens"]),
])
def test_sample_bad_flags(trained, capsys, flags, fragments):
    assert_one_line_error(*run(capsys, "sample", trained[0], *flags)[::2], *fragments)


@pytest.fixture
def trained(tmp_path, tiny_corpus, capsys):
    code, out, err = run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "run", "--trainer.max_steps", "3",
                         "--trainer.val_every", "3", "--trainer.val_batches", "1", "--trainer.progress_bar", "false")
    assert code == 0, err
    return tmp_path / "run", out


def test_main_is_the_cli():
    assert main(["sample", "--help"]) == 0
