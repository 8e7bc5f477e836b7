"""Rung 1: the n-gram — counting, smoothing, back-off."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from zoo.nn import require_positive
from zoo.registry import register

SMOOTHINGS = ("kneser-ney", "add-k")


# --8<-- [start:config]
@dataclass(frozen=True)
class NGramConfig:
    vocab_size: int = 0  # bound from the data
    order: int = 7  # N: predict a character from the N-1 before it (orders 1..N are all counted)
    smoothing: str = "kneser-ney"  # "kneser-ney" (interpolated, modified: three discounts) or "add-k"
    k: float = 0.1  # the pseudo-count of add-k smoothing (ignored by Kneser-Ney)
# --8<-- [end:config]


@register("ngram", chapter="01-ngram")
class NGram(nn.Module):
    """N-gram counts (Shannon 1948; Kneser & Ney 1995; Chen & Goodman 1998): the bigram table, with a longer context, counted instead of learned.

    An order-N model predicts w from the context h = the N-1 characters before it. With c(h w) the
    number of times h w occurs in the training text and c(h) = Σ_w c(h w):

    add-k:       P(w | h) = (c(h w) + k) / (c(h) + k V)                       if c(h) > 0,
                 P(w | h) = P(w | h')  (h' = h without its first character)  if h was never seen.

    interpolated modified Kneser-Ney (Chen & Goodman 1998), for orders j = 1..N:
        P_j(w | h) = max(c_j(h w) − D_j(c_j(h w)), 0) / c_j(h)  +  γ_j(h) P_{j−1}(w | h'),
        γ_j(h)     = (D_j1 N1(h •) + D_j2 N2(h •) + D_j3+ N3+(h •)) / c_j(h),
        P_0(w)     = 1 / V,      and P_j(w | h) = P_{j−1}(w | h') when c_j(h) = 0 (an unseen context).
    c_N is the raw count; below the top order c_j(h w) = N1+(• h w), the number of distinct characters
    seen in front of h w (the start of the text counts as one more), because a lower order is only
    consulted through γ and should say how readily w follows *new* contexts, not how frequent w is.
    N_r(h •) is the number of w with c_j(h w) = r (N3+: r >= 3). The discounts of order j come from its
    count-of-counts n_r (how many j-grams have c_j = r):
        Y = n1 / (n1 + 2 n2),  D_j1 = 1 − 2Y n2/n1,  D_j2 = 2 − 3Y n3/n2,  D_j3+ = 3 − 4Y n4/n3,
    if any of n1..n4 is zero (tiny texts) that order uses D = 0.75 for all three, and if an estimate
    leaves (0, r] that order falls back to D = 0.5, 1, 1.5 (KenLM's rule; see ``estimate_discounts``).
    Every P_j sums to 1 over the vocabulary, and P_0 > 0 with γ_1 > 0 makes every probability positive.

    Counting is vectorised: the j-grams of the text get dense ids through a trie of sort keys,
    key(g) = id(g without its last character) · V + last character, so one sort of the key array per
    order counts every j-gram at once (no loop over characters). Lookups at forward time are
    ``searchsorted`` in those sorted keys, and the continuations of a context are one contiguous run. The tables are buffers, so a fitted model saves and loads like any other.
    A position whose window gives it fewer than N−1 characters of context (the start of a text)
    uses the order its context allows — the same P_j the longer orders back off to.
    """

    Config = NGramConfig
    trainable = False  # fitted by counting: fit(tokens), no optimiser
    def __init__(self, config: NGramConfig):
        super().__init__()
        require_positive(config, "vocab_size", "order")  # order 1 is the unigram
        if config.smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {', '.join(SMOOTHINGS)}, got {config.smoothing!r}")
        if config.smoothing == "add-k" and not config.k > 0:
            raise ValueError(f"add-k smoothing needs k > 0 (k = 0 gives unseen characters probability zero), got {config.k}")
        self.config = config
        # Logits at t see idx[t-N+2 .. t]; a unigram sees nothing, but the contract counts at least the current token.
        self.context_length = max(1, config.order - 1)
        N = config.order
        # The tables of every gram length j = 0..N, concatenated: length j occupies rows offsets[j]:offsets[j+1].
        # Length 0 is the empty gram (one row): the context of the unigram order.
        self.register_buffer("offsets", torch.tensor([0] + [1] * (N + 1)))  # (N+2,)
        self.register_buffer("keys", torch.zeros(1, dtype=torch.long))  # (G,) id(prefix) * V + last char, sorted per length
        self.register_buffer("counts", torch.zeros(1, dtype=torch.int32))  # (G,) c_j(g): raw at j = N (and for add-k), N1+(• g) below
        # The gram as a context of order j+1: c_{j+1}(h) and N1, N2, N3+(h •).
        self.register_buffer("ctx_total", torch.zeros(1, dtype=torch.int32))  # (G,)
        self.register_buffer("ctx_n", torch.zeros(1, 3, dtype=torch.int32))  # (G, 3)
        self.register_buffer("discounts", torch.zeros(N + 1, 3, dtype=torch.float64))  # (N+1, 3) row j: D_j1, D_j2, D_j3+

    # ----------------------------------------------------------------------------------- counting
    def fit(self, tokens: torch.Tensor) -> "NGram":
        """Count every j-gram (j = 1..N) of ``tokens`` (LongTensor[n], the train split) at once per order."""
        V, N = self.config.vocab_size, self.config.order
        x = tokens.detach().reshape(-1).cpu().numpy().astype(np.int64)  # (n,)
        n = len(x)
        if not 0 < n < 2**31:
            raise ValueError(f"can fit an n-gram model on 1 to 2^31 - 1 tokens, got {n}")
        if x.min() < 0 or x.max() >= V:
            raise ValueError(f"token ids must lie in [0, {V}), got [{x.min()}, {x.max()}]")
        # ids[j][i]: dense id of the j-gram starting at i (i = 0 .. n-j); the empty gram has id 0 everywhere.
        # --8<-- [start:count]
        ids = [np.zeros(n + 1, dtype=np.int64)]  # (n+1,)
        keys, raw = [np.zeros(1, dtype=np.int64)], [np.array([n], dtype=np.int64)]
        order = np.arange(n + 1)  # start positions sorted by the (j-1)-gram there (trivially, for j-1 = 0)
        for j in range(1, N + 1):
            m = n - j + 1  # how many j-grams the text has
            if m <= 0:  # the text is shorter than j
                ids.append(np.zeros(0, dtype=np.int64)), keys.append(np.zeros(0, dtype=np.int64)), raw.append(np.zeros(0, dtype=np.int64))
                continue
            key = ids[j - 1][:m] * V + x[j - 1 :]  # (m,) prefix id · V + last char: sorting keys sorts j-grams
            # The positions are already sorted by prefix, so a stable sort by the full key only reorders
            # inside each prefix's run (near-linear for timsort; radix sort while keys fit in 16 bits).
            order = order[order < m]  # (m,) drop the start too close to the end for a j-gram
            by = key[order] if len(keys[j - 1]) * V > 2**16 else key[order].astype(np.uint16)  # (m,)
            order = order[np.argsort(by, kind="stable")]  # (m,) start positions sorted by j-gram
            sorted_key = key[order]  # (m,)
            first = np.ones(m, dtype=bool)  # (m,) where a new j-gram begins in sorted order
            np.not_equal(sorted_key[1:], sorted_key[:-1], out=first[1:])
            starts = np.flatnonzero(first)  # (U_j,)
            inverse = np.empty(m, dtype=np.int64)  # (m,)
            inverse[order] = np.cumsum(first) - 1  # dense id = rank among the distinct keys
            ids.append(inverse), keys.append(sorted_key[starts]), raw.append(np.diff(starts, append=m))
        # --8<-- [end:count]

        # --8<-- [start:continuation]
        counts = [c.copy() for c in raw]
        if self.config.smoothing == "kneser-ney":
            for j in range(1, N):  # below the top order: continuation counts N1+(• g)
                if len(ids[j + 1]) == 0:  # no (j+1)-grams: only the start of the text precedes g
                    counts[j] = np.zeros(len(keys[j]), dtype=np.int64)
                else:
                    # Each distinct (j+1)-gram a·g is one distinct left extension of its suffix g.
                    suffix = np.empty(len(keys[j + 1]), dtype=np.int64)  # (U_{j+1},)
                    suffix[ids[j + 1]] = ids[j][1 : len(ids[j + 1]) + 1]  # any occurrence gives the same suffix
                    counts[j] = np.bincount(suffix, minlength=len(keys[j]))  # (U_j,)
                if len(ids[j]):
                    counts[j][ids[j][0]] += 1  # the start of the text is one more distinct left context
        # --8<-- [end:continuation]

        # Each (j-1)-gram as the context of order j: its total and N1, N2, N3+ over its continuations.
        total = [np.zeros(len(k), dtype=np.int64) for k in keys]
        n123 = [np.zeros((len(k), 3), dtype=np.int64) for k in keys]
        discounts = np.zeros((N + 1, 3))
        for j in range(1, N + 1):
            parent = keys[j] // V  # (U_j,) id of the context (the (j-1)-gram prefix)
            total[j - 1] = np.bincount(parent, weights=counts[j], minlength=len(keys[j - 1])).astype(np.int64)
            bucket = np.minimum(counts[j], 3) - 1  # (U_j,) 0, 1, 2 for counts 1, 2, >=3
            for r in range(3):
                n123[j - 1][:, r] = np.bincount(parent, weights=bucket == r, minlength=len(keys[j - 1]))
            discounts[j] = self.estimate_discounts(np.bincount(counts[j], minlength=5)[1:5])

        device = self.keys.device  # the tables live where the module was moved
        as_tensor = lambda parts, dtype: torch.from_numpy(np.concatenate(parts).astype(dtype)).to(device)  # noqa: E731
        self.offsets = torch.tensor(np.cumsum([0] + [len(k) for k in keys]), device=device)  # (N+2,)
        self.keys = as_tensor(keys, np.int64)  # (G,)
        self.counts = as_tensor(counts, np.int32)  # (G,) int32 halves the checkpoint; fit checks n < 2^31
        self.ctx_total = as_tensor(total, np.int32)  # (G,)
        self.ctx_n = as_tensor(n123, np.int32)  # (G, 3)
        self.discounts = torch.from_numpy(discounts).to(device)  # (N+1, 3)
        return self

    @classmethod
    def estimate_memory(cls, config: NGramConfig, train_tokens: int) -> tuple[int, str]:
        """Peak bytes of ``fit`` on ``train_tokens`` characters, and what sets them (read by ``zoo.memory``).

        Counting holds about 128 bytes per distinct j-gram (sort keys, ids, counts, the saved tables), and
        a text of n characters has at most min(V^j, n - j + 1) distinct j-grams: past the first few orders
        every position starts a new one, so the tables grow as order × text length (order 100 on pydoc's
        420k training characters: 30 M grams, 3.8 GB at the peak, an 839 MB checkpoint).
        """
        n, V, top = train_tokens, config.vocab_size, min(config.order, train_tokens)
        grams, j = 0, 1
        while j <= top and V > 1 and V**j < n - j + 1:  # short orders: at most V^j distinct j-grams
            grams, j = grams + V**j, j + 1
        grams += (top - j + 1) * (2 * n - j - top + 2) // 2 if V > 1 else top  # the rest: n - j + 1 each
        return 128 * grams, f"--model.order {config.order} over {n:,} training characters"

    # --8<-- [start:discounts]
    @staticmethod
    def estimate_discounts(n: np.ndarray) -> np.ndarray:
        """D1, D2, D3+ from the count-of-counts n1..n4 of one order (Chen & Goodman 1998).

        The closed form can leave the valid range: D2 or D3+ come out <= 0 where grams seen 3 or 4
        times outnumber those seen once or twice (small or repetitive texts). A discount of 0 frees no
        mass, so a context whose continuations all have that count gets γ(h) = 0 and every character
        not seen after it probability exactly 0. Then the whole order falls back to D = 0.5, 1, 1.5, as
        KenLM's lmplz does with ``--discount_fallback`` (it also replaces the whole order, but accepts
        D = 0; here every discount must be > 0, so every γ(h) > 0 and every probability is positive).
        """
        n1, n2, n3, n4 = (float(v) for v in n)
        if min(n1, n2, n3, n4) == 0:  # too little data for the estimate: the classic fixed discount
            return np.full(3, 0.75)
        Y = n1 / (n1 + 2 * n2)
        D = np.array([1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3])
        if ((D > 0) & (D <= [1.0, 2.0, 3.0])).all():
            return D
        return np.array([0.5, 1.0, 1.5])  # KenLM's fallback discounts
    # --8<-- [end:discounts]

    # ------------------------------------------------------------------------------------ lookups
    def _rows(self, j: int) -> slice:
        return slice(int(self.offsets[j]), int(self.offsets[j + 1]))

    def _lookup(self, j: int, parent: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Local id of the j-gram (parent (j-1)-gram id, last char), or -1 where it was never counted."""
        table = self.keys[self._rows(j)]  # (U_j,)
        if len(table) == 0:
            return torch.full_like(last, -1)
        key = parent.clamp(min=0) * self.config.vocab_size + last  # (...)
        pos = torch.searchsorted(table, key).clamp(max=len(table) - 1)  # (...)
        found = (parent >= 0) & (table[pos] == key)  # (...) an unseen prefix has no extensions either
        return torch.where(found, pos, -1)  # (...)

    def log_probs(self, idx: torch.Tensor) -> torch.Tensor:
        """log P(next | context) for every position and every character, in float64: (B, T) -> (B, T, V)."""
        V, N = self.config.vocab_size, self.config.order
        B, T = idx.shape
        ctx = self._contexts(idx)  # ctx[j]: (B, T) local id of the j-gram ending at each position, -1 = unseen

        # --8<-- [start:interpolate]
        p = torch.full((B * T, V), 1.0 / V, dtype=torch.float64, device=idx.device)  # (B*T, V) P_0: uniform
        for j in range(1, N + 1):  # order j: context = the (j-1)-gram ending at t
            rows = self._rows(j - 1)
            c = ctx[j - 1].reshape(-1)  # (B*T,)
            if not (c >= 0).any():  # no context this long was ever seen (nor any longer one)
                break
            c = c.clamp(min=0)  # (B*T,) unseen contexts read row 0 and are masked out by `seen`
            total = torch.where(ctx[j - 1].reshape(-1) >= 0, self.ctx_total[rows][c], 0).double()  # (B*T,) c_j(h)
            seen = total > 0  # (B*T,) an unseen context keeps P_{j-1}: clean back-off
            pos = seen.nonzero().squeeze(1)  # (S,) positions whose context was seen at order j
            children, row = self._children(j, c[pos])  # (E,) table rows of the j-grams h·w; (E,) index into pos
            at = pos[row]  # (E,) the position each j-gram h·w belongs to
            w = self.keys[self._rows(j)][children] % V  # (E,) its last character
            count = self.counts[self._rows(j)][children].double()  # (E,) c_j(h w)
            if self.config.smoothing == "add-k":
                denom = total + self.config.k * V  # (B*T,)
                p = torch.where(seen[:, None], self.config.k / denom[:, None], p)  # (B*T, V) k for every character
                p[at, w] += count / denom[at]  # ... plus the counts
            else:
                D = self.discounts[j]  # (3,)
                gamma = (self.ctx_n[rows][c].double() @ D) / total.clamp(min=1)  # (B*T,) mass the discounts free
                p = torch.where(seen[:, None], gamma[:, None] * p, p)  # (B*T, V) γ_j(h) P_{j-1}(w | h')
                p[at, w] += (count - D[count.long().clamp(max=3) - 1]).clamp(min=0) / total[at]  # ... plus discounted counts
        return p.log().view(B, T, V)  # (B, T, V)
        # --8<-- [end:interpolate]

    def _contexts(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """ctx[j] (B, T) for j = 0..N-1: local id of the j-gram ending at each position (-1 = unseen, or
        running off the window's start)."""
        B, T = idx.shape
        idx = idx.to(self.keys.device)
        ctx = [torch.zeros(B, T, dtype=torch.long, device=idx.device)]  # (B, T) the empty gram
        for j in range(1, self.config.order):
            before = torch.full((B, 1), 0 if j == 1 else -1, dtype=torch.long, device=idx.device)  # (B, 1)
            parent = torch.cat([before, ctx[j - 1][:, :-1]], dim=1)  # (B, T): the (j-1)-gram ending at t-1
            ctx.append(self._lookup(j, parent, idx))  # (B, T)
        return ctx

    def context_counts(self, idx: torch.Tensor) -> torch.Tensor:
        """c(h) for every position: how often its full context h (the N-1 characters ending at t) was
        followed by a character in the training text; 0 if unseen or the window gives fewer than N-1.
        (B, T) -> (B, T). How much the top order knows at each position (zoo.mixture buckets by it)."""
        top = self._contexts(idx)[-1]  # (B, T)
        total = self.ctx_total[self._rows(self.config.order - 1)]  # (U,)
        return torch.where(top >= 0, total[top.clamp(min=0)].long(), 0)  # (B, T)

    def _children(self, j: int, c: torch.Tensor):
        """Rows (within the j-gram table) of every j-gram whose prefix is one of the contexts ``c``.

        Keys sort by prefix first, so the children of context c are one contiguous run of rows."""
        table = self.keys[self._rows(j)]  # (U_j,)
        V = self.config.vocab_size
        lo = torch.searchsorted(table, c * V)  # (S,)
        hi = torch.searchsorted(table, (c + 1) * V)  # (S,)
        length = hi - lo  # (S,)
        row = torch.repeat_interleave(torch.arange(len(c), device=c.device), length)  # (E,)
        start = torch.cumsum(length, 0) - length  # (S,) where each run begins in the flat list
        children = lo[row] + torch.arange(len(row), device=c.device) - start[row]  # (E,)
        return children, row

    # --------------------------------------------------------------------------------- checkpoints
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The tables' sizes depend on the text they were counted from: take the saved shapes.
        for name in list(self._buffers):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != self._buffers[name].shape:
                self._buffers[name] = torch.empty_like(saved, device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def storage(self) -> dict:
        """The distinct n-grams of every order 1..N the tables hold (each with its key, count, context
        total and three context counts), for tables that compare what rungs store."""
        return {"ngrams": int(self.offsets[-1] - 1), "numbers_per_ngram": 6}  # every row but the empty gram's

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> log-probabilities (B, T, V) as logits; position t sees idx[t-N+2 .. t]."""
        return self.log_probs(idx).float()  # (B, T, V)

    presets = {
        "quick": {"model": {"order": 4}, "data": {"block_size": 32}},
        "book": {"model": {"order": 7}, "data": {"block_size": 128}},  # order 7 is where val bpc bottoms out (benchmarks/ngram_orders.py)
    }
