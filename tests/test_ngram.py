"""The n-gram rung: probabilities equal a slow, obviously-correct reference; distributions normalise; no zeros."""

import io
from collections import Counter, defaultdict
from functools import lru_cache

import numpy as np
import pytest
import torch

from zoo.registry import build
from zoo.models.ngram import NGram


def small_text(n_chars=2500):
    """Real English-like text (Python's own docs, shipped with CPython), a few characters never used."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))[:n_chars]
    vocab = sorted(set(text)) + ["\x00", "\x01"]  # two characters the text never contains
    stoi = {ch: i for i, ch in enumerate(vocab)}
    return torch.tensor([stoi[ch] for ch in text]), len(vocab)


# --------------------------------------------------------------------------------------- reference
def reference_model(x: list[int], V: int, N: int, smoothing: str, k: float = 0.1):
    """P(w | h) written straight from the equations, with dicts and loops (slow, obviously correct)."""
    n = len(x)
    raw = Counter(tuple(x[i : i + j]) for j in range(1, N + 1) for i in range(n - j + 1))
    left = defaultdict(set)  # distinct characters seen in front of each gram; "BOS" = the start of the text
    for j in range(1, N + 1):
        for i in range(n - j + 1):
            left[tuple(x[i : i + j])].add(x[i - 1] if i > 0 else "BOS")

    def c(g):  # the count a gram contributes at its order
        if smoothing == "add-k" or len(g) == N:
            return raw[g]
        return len(left[g])

    def discounts(j):
        grams = [g for g in raw if len(g) == j]
        n1, n2, n3, n4 = (sum(1 for g in grams if c(g) == r) for r in (1, 2, 3, 4))
        if 0 in (n1, n2, n3, n4):
            return (0.75, 0.75, 0.75)
        Y = n1 / (n1 + 2 * n2)
        D1, D2, D3 = 1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3
        if 0 < D1 <= 1 and 0 < D2 <= 2 and 0 < D3 <= 3:
            return (D1, D2, D3)
        return (0.5, 1.0, 1.5)  # out of range: KenLM's fallback for the whole order

    D = {j: discounts(j) for j in range(1, N + 1)}

    @lru_cache(maxsize=None)
    def P(h: tuple) -> tuple:
        """The whole distribution over w for context h (len(h) <= N-1)."""
        lower = P(h[1:]) if len(h) > 0 else tuple([1.0 / V] * V)  # P_0 is uniform
        j = len(h) + 1
        cs = [c(h + (w,)) if h + (w,) in raw else 0 for w in range(V)]
        total = sum(cs)
        if total == 0:
            return lower
        if smoothing == "add-k":
            return tuple((cs[w] + k) / (total + k * V) for w in range(V))
        d = D[j]
        Nr = [sum(1 for v in cs if v == 1), sum(1 for v in cs if v == 2), sum(1 for v in cs if v >= 3)]
        gamma = (d[0] * Nr[0] + d[1] * Nr[1] + d[2] * Nr[2]) / total
        out = []
        for w in range(V):
            disc = 0.0 if cs[w] == 0 else d[min(cs[w], 3) - 1]
            out.append(max(cs[w] - disc, 0) / total + gamma * lower[w])
        return tuple(out)

    return P, D


def model_distribution(model, context: list[int]) -> np.ndarray:
    """The model's P(. | context) read off the last position of a window holding just the context."""
    idx = torch.tensor([context])  # (1, len)
    return model.log_probs(idx)[0, -1].exp().numpy()  # (V,)


# ------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
@pytest.mark.parametrize("order", [1, 3, 4])
def test_matches_reference(order, smoothing):
    x, V = small_text()
    model = build("ngram", vocab_size=V, order=order, smoothing=smoothing, k=0.3).fit(x)
    P, D = reference_model(x.tolist(), V, order, smoothing, k=0.3)
    if smoothing == "kneser-ney":  # the data is large enough that the real estimate is used, not the fallback
        assert all(D[j] != (0.75, 0.75, 0.75) for j in range(2, order + 1))  # (order 1 alone takes the fallback)
        np.testing.assert_allclose(model.discounts[1:].numpy(), np.array([D[j] for j in range(1, order + 1)]), rtol=0, atol=1e-12)
    rng = np.random.default_rng(0)
    held_out, _ = small_text(4000)
    held_out = held_out[2500:].tolist()  # text the model has not counted: many unseen contexts
    contexts = [x.tolist()[i - order + 1 : i + 1] for i in rng.integers(order, len(x), 40)]  # seen contexts
    contexts += [held_out[i - order + 1 : i + 1] for i in rng.integers(order, len(held_out), 40)]
    contexts += [rng.integers(0, V, order - 1).tolist() for _ in range(20)]  # random: mostly unseen
    contexts += [[V - 1] * (order - 1), [V - 2] + x[: order - 2].tolist()]  # characters never seen at all
    contexts += [x[:j].tolist() for j in range(1, order)]  # shorter contexts, as at the start of a window
    for context in contexts:
        if not context:
            continue
        context = context[-(order - 1):] if order > 1 else context[-1:]
        expected = np.array(P(tuple(context) if order > 1 else ()))
        np.testing.assert_allclose(model_distribution(model, context), expected, rtol=0, atol=1e-9)


# A small random text on which the closed-form estimate of Chen & Goodman leaves D2 and D3+ of the
# trigrams at or below zero; clipped to 0 they made some probabilities exactly 0 (issue 10, item 8).
RANDOM_TEXT = ("babbaacabccbacbaabcbbccaccaacbbabccccbbcabbbcbabcbaaaaaabcbcabbcabccbbabacbaacbcabcbcaacbabaacccaab"
               "baccccabcbccbbbbacb")


def random_text():
    vocab = "abc\x00\x01"  # two characters the text never contains
    return torch.tensor(["abc".index(ch) for ch in RANDOM_TEXT]), len(vocab)


def raw_discounts(model, j):
    """Chen & Goodman's closed-form D1, D2, D3+ of order j, before any fallback."""
    counts = model.counts[model._rows(j)].numpy()
    n1, n2, n3, n4 = (float((counts == r).sum()) for r in (1, 2, 3, 4))
    Y = n1 / (n1 + 2 * n2)
    return np.array([1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3])


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
@pytest.mark.parametrize("text, order", [(small_text, 5), (random_text, 3)])
def test_every_distribution_sums_to_one_and_nothing_is_zero(smoothing, text, order):
    x, V = text()
    model = build("ngram", vocab_size=V, order=order, smoothing=smoothing).fit(x)
    if text is random_text and smoothing == "kneser-ney":  # the case this text is here for
        assert (raw_discounts(model, order) <= 0).any()
    idx = torch.randint(0, V, (4, 50), generator=torch.Generator().manual_seed(1))  # random, mostly unseen
    seen = x[:200]
    idx = torch.cat([idx, seen[: len(seen) // 50 * 50].view(-1, 50)])  # and seen text
    p = model.log_probs(idx).exp()  # (8, 50, V)
    np.testing.assert_allclose(p.sum(-1).numpy(), 1.0, rtol=0, atol=1e-12)
    assert (p > 0).all(), "a probability is zero"
    assert (p[..., V - 2 :] > 0).all()  # the two characters the training text never contains


def test_add_k_bigram_is_the_closed_form():
    x, V = small_text()
    k = 0.1
    model = build("ngram", vocab_size=V, order=2, smoothing="add-k", k=k).fit(x)
    counts = np.zeros((V, V))
    np.add.at(counts, (x[:-1].numpy(), x[1:].numpy()), 1)  # (V, V) c(h w)
    seen = np.zeros(V, dtype=bool)
    seen[x[:-1].numpy()] = True  # contexts followed by something
    unigram = (np.bincount(x.numpy(), minlength=V) + k) / (len(x) + k * V)  # (V,)
    expected = np.where(seen[:, None], (counts + k) / (counts.sum(1, keepdims=True) + k * V), unigram)  # (V, V)
    got = model.log_probs(torch.arange(V).view(V, 1)).exp()[:, 0].numpy()  # (V, V)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_discount_formula():
    # Chen & Goodman: Y = n1/(n1+2n2), D1 = 1-2Y n2/n1, D2 = 2-3Y n3/n2, D3+ = 3-4Y n4/n3.
    Y = 10 / 18
    np.testing.assert_allclose(NGram.estimate_discounts(np.array([10, 4, 2, 1])),
                               [1 - 2 * Y * 4 / 10, 2 - 3 * Y * 2 / 4, 3 - 4 * Y * 1 / 2])
    np.testing.assert_allclose(NGram.estimate_discounts(np.array([10, 4, 0, 1])), [0.75] * 3)
    # D2 = 2 - 3Y n3/n2 <= 0 (many grams seen 3 times): the whole order takes KenLM's fallback
    np.testing.assert_allclose(NGram.estimate_discounts(np.array([2, 1, 10, 1])), [0.5, 1.0, 1.5])


def test_kneser_ney_lower_orders_use_continuation_counts():
    # The "Francisco" effect in miniature: 'z' is frequent but only ever follows 'a'; 'y' is rarer but
    # follows six different characters. After a context never seen, Kneser-Ney should prefer 'y'.
    text = "az" * 20 + "by cy dy ey fy gy q"
    vocab = sorted(set(text))
    x = torch.tensor([vocab.index(ch) for ch in text])
    model = build("ngram", vocab_size=len(vocab), order=2).fit(x)
    unigram_counts = dict(zip(vocab, model.counts[model.offsets[1] : model.offsets[2]].tolist()))
    assert unigram_counts["z"] == 1 and unigram_counts["y"] == 6 and unigram_counts["a"] == 2  # 'a' also starts the text
    p = model_distribution(model, [vocab.index("q")])  # 'q' is never followed by anything
    assert p[vocab.index("y")] > 2 * p[vocab.index("z")]
    add_k = build("ngram", vocab_size=len(vocab), order=2, smoothing="add-k").fit(x)
    p = model_distribution(add_k, [vocab.index("q")])  # raw counts: 'z' (20) beats 'y' (6)
    assert p[vocab.index("z")] > 2 * p[vocab.index("y")]


def test_context_is_the_last_order_minus_one_characters():
    x, V = small_text()
    model = build("ngram", vocab_size=V, order=4).fit(x)
    assert model.context_length == 3
    idx = x[100:164].view(2, 32).clone()  # (2, 32)
    logits = model(idx)  # (2, 32, V)
    assert logits.shape == (2, 32, V) and logits.dtype == torch.float32
    for t in [0, 1, 2, 10, 31]:
        window = idx[:, max(0, t - 2) : t + 1]  # the context position t uses
        torch.testing.assert_close(model(window)[:, -1], logits[:, t], rtol=0, atol=0)
        changed = idx.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % V  # the future
        changed[:, : max(0, t - 2)] = (changed[:, : max(0, t - 2)] + 1) % V  # beyond the context
        torch.testing.assert_close(model(changed)[:, t], logits[:, t], rtol=0, atol=0)


def test_checkpoint_round_trip_with_weights_only():
    x, V = small_text()
    model = build("ngram", vocab_size=V, order=5).fit(x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = build("ngram", vocab_size=V, order=5)  # unfitted: empty tables of other shapes
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    idx = x[:128].view(4, 32)
    torch.testing.assert_close(fresh.log_probs(idx), model.log_probs(idx), rtol=0, atol=0)
    assert not list(model.parameters())


def test_unfitted_model_is_uniform_and_refit_replaces_counts():
    x, V = small_text()
    model = build("ngram", vocab_size=V, order=3)
    p = model.log_probs(x[:10].view(1, 10)).exp()
    np.testing.assert_allclose(p.numpy(), 1.0 / V)
    a = model.fit(x).log_probs(x[:10].view(1, 10))
    b = model.fit(x[:1000]).fit(x).log_probs(x[:10].view(1, 10))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_tiny_texts_do_not_break_it():
    model = build("ngram", vocab_size=5, order=6).fit(torch.tensor([1, 2, 1]))  # shorter than the order
    p = model.log_probs(torch.tensor([[1, 2, 1, 4, 0, 3]])).exp()
    np.testing.assert_allclose(p.sum(-1).numpy(), 1.0, atol=1e-12)
    assert (p > 0).all()


@pytest.mark.parametrize("overrides", [{"order": 0}, {"smoothing": "witten-bell"}, {"smoothing": "add-k", "k": 0.0}])
def test_bad_hyperparameters_raise(overrides):
    with pytest.raises(ValueError):
        NGram(NGram.Config(vocab_size=10, **overrides))


def test_fit_rejects_out_of_range_tokens():
    with pytest.raises(ValueError):
        build("ngram", vocab_size=3, order=2).fit(torch.tensor([0, 1, 3]))


def test_storage_counts_the_distinct_ngrams_of_every_order():
    from zoo.runs import count_stored
    from zoo.summary import size_cell

    x = [int(c) for c in "0120120012301"]
    model = build("ngram", vocab_size=4, order=3).fit(torch.tensor(x))
    distinct = {tuple(x[i:i + j]) for j in (1, 2, 3) for i in range(len(x) - j + 1)}
    stored = count_stored(model)
    assert stored["ngrams"] == len(distinct)  # counted by hand: every substring of length 1..3, once
    assert stored["numbers"] == sum(t.numel() for t in model.state_dict().values())
    assert size_cell({"params": 0, "stored": stored}) == f"{len(distinct)} n-grams × 6"
    assert size_cell({"params": 4225, "stored": {"numbers": 4225}}) == "4,225"
