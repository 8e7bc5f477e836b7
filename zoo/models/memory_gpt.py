"""Part II: a transformer that queries a memory beyond its window (Memorizing Transformer, on the gpt rung)."""

from dataclasses import dataclass

import torch
from torch import nn

from zoo.hooks import HookPoint, ResidualStream
from zoo.nn import (
    RMSNorm,
    SwiGLU,
    apply_rope,
    check_transformer_sizes,
    init_weights,
    rope_cache,
    sdpa,
    swiglu_hidden,
)
from zoo.registry import register


# --8<-- [start:config]
@dataclass(frozen=True)
class MemoryGPTConfig:
    vocab_size: int = 0  # bound from the data
    block_size: int = 0  # bound from the data: the training chunk, and W, the local window every query sees
    n_layer: int = 4  # number of blocks
    n_head: int = 4  # attention heads per block; head_dim = n_embd / n_head must be even (RoPE rotates pairs)
    n_embd: int = 128  # width of the residual stream
    mlp_hidden: int = 0  # SwiGLU hidden width; 0 means 8/3 · n_embd rounded up to a multiple of 32
    dropout: float = 0.0  # on embeddings, attention weights and each block's residual branch
    tie_embeddings: bool = True  # share the token embedding with the output projection
    rope_base: float = 10000.0  # θ in RoPE's frequencies θ^(−2i/head_dim)
    memory_size: int = 1024  # M: keys and values kept beyond the window (FIFO), per stream; 0: no memory
    memory_topk: int = 32  # k: memory entries each query attends to (its k nearest keys by dot product)
    memory_layer: int = -2  # which block queries the memory, Python-style (-2: the second-to-last)
    memory_gate: float = 0.0  # b_h at initialisation: the memory's share σ(b_h) starts at 1/2 (-4: about 2 %)
# --8<-- [end:config]


@register("memory-gpt", chapter="14-memory")
class MemoryGPT(nn.Module):
    """Memorizing Transformer (Wu et al. 2022) on the gpt rung: kNN attention into a memory beyond the window.

    Over ``gpt`` it adds a state that reaches past the window, without backpropagating into the past:

    * Local attention over a sliding window. Every query at position t attends to the W = block_size
      positions t−W+1 .. t, in every block. Keys and values of the last W−1 positions are carried from one
      chunk of a stream to the next without gradient: Transformer-XL's cached, stop-gradient segment
      recurrence (Dai et al. 2019), with the sliding-window mask of the Memorizing Transformer. RoPE is
      applied inside the window, so scores see only offsets there.
    * kNN memory in one block. The keys and values that leave the window go, without gradient, into a
      FIFO memory of the M positions before it: for a query at t, positions t−W−M+1 .. t−W. The memory
      block's query (un-rotated: memory entries carry no position) retrieves its k nearest memory keys by
      dot product and attends to them:
          s_j = q·k_j / √d for j in top-k(q·K_mem),   A_mem = Σ_j softmax(s)_j v_j
      and a learned gate per head mixes the two (g_h = σ(b_h), b_h starting at ``memory_gate``):
          A = g_h · A_mem + (1 − g_h) · A_local        (A = A_local where the memory is still empty)
    * The memory is the rung's state: forward(idx, state) -> (logits, state). The harness carries it
      across consecutive chunks of each training stream and resets it where a stream restarts; evaluation
      streams the whole split through it. Memory only ever holds strictly earlier positions, so the logits
      at t depend on tokens <= t only, and a chunk of any length gives the same logits as the same text fed
      in pieces (up to float rounding).

    No gradient reaches a stored key or value, so the model learns to *use* the memory (its queries, the
    gate, and what it writes at the time it writes it) but never to change what it wrote: the answer to
    "we can't backprop across an entire book". With M = 0, and on any text no longer than W from an empty
    state, it computes exactly what ``gpt`` computes with the same weights.

    The search is exact (one matmul and a top-k over the M + W−1 candidates). At a larger scale (Wu et al.
    keep up to 262k entries) the same lookup would use an approximate nearest-neighbour index such as FAISS
    or ScaNN: sub-linear search time, at the price of sometimes missing a true neighbour. Wu et al. also
    normalise keys and queries against the drift of keys stored by older weights; this rung keeps gpt's
    raw dot product, since its memory spans at most M/W training steps.
    """

    Config = MemoryGPTConfig
    stateful = True  # forward(idx, state) -> (logits, state); state = (per-block window caches, memory)

    def __init__(self, config: MemoryGPTConfig):
        super().__init__()
        check_transformer_sizes(config)
        if (config.n_embd // config.n_head) % 2 != 0:
            raise ValueError(f"head_dim = n_embd / n_head = {config.n_embd // config.n_head} must be even for RoPE")
        if config.memory_size < 0 or config.memory_topk < 1:
            raise ValueError(f"memory_size must be >= 0 and memory_topk >= 1, got {config.memory_size} and {config.memory_topk}")
        if not -config.n_layer <= config.memory_layer < config.n_layer:
            raise ValueError(f"memory_layer must index one of the {config.n_layer} blocks, got {config.memory_layer}")
        self.config = config
        self.context_length = None  # the memory reaches back M + W tokens, and past chunks: treated as unbounded
        self.memory_index = config.memory_layer % config.n_layer
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, memory=(i == self.memory_index)) for i in range(config.n_layer))
        self.resid = ResidualStream(config.n_layer)  # hook points resid.0 .. resid.N
        self.readout = HookPoint()
        self.norm_f = RMSNorm(C)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        cos, sin = rope_cache(2 * config.block_size, C // config.n_head, config.rope_base)  # (2W, head_dim): cache + chunk
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(init_weights)
        for block in self.blocks:  # as gpt: every block starts as the identity
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.down.weight)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    def initial_state(self, B: int, device=None):
        """Empty window caches for every block and an empty memory: ((k, v) per block, (k, v) of the memory)."""
        h, d = self.config.n_head, self.config.n_embd // self.config.n_head
        empty = torch.zeros(B, h, 0, d, device=device, dtype=self.wte.weight.dtype)  # (B, h, 0, head_dim)
        return tuple((empty, empty) for _ in self.blocks), (empty, empty)

    def forward_piece(self, idx: torch.Tensor, state):
        caches, memory = state
        x = self.resid[0](self.drop(self.wte(idx)))  # (B, T, C): hook point resid.0
        new_caches = []
        for i, (block, point) in enumerate(zip(self.blocks, self.resid[1:])):
            x, cache, evicted = block(x, caches[i], memory, self.rope_cos, self.rope_sin)
            x = point(x)  # (B, T, C): hook point resid.i
            new_caches.append(cache)
            if i == self.memory_index:
                memory = self.write_memory(memory, evicted)
        return self.unembed(x), (tuple(new_caches), memory)

    def write_memory(self, memory, evicted):
        """Append the keys and values that left the window, without gradient; keep the newest M (FIFO)."""
        M = self.config.memory_size
        return tuple(torch.cat([m, e.detach()], dim=2)[:, :, max(0, m.shape[2] + e.shape[2] - M):] for m, e in zip(memory, evicted))

    # --8<-- [start:forward]
    def forward(self, idx: torch.Tensor, state=None):
        B, T = idx.shape
        if state is None:
            state = self.initial_state(B, idx.device)  # start of a stream: nothing remembered
        W = self.config.block_size
        pieces = []
        for lo in range(0, T, W):  # longer inputs in pieces of at most W: the same logits as one by one
            logits, state = self.forward_piece(idx[:, lo:lo + W], state)
            pieces.append(logits)
        return torch.cat(pieces, dim=1), state  # (B, T, vocab_size), the state after the last token

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The read-out: final norm, then the output projection. (B, T, C) -> (B, T, vocab_size)."""
        return self.lm_head(self.readout(self.norm_f(x)))
    # --8<-- [end:forward]

    presets = {
        "quick": {
            "model": {"n_layer": 2, "n_head": 4, "n_embd": 64, "memory_size": 256, "memory_topk": 8},
            "data": {"block_size": 64, "batch_size": 16},
            "optim": {"optimizer": "adamw", "lr": 6e-3, "betas": [0.9, 0.95], "weight_decay": 0.1,
                      "schedule": "cosine", "warmup_steps": 50},
            "trainer": {"max_steps": 200, "val_every": 100},
        },
        # gpt's book preset (size, recipe, budget of 2,000 steps × 16 × 128 characters), with a memory of 1,024
        "book": {
            "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "memory_size": 1024, "memory_topk": 32},
            "data": {"block_size": 128, "batch_size": 16},
            "optim": {"optimizer": "adamw", "lr": 6e-3, "betas": [0.9, 0.95], "weight_decay": 0.1,
                      "schedule": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.1},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
    }


class Block(nn.Module):
    """gpt's pre-norm block, with windowed attention that carries a cache (and, in one block, a memory)."""

    def __init__(self, config: MemoryGPTConfig, memory: bool):
        super().__init__()
        self.norm_1 = RMSNorm(config.n_embd)
        self.attn = MemoryAttention(config) if memory else WindowAttention(config)
        self.norm_2 = RMSNorm(config.n_embd)
        self.mlp = SwiGLU(config.n_embd, config.mlp_hidden or swiglu_hidden(config.n_embd))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, cache, memory, cos, sin):
        a, cache, evicted = self.attn(self.norm_1(x), cache, memory, cos, sin)
        x = x + self.drop(a)  # (B, T, C)
        x = x + self.drop(self.mlp(self.norm_2(x)))  # (B, T, C)
        return x, cache, evicted


# --8<-- [start:window]
class WindowAttention(nn.Module):
    """Causal attention over a sliding window of W positions, the last W−1 carried in a stop-gradient cache."""

    def __init__(self, config: MemoryGPTConfig):
        super().__init__()
        C = config.n_embd
        self.n_head, self.head_dim, self.window = config.n_head, C // config.n_head, config.block_size
        self.qkv = nn.Linear(C, 3 * C, bias=False)  # W_q, W_k, W_v side by side, as in gpt
        self.proj = nn.Linear(C, C, bias=False)  # W_o
        self.dropout = config.dropout

    def project(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(2)  # (B, T, h, head_dim) each
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, h, T, head_dim) each, not rotated

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """The heads side by side again, through W_o: (B, h, T, head_dim) -> (B, T, C)."""
        B, h, T, d = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, h * d))

    def local(self, q, k, v, cache, cos, sin):
        """Each query's W-position window: the cached keys (earlier chunks) then this chunk's, rotated by
        their place in that span. Returns the attention (B, h, T, head_dim), the new cache, and the keys and
        values that left it."""
        T, c = q.shape[2], cache[0].shape[2]
        keys, values = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)  # (B, h, c+T, head_dim)
        q_rot = apply_rope(q, cos[c:c + T], sin[c:c + T])  # (B, h, T, head_dim): positions c .. c+T-1
        k_rot = apply_rope(keys, cos[:c + T], sin[:c + T])  # (B, h, c+T, head_dim): positions 0 .. c+T-1
        p = self.dropout if self.training else 0.0
        if c == 0 and T <= self.window:  # nothing cached: plain causal attention, exactly gpt's kernel
            y = sdpa(q_rot, k_rot, values, dropout_p=p, is_causal=True)
        else:
            offset = torch.arange(c, c + T, device=q.device)[:, None] - torch.arange(c + T, device=q.device)  # (T, c+T): t − s
            y = sdpa(q_rot, k_rot, values, attn_mask=(offset >= 0) & (offset < self.window), dropout_p=p)
        keep = self.window - 1  # the next chunk's first query needs the W−1 positions before it
        split = max(0, c + T - keep)
        new_cache = (keys[:, :, split:].detach(), values[:, :, split:].detach())  # stop-gradient (Transformer-XL)
        return y, new_cache, (keys[:, :, :split], values[:, :, :split])  # (B, h, T, head_dim), cache, evicted

    def forward(self, x, cache, memory, cos, sin):
        q, k, v = self.project(x)
        y, cache, evicted = self.local(q, k, v, cache, cos, sin)
        return self.merge(y), cache, evicted  # (B, T, C)
# --8<-- [end:window]


# --8<-- [start:memory]
class MemoryAttention(WindowAttention):
    """Windowed attention plus kNN attention into the memory, mixed per head by a learned gate (Wu et al. 2022)."""

    def __init__(self, config: MemoryGPTConfig):
        super().__init__(config)
        self.memory_size, self.topk = config.memory_size, config.memory_topk
        self.gate = nn.Parameter(torch.full((config.n_head,), config.memory_gate))  # b_h; g_h = σ(b_h), 1/2 at b_h = 0

    def forward(self, x, cache, memory, cos, sin):
        B, T, _ = x.shape
        q, k, v = self.project(x)
        local, new_cache, evicted = self.local(q, k, v, cache, cos, sin)  # (B, h, T, head_dim)
        c, m = cache[0].shape[2], memory[0].shape[2]
        if self.memory_size == 0 or c + m == 0:  # no memory, or nothing has left the window yet: local attention alone
            return self.merge(local), new_cache, evicted
        # candidates: the memory (oldest first) then the cache; for query t (in-chunk index i), candidate j
        # (position s) is in memory iff W <= t − s < W + M, i.e. it left t's window but not the memory yet
        keys, values = torch.cat([memory[0], cache[0]], dim=2), torch.cat([memory[1], cache[1]], dim=2)  # (B, h, m+c, head_dim)
        age = torch.arange(c, c + T, device=x.device)[:, None] + (m - torch.arange(m + c, device=x.device))  # (T, m+c): t − s
        valid = (age >= self.window) & (age < self.window + self.memory_size)  # (T, m+c)
        scores = q @ keys.transpose(-1, -2)  # (B, h, T, m+c): un-rotated q · stored k, every candidate, gradient to q only
        with torch.no_grad():  # the search: which k entries each query reads (no gradient flows through a choice)
            index = scores.masked_fill(~valid, float("-inf")).topk(min(self.topk, m + c), dim=-1).indices  # (B, h, T, k): exact
            picked = valid.expand(B, self.n_head, T, m + c).gather(-1, index)  # (B, h, T, k): False where fewer than k are valid
        top = scores.gather(-1, index) * self.head_dim**-0.5  # (B, h, T, k): the chosen scores
        # an invalid pick (fewer than k valid) gets weight exactly 0; finite fill, so no NaN where none is valid
        weights = top.masked_fill(~picked, torch.finfo(top.dtype).min).softmax(-1) * picked  # (B, h, T, k)
        # A_mem = Σ_j softmax(s)_j v_j as one matmul: the k weights put back in their candidates' columns, 0 elsewhere
        # (cheaper than gathering k keys and values for every query)
        spread = torch.zeros_like(scores).scatter_(-1, index, weights.to(scores.dtype))  # (B, h, T, m+c)
        from_memory = spread @ values  # (B, h, T, head_dim)
        has_memory = valid.any(-1)[:, None]  # (T, 1): queries with at least one memory entry
        g = torch.sigmoid(self.gate)[:, None, None] * has_memory  # (h, T, 1): 0 where the memory is empty
        y = local + g * (from_memory - local)  # (B, h, T, head_dim): g·A_mem + (1−g)·A_local
        return self.merge(y), new_cache, evicted
# --8<-- [end:memory]
