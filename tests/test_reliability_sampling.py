"""Sampling (issue 10, items 7 and 9): linear in the number of tokens, streamed, stops on Ctrl-C, the same
text as before for a given seed, and a default prompt every vocabulary has."""

import os
import select
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch.nn import functional as F

import zoo
from zoo.cli import main
from zoo.data import CharTokenizer
from zoo.generate import Decoding, filter_logits, generate, sample
from zoo.registry import build

VOCAB = "\nabcdefgh ."


@torch.no_grad()
def reference_sample(model, tokenizer, prompt, tokens, temperature=1.0, top_k=None, top_p=None, seed=0, block_size=None):
    """zoo.generate.sample as it was before issue 10 (it re-concatenated the whole history every step):
    the committed book samples were drawn with it, so the new loop must draw exactly the same text."""
    idx = tokenizer.encode(prompt)
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    stateful = getattr(model, "stateful", False)
    window = block_size or getattr(model, "context_length", None) or len(idx) + tokens
    out, state = [], None
    context = idx[None]
    for _ in range(tokens):
        if stateful:
            logits, state = model(context, state)
        else:
            logits = model(context[:, -window:])
        probs = F.softmax(filter_logits(logits[0, -1].float(), temperature, top_k, top_p), dim=-1)
        next_id = torch.multinomial(probs, 1, generator=generator)
        out.append(int(next_id))
        context = next_id[None] if stateful else torch.cat([context, next_id[None]], dim=1)
    return tokenizer.decode(out)


def tiny_model(rung, block_size=8):
    tokenizer = CharTokenizer(VOCAB)
    options = {
        "bigram": {},
        "ngram": {"order": 3},
        "rnn": {"n_embd": 8, "n_hidden": 16},
        "lstm": {"n_embd": 8, "n_hidden": 16},
        "gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16},
        "bengio-mlp": {"context": 4, "n_embd": 8, "n_hidden": 16},
    }[rung]
    torch.manual_seed(0)
    model = build(rung, vocab_size=tokenizer.vocab_size, block_size=block_size, **options)
    if rung == "bigram":  # it starts at the uniform table: give it something to say
        torch.nn.init.normal_(model.table.weight)
    if rung == "ngram":
        model.fit(tokenizer.encode("abc abd bca. hag\nfed cab. " * 20))
    return model, tokenizer


@pytest.mark.parametrize("rung", ["bigram", "ngram", "rnn", "lstm", "gpt", "bengio-mlp"])
@pytest.mark.parametrize("seed, settings", [(0, {}), (5, {"temperature": 0.7, "top_k": 4, "top_p": 0.9})])
def test_same_text_as_before_for_every_seed(rung, seed, settings):
    model, tokenizer = tiny_model(rung)
    for prompt in ("a", "abc. fed cab hag bad"):  # shorter and longer than the window of 8
        expected = reference_sample(model, tokenizer, prompt, 60, seed=seed, block_size=8, **settings)
        assert sample(model, tokenizer, prompt, 60, seed=seed, block_size=8, **settings) == expected


class Recorder(torch.nn.Module):
    """Wraps a rung and records, for every call, the length fed and the tokens its input's storage holds."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []
        self.stateful = getattr(model, "stateful", False)
        self.context_length = getattr(model, "context_length", None)

    def forward(self, idx, *state):
        self.calls.append((idx.shape[1], idx.untyped_storage().nbytes() // idx.element_size()))
        return self.model(idx, *state)


@pytest.mark.parametrize("rung", ["gpt", "rnn"])
def test_each_step_is_fed_a_bounded_context(rung):
    """The cost of a step must not grow with the text so far: a windowed rung is fed at most its window,
    from a buffer of at most that length (a slice of the whole history would still hold all of it), and
    a stateful rung, after the prompt, one token at a time."""
    model, tokenizer = tiny_model(rung)
    recorder = Recorder(model)
    prompt = "abc. fed cab hag bad"  # 20 characters, longer than the window
    text = sample(recorder, tokenizer, prompt, 300, block_size=8)
    assert len(text) == 300 and len(recorder.calls) == 300
    if rung == "rnn":
        assert recorder.calls[0][0] == len(prompt)
        assert all(fed == 1 and held <= 1 for fed, held in recorder.calls[1:])
    else:
        assert all(fed <= 8 and held <= len(prompt) for fed, held in recorder.calls), max(recorder.calls)
        assert all(held <= 8 for _, held in recorder.calls[1:]), max(recorder.calls)


def test_generate_yields_as_it_goes_and_checks_arguments_first():
    model, tokenizer = tiny_model("bigram")
    recorder = Recorder(model)
    characters = generate(recorder, tokenizer, "a", 1000, block_size=8)
    assert next(characters) in VOCAB and len(recorder.calls) == 1  # one character, one step: nothing ahead
    characters.close()
    with pytest.raises(zoo.ZooError, match="temperature"):
        generate(recorder, tokenizer, "a", 10, Decoding(temperature=0))  # raised before any output
    with pytest.raises(zoo.ZooError, match="not in the model's vocabulary"):
        generate(recorder, tokenizer, "Z", 10)


@pytest.fixture
def bigram_run(tmp_path, tiny_corpus, one_thread):
    config = zoo.make_config("bigram", "quick", overrides={
        "data": {"corpus": str(tiny_corpus), "block_size": 8, "batch_size": 4},
        "trainer": {"max_steps": 2, "val_every": 2, "val_batches": 1, "progress_bar": False}})
    zoo.train(config, tmp_path / "run", quiet=True)
    return tmp_path / "run"


def test_sample_streams_and_stops_cleanly_on_ctrl_c(bigram_run):
    """A long `zoo sample` prints as it goes; Ctrl-C keeps what was printed, one line on stderr, exit 130."""
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "sample", str(bigram_run), "--tokens", "100000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        got, deadline = b"", time.monotonic() + 60
        while len(got) < 200 and time.monotonic() < deadline:  # the old command printed nothing until the end
            if select.select([proc.stdout], [], [], 1)[0]:
                got += os.read(proc.stdout.fileno(), 4096)
        assert len(got) >= 200, "nothing streamed"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "interrupted after" in lines[0], err.decode()
    assert len(got + out) > 200


def test_default_prompt_of_a_vocabulary_without_newline(tmp_path, one_thread, capsys):
    """copy:D has no newline: `zoo sample RUN` with default arguments used to fail on the prompt."""
    config = zoo.make_config("bigram", "quick", overrides={
        "data": {"corpus": "copy:3", "block_size": 8, "batch_size": 4},
        "trainer": {"max_steps": 2, "val_every": 2, "val_batches": 1, "progress_bar": False}})
    zoo.train(config, tmp_path / "run", quiet=True)
    code = main(["sample", str(tmp_path / "run"), "--tokens", "20"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("A") and len(out) == 1 + 20 + 1  # the vocabulary's first character, 20 more, a newline
    assert (tmp_path / "run" / "samples.txt").read_text() == sample(
        zoo.load_run(tmp_path / "run").model, zoo.load_run(tmp_path / "run").tokenizer, None, 500, seed=0, block_size=8)
