"""Issue 10, item 10: a stateful rung resumed mid-stream is bit-identical to the uninterrupted run (its
TBPTT state travels in the checkpoint), and the final scores cover every target of val and test once."""

import json

import pytest
import torch
from conftest import StopAt
from torch.nn import functional as F

import zoo
from zoo.data import TextDataModule
from zoo.harness import LanguageModel
from zoo.runs import CHECKPOINT, read_checkpoint

STOP = 20


def tiny(corpus, rung):
    return zoo.make_config(rung, "quick", seed=3, overrides={
        "model": {"rnn": {"n_embd": 8, "n_hidden": 16}, "lstm": {"n_embd": 8, "n_hidden": 16},
                  "memory-gpt": {"n_embd": 16, "memory_size": 24, "memory_topk": 4}}.get(rung, {}),
        "data": {"corpus": str(corpus), "block_size": 16, "batch_size": 8},
        "trainer": {"max_steps": 40, "val_every": 10, "val_batches": 2, "checkpoint_every": 10, "progress_bar": False}})


def interrupted_and_resumed(tmp_path, corpus, rung):
    config = tiny(corpus, rung)
    zoo.train(config, tmp_path / "half", callbacks=[StopAt(STOP)], quiet=True)
    assert read_checkpoint(tmp_path / "half" / CHECKPOINT)["global_step"] == STOP
    return zoo.train(config, tmp_path / "half", resume=True, quiet=True)


@pytest.mark.parametrize("rung", ["rnn", "lstm", "memory-gpt"])
def test_stateful_resume_mid_stream_equals_uninterrupted(tmp_path, tiny_corpus, one_thread, rung):
    config = tiny(tiny_corpus, rung)
    data = TextDataModule(str(tiny_corpus), 16, 8, streams=True)
    chunks = (len(data.splits["train"]) - 1) // 8 // 16
    assert STOP % chunks != 0, "the interruption must fall inside a pass, where the carried state matters"
    full = zoo.train(config, tmp_path / "full", quiet=True)
    assert read_checkpoint(tmp_path / "full" / CHECKPOINT)["tbptt_state"] is not None
    resumed = interrupted_and_resumed(tmp_path, tiny_corpus, rung)
    a, b = (read_checkpoint(tmp_path / d / CHECKPOINT)["state_dict"] for d in ("full", "half"))
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    assert resumed["val"] == full["val"] and resumed["test"] == full["test"]


def test_stateful_resume_needs_the_saved_state(tmp_path, tiny_corpus, one_thread, monkeypatch):
    """The test above can fail: resuming from a zero state instead of the saved one changes the weights."""
    full = zoo.train(tiny(tiny_corpus, "rnn"), tmp_path / "full", quiet=True)
    monkeypatch.setattr(LanguageModel, "on_load_checkpoint", lambda self, checkpoint: None)
    resumed = interrupted_and_resumed(tmp_path, tiny_corpus, "rnn")
    assert resumed["val"] != full["val"]


def reference_nats(model, tokens):
    """Mean next-token loss over every target 1..n-1 of ``tokens``, from one pass over the whole split
    (each rung here sees no more context than the protocol gives it, so the numbers must agree)."""
    model.eval()
    with torch.no_grad():
        out = model(tokens[None, :-1])
        logits = out[0] if isinstance(out, tuple) else out  # (1, n-1, V)
    return F.cross_entropy(logits[0].double(), tokens[1:], reduction="mean").item()


@pytest.mark.parametrize("rung", ["bigram", "ngram", "rnn"])
def test_final_scores_cover_every_target_of_val_and_test(tmp_path, tiny_corpus, one_thread, rung):
    config = tiny(tiny_corpus, rung)
    if rung == "ngram":
        config.data.block_size = 33  # an odd window: the last, partial window must not drop or repeat targets
    metrics = zoo.train(config, tmp_path / "run", quiet=True)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    run = zoo.load_run(tmp_path / "run")
    data = TextDataModule(str(tiny_corpus), config.data.block_size, 8, tokenizer=run.tokenizer)
    for split in ("val", "test"):
        assert saved[split]["tokens"] == saved["splits"][split] - 1 == len(data.splits[split]) - 1
        assert metrics[split]["nats"] == pytest.approx(reference_nats(run.model, data.splits[split]), rel=1e-9)
