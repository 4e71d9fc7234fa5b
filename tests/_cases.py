"""Layer configurations shared by the tests: every cell variant of SPEC.md."""
import numpy as np

import seqcore

# (id, constructor, kwargs)
CELLS = [
    ("rnn_tanh", seqcore.RNN, {"nonlinearity": "tanh"}),
    ("rnn_relu", seqcore.RNN, {"nonlinearity": "relu"}),
    ("gru", seqcore.GRU, {"reset_after": False}),
    ("gru_reset_after", seqcore.GRU, {"reset_after": True}),
    ("lstm", seqcore.LSTM, {"peephole": False}),
    ("lstm_peephole", seqcore.LSTM, {"peephole": True}),
]
CELL_IDS = [c[0] for c in CELLS]


def make_layer(cell, D, H, *, dtype=np.float64, backend="numpy", seed=0, **kwargs):
    _, cls, opts = next(c for c in CELLS if c[0] == cell)
    layer = cls(D, H, dtype=dtype, backend=backend, seed=seed, **opts, **kwargs)
    # Random biases everywhere (an all-zero or all-equal bias hides indexing bugs).
    rng = np.random.default_rng(seed + 1)
    for name, p in layer.params.items():
        if not name.startswith("W_"):
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    return layer


def random_state(layer, B, rng):
    shape = (layer.num_layers * layer.num_directions, B, layer.hidden_size)
    arrays = [rng.standard_normal(shape).astype(layer.dtype) * 0.5
              for _ in range(layer._num_states)]
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


def random_lengths(T, B, rng):
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T
    return lengths


def state_list(state):
    return list(state) if isinstance(state, tuple) else [state]


def copy_params(dst, src):
    for k in src.params:
        dst.params[k] = src.params[k].astype(dst.dtype)
