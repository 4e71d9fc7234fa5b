"""Dropout: the Dropout layer, dropout between stacked recurrent layers, train()/eval().

The recurrent layers' dropout is checked three ways, each with the masks fixed by
replaying the layer's generator:
* against the definition: single-layer layers with the same weights, stacked by
  hand with x_{l+1} = y_l * m_l / (1 - p) (PyTorch's semantics);
* the compiled core against the NumPy reference, forward and backward, both dtypes,
  on every kernel path;
* finite differences of the reference in float64.
"""
import copy

import numpy as np
import pytest

from _cases import CELL_IDS, copy_params, make_layer, random_lengths, random_state, state_list
from conftest import DTYPES, assert_close, numeric_grad
from seqcore import Dense, Dropout
from seqcore.nn.dropout import dropout_mask


# ---------------------------------------------------------------- the Dropout layer

@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_layer_scales_kept_elements_and_backward_uses_the_same_mask(dtype, rng):
    p = 0.3
    layer = Dropout(p, dtype=dtype, seed=4)
    x = rng.standard_normal((50, 40, 30)).astype(dtype)
    y = layer.forward(x)
    kept = y != 0
    assert_close(y[kept], x[kept] / (1 - p), dtype, "kept elements")
    assert abs((~kept).mean() - p) < 0.01                  # 60,000 draws: p within 1%
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = layer.backward(dy)
    assert np.array_equal(dx == 0, ~kept)
    assert_close(dx[kept], dy[kept] / (1 - p), dtype, "dx")


def test_dropout_layer_is_the_identity_in_eval_mode_and_at_p_zero(rng):
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    layer = Dropout(0.5, seed=1)
    assert layer.training and layer.eval() is layer and not layer.training
    assert layer.forward(x) is x and layer.backward(x) is x
    assert Dropout(0.0).forward(x) is x
    assert layer.train() is layer and layer.training


def test_dropout_masks_follow_the_seed():
    x = np.ones((8, 8), np.float32)
    assert np.array_equal(Dropout(0.5, seed=3).forward(x), Dropout(0.5, seed=3).forward(x))
    assert not np.array_equal(Dropout(0.5, seed=3).forward(x), Dropout(0.5, seed=4).forward(x))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_out_of_range_is_refused(p):
    with pytest.raises(ValueError, match="probability in"):
        Dropout(p)
    with pytest.raises(ValueError, match="dropout: expected a probability"):
        make_layer("lstm", 3, 4, num_layers=2, dropout=p)


@pytest.mark.parametrize("p", ["0.5", None, True])
def test_dropout_of_the_wrong_type_is_refused(p):
    with pytest.raises(TypeError, match="dropout"):
        make_layer("gru", 3, 4, num_layers=2, dropout=p)


def test_dropout_on_one_layer_warns_as_pytorch_does():
    with pytest.warns(UserWarning, match="between stacked layers"):
        make_layer("rnn_tanh", 3, 4, num_layers=1, dropout=0.2)


# ------------------------------------------------------- stacked recurrent layers

def _manual_stack(layer, x, state, lengths, masks):
    """The stack by hand: single-layer copies of each layer, dropout between them."""
    L, dirs = layer.num_layers, layer.num_directions
    parts, y, finals = [], x, []
    states = state_list(state) if state is not None else None
    for l in range(L):
        one = make_layer(_case_id(layer), layer._layer_input_size(l), layer.hidden_size, dtype=layer.dtype,
                         bidirectional=layer.bidirectional)
        for name in one.params:
            src = name.replace("_l0", f"_l{l}")
            one.params[name][...] = layer.params[src]
        s = None
        if states is not None:
            s = [st[l * dirs:(l + 1) * dirs] for st in states]
            s = s[0] if len(s) == 1 else tuple(s)
        y, f = one.forward(y, s, lengths)
        finals.append(f)
        parts.append(one)
        if l < L - 1:
            y = y * masks[l]
    return y, finals, parts


def _case_id(layer):
    from _cases import CELLS
    for cid, cls, opts in CELLS:
        if type(layer) is cls and all(getattr(layer, k) == v for k, v in opts.items()):
            return cid
    raise AssertionError(layer)


def _replayed_masks(layer, T, B):
    """The masks the layer's next forward draws (from a copy of its generator)."""
    g = copy.deepcopy(layer.generator)
    shape = (T, B, layer.num_directions * layer.hidden_size)
    return [dropout_mask(g, shape, layer.dropout, layer.dtype)
            for _ in range(layer.num_layers - 1)]


@pytest.mark.parametrize("cell", CELL_IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacked_dropout_is_dropout_between_single_layers(cell, bidirectional, rng):
    T, B, D, H = 6, 3, 4, 5
    layer = make_layer(cell, D, H, num_layers=3, bidirectional=bidirectional, dropout=0.4,
                       seed=7)
    x = rng.standard_normal((T, B, D))
    lengths = random_lengths(T, B, rng)
    masks = _replayed_masks(layer, T, B)
    y, final = layer.forward(x, None, lengths)
    y_ref, finals, parts = _manual_stack(layer, x, None, lengths, masks)
    assert_close(y, y_ref, np.float64, "y")
    for i, s in enumerate(state_list(final)):
        expected = np.concatenate([state_list(f)[i] for f in finals])
        assert_close(s, expected, np.float64, f"final state {i}")
    # backward: the same chain by hand, through the masks
    dy = rng.standard_normal(y.shape)
    layer.zero_grad()
    dx, _ = layer.backward(dy)
    d = dy
    for l in reversed(range(layer.num_layers)):
        d, _ = parts[l].backward(d)
        if l > 0:
            d = d * masks[l - 1]
    assert_close(dx, d, np.float64, "dx")
    for l, one in enumerate(parts):
        for name, g in one.grads.items():
            assert_close(layer.grads[name.replace("_l0", f"_l{l}")], g, np.float64, name)


@pytest.mark.parametrize("cell", CELL_IDS)
def test_eval_mode_and_p_zero_drop_nothing(cell, rng):
    T, B, D, H = 5, 2, 3, 4
    layer = make_layer(cell, D, H, num_layers=2, dropout=0.5, seed=2)
    plain = make_layer(cell, D, H, num_layers=2, seed=2)
    x = rng.standard_normal((T, B, D))
    assert layer.eval() is layer and not layer.training
    assert_close(layer.forward(x)[0], plain.forward(x)[0], np.float64, "eval")
    layer.train()
    assert not np.allclose(layer.forward(x)[0], plain.forward(x)[0])


@pytest.mark.usefixtures("kernel_path")
@pytest.mark.parametrize("cell", CELL_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_dropout_equals_reference(cell, dtype, rng):
    T, B, D, H = 7, 4, 5, 6
    kw = dict(num_layers=3, bidirectional=True, dropout=0.3, dtype=dtype)
    ref = make_layer(cell, D, H, backend="numpy", seed=11, **kw)
    fast = make_layer(cell, D, H, backend="cython", seed=11, **kw)
    copy_params(fast, ref)
    fast.generator = copy.deepcopy(ref.generator)          # the same masks
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state = random_state(ref, B, rng)
    lengths = random_lengths(T, B, rng)
    outs = []
    for layer in (ref, fast):
        layer.zero_grad()
        y, final = layer.forward(x, state, lengths)
        dy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
        dx, d0 = layer.backward(dy)
        outs.append((y, final, dx, d0, layer.grads))
    (y0, f0, dx0, d00, g0), (y1, f1, dx1, d01, g1) = outs
    assert_close(y1, y0, dtype, "y")
    assert_close(dx1, dx0, dtype, "dx")
    for a, b in zip(state_list(f1) + state_list(d01), state_list(f0) + state_list(d00)):
        assert_close(a, b, dtype, "state")
    for name in g0:
        assert_close(g1[name], g0[name], dtype, name)


@pytest.mark.parametrize("cell", CELL_IDS)
def test_dropout_finite_differences(cell, rng):
    """dC/dx and dC/dW through two dropout masks, in float64, masks fixed by replay."""
    T, B, D, H = 4, 2, 3, 3
    layer = make_layer(cell, D, H, num_layers=3, bidirectional=True, dropout=0.5, seed=3)
    head = Dense(2 * H, 2, dtype=np.float64, seed=1)
    g0 = copy.deepcopy(layer.generator)
    x = rng.standard_normal((T, B, D))
    lengths = random_lengths(T, B, rng)
    w = rng.standard_normal((T, B, 2))

    def cost():
        layer.generator = copy.deepcopy(g0)
        y, _ = layer.forward(x, None, lengths)
        return float((head.forward(y) * w).sum())

    cost()
    layer.zero_grad()
    head.zero_grad()
    dx, _ = layer.backward(head.backward(w))
    assert_close(dx, numeric_grad(cost, x), np.float64, "dx", rtol=1e-6, atol=1e-8)
    for name in ("W_l0", "W_l1_reverse", "b_l2"):
        assert_close(layer.grads[name], numeric_grad(cost, layer.params[name]), np.float64,
                     name, rtol=1e-6, atol=1e-8)
