"""`zoo export --format hf` (issue 19): a gpt run loads in transformers as a Llama model with the same
logits, a tokenizer that round-trips the corpus, and greedy generation that matches zoo's; what cannot be
exported is one line. The transformers tests are skipped, with the reason, where the hf extra is not
installed (CI installs it)."""

import sys

import pytest
import torch

import zoo
from zoo.data import CharTokenizer, load_corpus
from zoo.export import export_hf
from zoo.generate import Decoding, decode
from zoo.registry import build

from test_cli import assert_one_line_error, run

needs_hf = pytest.mark.skipif(any(__import__("importlib").util.find_spec(m) is None for m in ("transformers", "tokenizers", "safetensors")),
                              reason='the hf extra is not installed (pip install -e ".[hf]")')


def random_gpt(vocab, tie=True, n_layer=2, seed=0, **options):
    """A gpt with every weight random (zoo's init zeroes the output projections: blocks would be the identity)."""
    torch.manual_seed(seed)
    model = build("gpt", vocab_size=len(vocab), block_size=32, n_layer=n_layer, n_head=4, n_embd=32, tie_embeddings=tie, **options)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


@needs_hf
@pytest.mark.parametrize("tie, n_layer", [(True, 2), (False, 2), (True, 0)])
def test_exported_logits_equal_zoos(tmp_path, tie, n_layer):
    from transformers import AutoModelForCausalLM

    vocab = list("\n !',.:;?abcdefghijklmnopqrstuvwxyzABCDEFGHIJ")
    model = random_gpt(vocab, tie=tie, n_layer=n_layer)
    out = export_hf(model, vocab, "gpt", tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.config.tie_word_embeddings == tie
    idx = torch.randint(0, len(vocab), (4, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
    assert theirs.shape == ours.shape
    assert torch.allclose(theirs, ours, atol=1e-5, rtol=0), (theirs - ours).abs().max()


@needs_hf
def test_tokenizer_round_trips_the_corpus_and_greedy_generation_matches(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = load_corpus("tinyshakespeare").text
    tokenizer = CharTokenizer.from_text(text)
    model = random_gpt(tokenizer.vocab, seed=3)
    out = export_hf(model, list(tokenizer.vocab), "gpt", tmp_path / "hf")
    hf_tok, hf = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out).eval()
    ids = hf_tok(text, add_special_tokens=False)["input_ids"]
    assert ids == tokenizer.encode(text).tolist()  # every character, the run's own ids
    assert hf_tok.decode(ids) == text  # no spaces inserted, nothing cleaned up
    prompt = "ROMEO:\nWhat "
    with torch.no_grad():
        ids = torch.tensor([tokenizer.encode(prompt).tolist()])
        # attention_mask given: a pad id would be taken for padding wherever it occurs, and every id is a character
        generated = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32 - len(prompt), do_sample=False)
    ours = decode(model, tokenizer, prompt, 32 - len(prompt), Decoding("greedy"), block_size=32).text
    assert hf_tok.decode(generated[0, len(prompt):]) == ours  # within the block size the two models agree


@needs_hf
def test_cli_exports_a_trained_run(tmp_path, tiny_corpus, capsys):
    from transformers import AutoModelForCausalLM

    code, _, err = run(capsys, "train", "gpt", "--data", tiny_corpus, "--out", tmp_path / "run", "--quiet", "--trainer.max_steps", "3",
                       "--trainer.val_every", "3", "--trainer.val_batches", "1", "--model.n_layer", "1", "--model.n_embd", "16")
    assert code == 0, err
    code, out, err = run(capsys, "export", tmp_path / "run", tmp_path / "hf")
    assert code == 0, err
    assert "AutoModelForCausalLM.from_pretrained" in out and (tmp_path / "hf" / "tokenizer.json").is_file()
    loaded = zoo.load_run(tmp_path / "run")
    idx = loaded.tokenizer.encode("the cat sat on a mat.")[None]
    with torch.no_grad():
        assert torch.allclose(AutoModelForCausalLM.from_pretrained(tmp_path / "hf")(idx).logits, loaded.model(idx), atol=1e-5)
    assert_one_line_error(*run(capsys, "export", tmp_path / "run", tmp_path / "hf")[::2], "already exists")


def test_export_bad_inputs(tmp_path, tiny_corpus, capsys, monkeypatch):
    code, _, err = run(capsys, "train", "bigram", "--data", tiny_corpus, "--out", tmp_path / "bigram", "--quiet", "--trainer.max_steps", "2",
                       "--trainer.val_every", "2", "--trainer.val_batches", "1")
    assert code == 0, err
    assert_one_line_error(*run(capsys, "export", tmp_path / "bigram", tmp_path / "out", "--format", "onnx")[::2], "--format must be one of hf")
    assert_one_line_error(*run(capsys, "export", tmp_path / "missing", tmp_path / "out")[::2])
    if "transformers" in sys.modules or __import__("importlib").util.find_spec("transformers"):
        assert_one_line_error(*run(capsys, "export", tmp_path / "bigram", tmp_path / "out")[::2], "only gpt runs", "'bigram'")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    assert_one_line_error(*run(capsys, "export", tmp_path / "bigram", tmp_path / "out")[::2], 'pip install -e ".[hf]"')
    assert not (tmp_path / "out").exists()


@needs_hf
@pytest.mark.parametrize("switch", [{"norm": "layernorm"}, {"prenorm": False}, {"positions": "sinusoidal"}, {"mlp": "relu"},
                                    {"bias": True}, {"qk_norm": True}])
def test_a_gpt_that_is_not_a_llama_is_refused(tmp_path, switch):
    vocab = list("abcdefgh")
    model = random_gpt(vocab, **switch)
    with pytest.raises(zoo.ZooError, match="not a Llama"):
        export_hf(model, vocab, "gpt", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
