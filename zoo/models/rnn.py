"""Rung 4: a state carried through time — the Elman RNN, and the LSTM beside it."""

from dataclasses import dataclass

import torch
from torch import nn

from zoo.nn import require_dropout, require_positive
from zoo.registry import register


# --8<-- [start:config]
@dataclass(frozen=True)
class RNNConfig:
    vocab_size: int = 0  # bound from the data
    n_embd: int = 64  # width of the input embedding x_t = E[idx_t]
    n_hidden: int = 256  # width of the state h_t: everything the model remembers about the past
    n_layer: int = 1  # stacked recurrences: layer l reads layer l-1's h_t as its input
    dropout: float = 0.0  # on the embedding, between layers and before the head (Zaremba et al. 2014)
# --8<-- [end:config]


@register("rnn", chapter="04-rnn")
class RNN(nn.Module):
    """Elman 1990, "Finding structure in time": a state carried through time, no window at all.

    The state h_t summarises the whole prefix, updated once per character:

        x_t    = E[idx_t]                                   (embedding, n_embd)
        h_t    = tanh(W_xh x_t + W_hh h_{t-1} + b)          (state, n_hidden; h_{-1} = 0 or carried in)
        logits = W_hy h_t + b_y

    Layer l > 0 of a stack reads the h_t of layer l-1 as its x_t. The state is returned with the
    logits so the caller can feed it into the next chunk of text: training uses truncated
    backpropagation through time (the harness carries the state from chunk to chunk, detached, so
    gradients flow back at most ``data.block_size`` steps), and evaluation streams the whole split.
    The recurrence is written out below; it computes exactly what ``torch.nn.RNN`` computes with
    ``bias_hh = 0`` (a test checks that).
    """

    Config = RNNConfig
    stateful = True  # forward(idx, state) -> (logits, state)

    def __init__(self, config: RNNConfig):
        super().__init__()
        require_positive(config, "vocab_size", "n_embd", "n_hidden", "n_layer")
        require_dropout(config)
        self.config = config
        self.context_length = None  # the state can hold anything from the whole past: unbounded
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # row i = x_t for character i
        self.drop = nn.Dropout(config.dropout)
        self.build_recurrence(config)
        self.lm_head = nn.Linear(config.n_hidden, config.vocab_size)  # W_hy, b_y

    # ------------------------------------------------------------------------------ the recurrence
    def build_recurrence(self, config: RNNConfig) -> None:
        H = config.n_hidden
        # One input map (W_xh, b) and one recurrent matrix W_hh per layer. Initialised like
        # torch.nn.RNN: uniform in ±1/sqrt(H), so tanh starts in its linear range.
        self.W_xh = nn.ModuleList(nn.Linear(config.n_embd if l == 0 else H, H) for l in range(config.n_layer))
        self.W_hh = nn.ParameterList(nn.Parameter(torch.empty(H, H).uniform_(-H**-0.5, H**-0.5)) for _ in range(config.n_layer))
        for lin in self.W_xh:
            nn.init.uniform_(lin.weight, -H**-0.5, H**-0.5)
            nn.init.uniform_(lin.bias, -H**-0.5, H**-0.5)

    def initial_state(self, B: int, device=None) -> torch.Tensor:
        # in the weights' dtype, so that a float64 copy (the landscape's exact derivative checks) runs as it is
        return torch.zeros(self.config.n_layer, B, self.config.n_hidden, device=device, dtype=self.wte.weight.dtype)  # (n_layer, B, H)

    # --8<-- [start:recurrence]
    def recur(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, n_embd), state: (n_layer, B, H) -> every h_t of the top layer (B, T, H), last state."""
        T = x.shape[1]
        finals = []
        for l, (W_xh, W_hh) in enumerate(zip(self.W_xh, self.W_hh)):
            if l > 0:
                x = self.drop(x)  # dropout between layers, never on the recurrent path
            xw = W_xh(x)  # (B, T, H): W_xh x_t + b for all t at once — the input part needs no past
            h = state[l]  # (B, H): h_{-1}
            hs = []
            for t in range(T):  # the part that does need the past: one step at a time
                h = torch.tanh(xw[:, t] + h @ W_hh.T)  # (B, H): h_t = tanh(W_xh x_t + b + W_hh h_{t-1})
                hs.append(h)
            x = torch.stack(hs, dim=1)  # (B, T, H): this layer's states are the next layer's inputs
            finals.append(h)
        return x, torch.stack(finals)  # (B, T, H), (n_layer, B, H)
    # --8<-- [end:recurrence]

    # ----------------------------------------------------------------------------------- forward
    # --8<-- [start:forward]
    def forward(self, idx: torch.Tensor, state=None):
        B, T = idx.shape
        if state is None:
            state = self.initial_state(B, idx.device)  # start of a stream: nothing remembered
        x = self.drop(self.wte(idx))  # (B, T, n_embd)
        h, state = self.recur(x, state)  # (B, T, H), state for the next chunk
        logits = self.lm_head(self.drop(h))  # (B, T, vocab_size): every position reads its own h_t
        return logits, state
    # --8<-- [end:forward]

    presets = {
        "quick": {
            "model": {"n_embd": 16, "n_hidden": 64},
            "data": {"block_size": 32, "batch_size": 16},
            "optim": {"lr": 2e-2, "warmup_steps": 20},  # a small, short run: at 3e-3 it was still near the unigram
            "trainer": {"max_steps": 200, "val_every": 50},
        },
        # --8<-- [start:book_preset]
        "book": {
            "model": {"n_embd": 64, "n_hidden": 512},
            "data": {"block_size": 64, "batch_size": 32},  # k = 64 steps of BPTT, 32 parallel streams
            "optim": {"lr": 3e-3, "warmup_steps": 100, "weight_decay": 0.0},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
        # --8<-- [end:book_preset]
    }


# --8<-- [start:lstm]
@dataclass(frozen=True)
class LSTMConfig(RNNConfig):
    pass  # the same knobs; n_hidden is the width of h_t and of the cell c_t


@register("lstm", chapter="04-rnn")
class LSTM(RNN):
    """Hochreiter & Schmidhuber 1997: the RNN with a gated, additive memory cell that gradients survive.

    Per layer, with σ the logistic function and ⊙ the elementwise product:

        i_t, f_t, o_t = σ(W_i [x_t; h_{t-1}] + b_i), σ(W_f [...] + b_f), σ(W_o [...] + b_o)   (gates)
        g_t = tanh(W_g [x_t; h_{t-1}] + b_g)                                                (candidate)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                                                     (cell)
        h_t = o_t ⊙ tanh(c_t),   logits = W_hy h_t + b_y

    The cell is updated by addition, so along the cell the gradient is multiplied by f_t at each step
    (∂c_t/∂c_{t-1} = f_t on that path) instead of by tanh'·W_hh: with forget gates near 1 it need not
    shrink. Truncation still cuts it at the chunk boundary. Uses ``torch.nn.LSTM``; the state is (h, c).
    """

    Config = LSTMConfig
    def build_recurrence(self, config: LSTMConfig) -> None:
        dropout = config.dropout if config.n_layer > 1 else 0.0  # nn.LSTM applies it between layers only
        self.cell = nn.LSTM(config.n_embd, config.n_hidden, num_layers=config.n_layer, batch_first=True, dropout=dropout)

    def initial_state(self, B: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.zeros(self.config.n_layer, B, self.config.n_hidden, device=device, dtype=self.wte.weight.dtype)  # (n_layer, B, H)
        return h, torch.zeros_like(h)  # (h, c)

    def recur(self, x: torch.Tensor, state):
        h, (h_last, c_last) = self.cell(x, state)  # (B, T, H); each (n_layer, B, H)
        return h, (h_last, c_last)

    presets = {
        "quick": RNN.presets["quick"],
        "book": {
            "model": {"n_embd": 64, "n_hidden": 256},  # about the rnn book preset's parameter count
            "data": {"block_size": 64, "batch_size": 32},
            "optim": {"lr": 3e-3, "warmup_steps": 100, "weight_decay": 0.0},
            "trainer": {"max_steps": 2000, "val_every": 250},
        },
    }
# --8<-- [end:lstm]
