"""Layer configurations shared by the tests (every cell variant of docs/spec.md §Cells), and the
finite-difference check of a whole model's gradients."""
import numpy as np
import pytest

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


def randomize(model, rng, scale=0.5):
    """Every parameter of a model uniform in +-scale (no zero or equal biases)."""
    for _, p, _ in model.parameters():
        p[...] = rng.uniform(-scale, scale, p.shape)


def check_model_gradients(model, batch, rng, *, n=6, full=(), before=None, eps=1e-6,
                          rel=1e-6, abs=1e-8):
    """Every parameter tensor of ``model``: the gradient of ``loss_and_grads(batch)``
    against central differences at n random entries (every entry of the parameters
    whose names start with one of ``full``). ``before()`` runs before every loss (to
    replay dropout masks). Returns the layer names checked."""
    before = before or (lambda: None)
    before()
    model.zero_grad()
    model.loss_and_grads(batch)
    worst, checked = 0.0, set()
    for name, p, g in model.parameters():
        flat_p, flat_g = p.reshape(-1), g.reshape(-1)
        idx = (range(flat_p.size) if full and name.startswith(full)
               else rng.choice(flat_p.size, size=min(n, flat_p.size), replace=False))
        for i in idx:
            old = flat_p[i]
            flat_p[i] = old + eps
            before()
            fp = model.loss_and_grads(batch, backward=False)[0]
            flat_p[i] = old - eps
            before()
            fm = model.loss_and_grads(batch, backward=False)[0]
            flat_p[i] = old
            num = (fp - fm) / (2 * eps)
            worst = max(worst, float(np.abs(flat_g[i] - num) / max(np.abs(num), 1e-6)))
            assert flat_g[i] == pytest.approx(num, rel=rel, abs=abs), f"{name}[{i}]"
        checked.add(name.split(".")[0])
    print(f"{type(model).__name__}: max rel err {worst:.2e} over {sorted(checked)}")
    return checked


def run(layer, x, state, lengths, dy, dfinal):
    """forward then backward from zero gradients: y, final, dx, dstate0 and a copy of
    every gradient."""
    layer.zero_grad()
    y, final = layer.forward(x, state, lengths)
    dx, dstate0 = layer.backward(dy, dfinal)
    return y, final, dx, dstate0, {k: g.copy() for k, g in layer.grads.items()}
