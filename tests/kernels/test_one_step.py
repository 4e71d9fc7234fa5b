"""forward() of one token (T = B = 1): the compiled path of generation.

The cython backend runs such calls through a compiled stepper (checks in C, one
kernel per layer); these tests hold it to the NumPy reference, to the general path,
and to the general path's error messages.
"""
import numpy as np
import pytest

import seqcore
from _cases import CELL_IDS, copy_params, make_layer, random_state, state_list
from conftest import DTYPES, assert_close

pytestmark = pytest.mark.usefixtures("kernel_path")    # every kernel path the CPU runs


def pair(cell, D, H, dtype, **kwargs):
    """(compiled layer, reference layer) with the same parameters."""
    ref = make_layer(cell, D, H, dtype=dtype, backend="numpy", seed=3, **kwargs)
    fast = make_layer(cell, D, H, dtype=dtype, backend="cython", seed=4, **kwargs)
    copy_params(fast, ref)
    return fast, ref


def stepped(layer, x):
    """Run x (T, 1, D) token by token from a zero state; returns (ys, final state)."""
    ys, state = [], None
    for t in range(x.shape[0]):
        if state is not None and layer.backend == "cython":   # the stepper takes it
            assert layer._stepper.step(x[t:t + 1], state, seqcore.get_num_threads()) is not None
        y, state = layer.forward(x[t:t + 1], state)
        ys.append(y)
    return np.concatenate(ys), state


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
@pytest.mark.parametrize("D,H,L", [(3, 4, 1), (40, 36, 2), (24, 48, 1)],
                         ids=["tiny", "tails-2layers", "blocks"])
def test_token_by_token_matches_reference(cell, dtype, D, H, L, rng):
    """Outputs and states of a generation loop, and the gradients of a backward after
    the last token, against the reference run the same way and over the whole sequence."""
    fast, ref = pair(cell, D, H, dtype, num_layers=L)
    x = rng.standard_normal((6, 1, D)).astype(dtype)
    ys, state = stepped(fast, x)
    ys_ref, state_ref = stepped(ref, x)
    y_seq, state_seq = ref.forward(x)
    assert_close(ys, ys_ref, dtype, "y")
    assert_close(ys, y_seq, dtype, "y vs the whole sequence")
    for s, s_ref, s_seq in zip(state_list(state), state_list(state_ref), state_list(state_seq)):
        assert_close(s, s_ref, dtype, "state")
        assert_close(s, s_seq, dtype, "state vs the whole sequence")
    # backward of the last token, its initial state given
    s0 = random_state(fast, 1, rng)
    dy = rng.standard_normal((1, 1, H)).astype(dtype)
    dfinal = random_state(fast, 1, rng)
    for layer in (fast, ref):
        layer.zero_grad()
    y, final = fast.forward(x[:1], s0)
    y_ref, final_ref = ref.forward(x[:1], s0)
    assert fast._cache is fast._stepper.cache          # it ran on the stepper
    assert_close(y, y_ref, dtype, "y of the last token")
    dx, ds0 = fast.backward(dy, dfinal)
    dx_ref, ds0_ref = ref.backward(dy, dfinal)
    assert_close(dx, dx_ref, dtype, "dx")
    for g, g_ref in zip(state_list(ds0), state_list(ds0_ref)):
        assert_close(g, g_ref, dtype, "dstate0")
    for k in ref.grads:
        assert_close(fast.grads[k], ref.grads[k], dtype, f"grads[{k}]")


def test_batch_first_and_every_input_layout_take_the_same_step(rng):
    fast, ref = pair("lstm", 5, 20, np.float32, batch_first=True)
    x = rng.standard_normal((1, 1, 5)).astype(np.float32)
    state = random_state(fast, 1, rng)
    y, (a, c) = fast.forward(x, state)
    assert fast._cache is fast._stepper.cache
    y_ref, (a_ref, c_ref) = ref.forward(x, state)
    assert_close(y, y_ref, np.float32, "y")
    assert_close(c, c_ref, np.float32, "c")
    # a list for the state pair, or a strided x (the general path): the same numbers
    x_strided = np.repeat(x, 2, axis=2)[:, :, ::2]
    for args in ((x, list(state)), (x_strided, state)):
        y2, _ = fast.forward(*args)
        assert_close(y2, y, np.float32, "y, other layout")


def test_results_are_fresh_arrays(rng):
    """y and the states belong to the caller: the next step does not overwrite them."""
    layer = make_layer("gru", 4, 16, dtype=np.float32, backend="cython")
    x = rng.standard_normal((2, 1, 4)).astype(np.float32)
    y1, s1 = layer.forward(x[:1])
    y1_copy, s1_copy = y1.copy(), s1.copy()
    y2, s2 = layer.forward(x[1:], s1)
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(s1, s1_copy)
    assert not np.shares_memory(y2, s2) and not np.array_equal(y2, y1)


def test_replaced_and_updated_parameters_are_used(rng):
    fast, ref = pair("rnn_tanh", 3, 8, np.float64)
    x = rng.standard_normal((1, 1, 3))
    W = rng.standard_normal(ref.params["W_l0"].shape)
    fast.params["W_l0"] = W.copy()                   # a new array
    ref.params["W_l0"] = W.copy()
    assert_close(fast.forward(x)[0], ref.forward(x)[0], np.float64, "replaced W")
    fast.params["b_l0"] += 1.0                        # updated in place
    ref.params["b_l0"] += 1.0
    assert_close(fast.forward(x)[0], ref.forward(x)[0], np.float64, "updated b")


@pytest.mark.parametrize("cell", ["rnn_tanh", "gru", "lstm_peephole"])
def test_bad_arguments_raise_the_general_paths_errors(cell, rng):
    layer = make_layer(cell, 3, 5, dtype=np.float32, backend="cython")
    x = rng.standard_normal((1, 1, 3)).astype(np.float32)
    good = random_state(layer, 1, rng)
    two = isinstance(good, tuple)
    bad_x = x.copy()
    bad_x[0, 0, 1] = np.nan
    with pytest.raises(ValueError, match="x: contains NaN or infinity"):
        layer.forward(bad_x, good)
    with pytest.raises(TypeError, match="x: expected dtype float32, got float64"):
        layer.forward(x.astype(np.float64), good)
    with pytest.raises(ValueError, match=r"x: expected shape \(T, B, 3\)"):
        layer.forward(x[:, :, :2], good)
    s = state_list(good)
    s[0] = s[0].copy()
    s[0][0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        layer.forward(x, tuple(s) if two else s[0])
    with pytest.raises(ValueError, match=r"expected shape \(1, 1, 5\)"):
        layer.forward(x, tuple(a[:, :, :4] for a in state_list(good)) if two else good[:, :, :4])
    if two:
        with pytest.raises(TypeError, match="expected a pair"):
            layer.forward(x, good[0])
    name = "W_l0"
    saved = layer.params[name]
    layer.params[name] = saved[:, 1:].copy()
    with pytest.raises(ValueError, match=r"params\['W_l0'\]: expected shape"):
        layer.forward(x, good)
    layer.params[name] = saved.astype(np.float64)
    with pytest.raises(TypeError, match=r"params\['W_l0'\]: expected dtype float32"):
        layer.forward(x, good)
    layer.params[name] = saved
    y, _ = layer.forward(x, good)                     # and it still works afterwards
    assert np.isfinite(y).all()


@pytest.mark.parametrize("cell", CELL_IDS)
def test_thread_count_does_not_change_one_step(cell, rng):
    """Threads split the units of the step; every unit's sums are the same. A fresh
    layer per thread count, so that no unit can keep a previous call's value."""
    D, H = 64, 512                                     # enough weights for two threads
    ref = make_layer(cell, D, H, dtype=np.float32, backend="numpy")
    x = rng.standard_normal((1, 1, D)).astype(np.float32)
    state = random_state(ref, 1, rng)
    y_ref, _ = ref.forward(x, state)
    old = seqcore.get_num_threads()
    try:
        outs = []
        for n in (2, 3, 1):
            seqcore.set_num_threads(n)
            layer = make_layer(cell, D, H, dtype=np.float32, backend="cython")
            y, final = layer.forward(x, state)
            assert layer._cache is layer._stepper.cache
            assert_close(y, y_ref, np.float32, f"y with {n} threads")
            outs.append([y] + state_list(final))
    finally:
        seqcore.set_num_threads(old)
    for other in outs[1:]:
        for r0, r in zip(outs[0], other):
            np.testing.assert_array_equal(r, r0)


def test_numpy_backend_and_bidirectional_layers_have_no_stepper():
    assert make_layer("lstm", 3, 4, backend="numpy")._stepper is None
    assert make_layer("lstm", 3, 4, backend="cython", bidirectional=True)._stepper is None
