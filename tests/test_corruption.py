"""--data.noise: the share asked is the share replaced, each kind replaces with what it says, val and test are
never touched, the same seed gives the same data, a run records what was replaced, and resume stays exact."""

import pytest
import torch

import zoo
from conftest import StopAt, cli, one_line
from zoo.corruption import PASSAGES, corrupt
from zoo.data import TextDataModule, load_splits
from zoo.runs import CHECKPOINT, read_checkpoint

VOCAB = "abcdefgh"


def text(n=10_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (n,), generator=g)  # only a-d: anything from e-h was put there by the noise


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 1.0])
def test_the_share_asked_is_the_share_replaced(fraction):
    train = text()
    out, report = corrupt(train, VOCAB, "duplicates", fraction, 50, seed=3)
    assert report["spans"] == 200 and report["replaced_spans"] == round(fraction * 200)
    assert report["replaced_share"] == pytest.approx(fraction)
    changed = (out != train).view(200, 50).any(dim=1)  # a replaced span differs from the original (almost surely)
    assert changed.sum().item() == report["replaced_spans"]
    assert torch.equal(train, text()), "the input split was modified"


def test_random_noise_is_uniform_over_the_vocabulary():
    train = text(100_000)
    out, report = corrupt(train, VOCAB, "random", 0.5, 100, seed=0)
    replaced = (out != train).view(1000, 100).any(dim=1)
    noise = out[: 100_000].view(1000, 100)[replaced].flatten()
    counts = torch.bincount(noise, minlength=len(VOCAB)).float() / len(noise)
    assert torch.allclose(counts, torch.full((8,), 1 / 8), atol=0.01)  # e-h appear only through the noise
    assert report["changed_share"] < report["replaced_share"]  # a random character can equal the one it replaced


def test_duplicates_are_copies_of_a_few_passages_of_the_clean_split():
    train = text()
    out, _ = corrupt(train, VOCAB, "duplicates", 0.5, 40, seed=1)
    spans, clean = out.view(250, 40), train.view(250, 40)
    replaced = [i for i in range(250) if not torch.equal(spans[i], clean[i])]
    distinct = {tuple(spans[i].tolist()) for i in replaced}
    assert len(distinct) <= PASSAGES
    joined = "".join(map(str, train.tolist()))
    assert all("".join(map(str, p)) in joined for p in distinct)  # each passage is a stretch of the clean text


def test_another_corpus_is_its_text_in_this_vocabulary(tmp_path, tiny_corpus):
    other = tmp_path / "other.txt"
    other.write_text("hhhhgggg zz " * 500, encoding="utf-8")  # 'z' and ' ' are not in VOCAB: dropped
    train = text()
    out, report = corrupt(train, VOCAB, f"corpus:{other}", 0.3, 16, seed=2, other_text=other.read_text(encoding="utf-8"))
    replaced = out.view(-1, 16)[(out != train).view(-1, 16).any(dim=1)]
    assert len(replaced) == report["replaced_spans"]
    assert set(replaced.flatten().tolist()) <= {6, 7}  # g and h only
    with pytest.raises(zoo.ZooError, match="corpus:nowhere"):
        TextDataModule(str(tiny_corpus), block_size=16, batch_size=4, noise="corpus:nowhere", noise_fraction=0.3)


def test_same_seed_same_data_other_seed_other_data():
    train = text()
    a, _ = corrupt(train, VOCAB, "random", 0.2, 25, seed=7)
    b, _ = corrupt(train, VOCAB, "random", 0.2, 25, seed=7)
    c, _ = corrupt(train, VOCAB, "random", 0.2, 25, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_val_and_test_are_the_corpus_own(tiny_corpus):
    clean = TextDataModule(str(tiny_corpus), block_size=16, batch_size=4)
    noisy = TextDataModule(str(tiny_corpus), block_size=16, batch_size=4, noise="random", noise_fraction=0.5)
    assert torch.equal(clean.splits["val"], noisy.splits["val"]) and torch.equal(clean.splits["test"], noisy.splits["test"])
    assert not torch.equal(clean.splits["train"], noisy.splits["train"])
    assert noisy.corruption["replaced_share"] == pytest.approx(0.5, abs=0.01)
    _, splits = load_splits(str(tiny_corpus))  # what zoo eval scores: always the clean splits
    assert torch.equal(splits["train"], clean.splits["train"])


def tiny(corpus, **data):
    return zoo.make_config("bigram", "quick", seed=3, overrides={
        "data": {"corpus": str(corpus), "block_size": 16, "batch_size": 8, **data},
        "trainer": {"max_steps": 40, "val_every": 10, "val_batches": 2, "checkpoint_every": 10, "progress_bar": False}})


def test_a_noisy_run_records_what_was_replaced_and_resumes_exactly(tmp_path, tiny_corpus, one_thread):
    noise = {"noise": "duplicates", "noise_fraction": 0.25}
    full = zoo.train(tiny(tiny_corpus, **noise), tmp_path / "full", quiet=True)
    assert full["corruption"]["kind"] == "duplicates" and full["config"]["data"]["noise_fraction"] == 0.25
    assert full["corruption"]["replaced_share"] == pytest.approx(0.25, abs=0.01)
    zoo.train(tiny(tiny_corpus, **noise), tmp_path / "half", callbacks=[StopAt(20)], quiet=True)
    zoo.train(tiny(tiny_corpus, **noise), tmp_path / "half", resume=True, quiet=True)
    a = read_checkpoint(tmp_path / "full" / CHECKPOINT)["state_dict"]
    b = read_checkpoint(tmp_path / "half" / CHECKPOINT)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    clean = zoo.train(tiny(tiny_corpus), tmp_path / "clean", quiet=True)
    assert clean["corruption"] == {"kind": "none"} and clean["val"] != full["val"]
    with pytest.raises(zoo.ZooError):  # the data is part of the run: another noise setting cannot resume it
        zoo.train(tiny(tiny_corpus, noise="random", noise_fraction=0.25), tmp_path / "full", resume=True, quiet=True)


@pytest.mark.parametrize("flags, fragments", [
    (["--data.noise", "bogus"], ["unknown --data.noise 'bogus'"]),
    (["--data.noise", "random", "--data.noise_fraction", "1.5"], ["must be in [0, 1]"]),
    (["--data.noise", "random", "--data.noise_fraction", "nan"], ["noise_fraction"]),
    (["--data.noise", "random"], ["replaces nothing"]),
    (["--data.noise", "corpus:", "--data.noise_fraction", "0.1"], ["needs a corpus name"]),
    (["--data.noise", "corpus:nowhere", "--data.noise_fraction", "0.1"], ["corpus:nowhere"]),
    (["--data.noise", "random", "--data.noise_fraction", "0.1", "--data.noise_span", "-1"], ["noise_span must be >= 0"]),
])
def test_bad_noise_settings_are_one_line_and_write_nothing(tmp_path, tiny_corpus, capsys, flags, fragments):
    code, _, err = cli(capsys, "train", "bigram", "--data", tiny_corpus, "--trainer.max_steps", "2", "--out", tmp_path / "run", *flags)
    one_line(code, err, *fragments)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------- --data.select
from zoo.data import window_batch  # noqa: E402
from zoo.selection import position_losses, select  # noqa: E402


def test_window_batch_draws_only_the_kept_starts_as_a_function_of_seed_and_step():
    tokens = torch.arange(1000)
    kept = torch.tensor([3, 500, 900])
    x, y = window_batch(tokens, 8, 64, seed=1, step=5, starts=kept)
    assert set(x[:, 0].tolist()) <= {3, 500, 900} and torch.equal(y, x + 1)
    again, _ = window_batch(tokens, 8, 64, seed=1, step=5, starts=kept)
    other, _ = window_batch(tokens, 8, 64, seed=1, step=6, starts=kept)
    assert torch.equal(x, again) and not torch.equal(x, other)


def patterned(n=6000, noisy=((2000, 2400), (4000, 4400)), seed=0):
    """'abcd' repeated, with stretches of random letters: the counted n-gram finds the stretches surprising."""
    tokens = torch.arange(n) % 4
    g = torch.Generator().manual_seed(seed)
    changed = torch.zeros(n, dtype=torch.bool)
    for lo, hi in noisy:
        tokens[lo:hi] = torch.randint(0, 8, (hi - lo,), generator=g)
        changed[lo:hi] = True
    return tokens, changed


def test_selection_drops_the_windows_the_ngram_finds_worst():
    tokens, changed = patterned()
    losses = position_losses(tokens, 8, 3)
    assert losses.shape == (len(tokens) - 1,)
    assert losses[changed[1:]].mean() > 10 * losses[~changed[1:]].mean()  # the pattern is cheap, the noise is not
    kept, report = select(tokens, 8, "ngram:3", 0.2, 32, changed=changed)
    assert report["kept"] == len(kept) == report["windows"] - round(0.2 * report["windows"])
    assert report["noisy_share_after"] < report["noisy_share_before"] / 2
    assert report["kept_mean_score_nats"] < report["mean_score_nats"]
    assert report["kept_mean_score_nats"] <= report["lowest_dropped_nats"] + 1e-12  # every kept window scores at most any dropped one
    none, plain = select(tokens, 8, "none", 0.0, 32)
    assert none is None and plain == {"rule": "none"}


def test_a_selected_run_records_its_selection_and_resumes_exactly(tmp_path, tiny_corpus, one_thread):
    options = {"noise": "random", "noise_fraction": 0.2, "select": "ngram:3", "select_drop": 0.25}
    full = zoo.train(tiny(tiny_corpus, **options), tmp_path / "full", quiet=True)
    assert full["selection"]["rule"] == "ngram:3" and full["selection"]["kept_share"] == pytest.approx(0.75, abs=0.01)
    assert full["selection"]["noisy_share_after"] < full["selection"]["noisy_share_before"]
    zoo.train(tiny(tiny_corpus, **options), tmp_path / "half", callbacks=[StopAt(20)], quiet=True)
    zoo.train(tiny(tiny_corpus, **options), tmp_path / "half", resume=True, quiet=True)
    a = read_checkpoint(tmp_path / "full" / CHECKPOINT)["state_dict"]
    b = read_checkpoint(tmp_path / "half" / CHECKPOINT)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("flags, fragments", [
    (["--data.select", "bogus", "--data.select_drop", "0.1"], ["unknown --data.select 'bogus'"]),
    (["--data.select", "ngram:0", "--data.select_drop", "0.1"], ["ngram:K with K in 1..12"]),
    (["--data.select", "ngram:x", "--data.select_drop", "0.1"], ["ngram:K"]),
    (["--data.select", "ngram:3", "--data.select_drop", "1"], ["select_drop must be in [0, 1)"]),
    (["--data.select", "ngram:3"], ["drops nothing"]),
])
def test_bad_selection_settings_are_one_line_and_write_nothing(tmp_path, tiny_corpus, capsys, flags, fragments):
    code, _, err = cli(capsys, "train", "bigram", "--data", tiny_corpus, "--trainer.max_steps", "2", "--out", tmp_path / "run", *flags)
    one_line(code, err, *fragments)
    assert not (tmp_path / "run").exists()


def test_selection_refuses_a_stateful_rung(tmp_path, tiny_corpus, capsys):
    code, _, err = cli(capsys, "train", "lstm", "--data", tiny_corpus, "--trainer.max_steps", "2", "--out", tmp_path / "run",
                       "--data.select", "ngram:3", "--data.select_drop", "0.1")
    one_line(code, err, "contiguous streams")
    assert not (tmp_path / "run").exists()
