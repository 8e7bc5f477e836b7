"""Blocks shared by two or more rungs. Models import torch and this module only."""

import math

import torch
from torch import nn
from torch.nn import functional as F


def causal_mask(T: int, device=None) -> torch.Tensor:
    """Bool[T, T], True where query t may attend to key s (s <= t)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, written out (Vaswani et al. 2017, §3.2).

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + M) V, with M = −∞ where a query may not look;
    MultiHead(X, Y) = Concat(head_1, …, head_h) W^O,  head_i = Attention(X W_i^Q, Y W_i^K, Y W_i^V).
    Queries come from X, keys and values from Y (Y = X is self-attention).
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head, self.d_k = n_head, n_embd // n_head
        self.q_proj = nn.Linear(n_embd, n_embd, bias=bias)  # the h matrices W_i^Q side by side
        self.k_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.v_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.out_proj = nn.Linear(n_embd, n_embd, bias=bias)  # W^O
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, causal: bool = True) -> torch.Tensor:
        y = x if y is None else y
        B, T, C = x.shape
        S = y.shape[1]
        q = self.q_proj(x).view(B, T, self.n_head, self.d_k).transpose(1, 2)  # (B, h, T, d_k)
        k = self.k_proj(y).view(B, S, self.n_head, self.d_k).transpose(1, 2)  # (B, h, S, d_k)
        v = self.v_proj(y).view(B, S, self.n_head, self.d_k).transpose(1, 2)  # (B, h, S, d_k)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # (B, h, T, S)
        if causal:
            scores = scores.masked_fill(~causal_mask(T, x.device)[:, :S], float("-inf"))
        weights = self.attn_dropout(F.softmax(scores, dim=-1))  # (B, h, T, S)
        heads = weights @ v  # (B, h, T, d_k)
        return self.out_proj(heads.transpose(1, 2).reshape(B, T, C))  # (B, T, C)
