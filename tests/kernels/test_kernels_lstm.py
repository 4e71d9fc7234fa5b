"""Compiled LSTM kernels (seqcore._kernels.{path}.lstm, fast path) against the NumPy reference,
on every kernel path the CPU runs."""
import numpy as np
import pytest

from seqcore import reference

from conftest import DTYPES, assert_close, compiled

pytestmark = pytest.mark.usefixtures("kernel_path")

# (T, B, D, H): single step, single sequence, and a few irregular shapes
SHAPES = [(1, 3, 2, 4), (4, 1, 3, 2), (1, 1, 2, 3), (7, 3, 5, 4), (5, 4, 3, 6)]


def make_lengths(rng, T, B, variable):
    """(B,) int64 in [1, T]; with `variable`, random but one sequence of full length."""
    if not variable:
        return np.full(B, T, dtype=np.int64)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
    lengths[rng.integers(B)] = T
    return lengths


def make_problem(rng, T, B, D, H, dtype, peephole, variable):
    """Random inputs of one forward/backward run: nothing is all-ones or shared."""
    def randn(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    return dict(
        x=randn(T, B, D),                                 # (T, B, D)
        a0=randn(B, H, scale=0.5),                        # (B, H)
        c0=randn(B, H, scale=0.5),                        # (B, H)
        W=randn(4 * H, H + D, scale=0.5),                 # (4H, H+D)
        b=randn(4 * H, scale=0.5),                        # (4H,)
        p=randn(3, H, scale=0.5) if peephole else np.zeros((3, H), dtype),  # (3, H)
        lengths=make_lengths(rng, T, B, variable),        # (B,)
        dy=randn(T, B, H),                                # (T, B, H)
        da_T=randn(B, H),                                 # (B, H)
        dc_T=randn(B, H),                                 # (B, H)
        dW=randn(4 * H, H + D),                           # (4H, H+D), initial value
        db=randn(4 * H),                                  # (4H,), initial value
        dp=randn(3, H),                                   # (3, H), initial value
    )


def run_forward(fwd, pr, peephole):
    T, B, D = pr["x"].shape
    H = pr["a0"].shape[1]
    dtype = pr["x"].dtype
    a = np.full((T + 1, B, H), np.nan, dtype)             # outputs start as garbage
    c = np.full((T + 1, B, H), np.nan, dtype)
    gates = np.full((T, B, 4 * H), np.nan, dtype)
    fwd(a, c, gates, pr["x"], pr["a0"], pr["c0"], pr["W"], pr["b"], pr["p"],
        pr["lengths"], peephole)
    return a, c, gates


def run_backward(bwd, pr, a, c, gates, peephole):
    T, B, D = pr["x"].shape
    H = pr["a0"].shape[1]
    dtype = pr["x"].dtype
    out = dict(
        dx=np.full((T, B, D), np.nan, dtype),
        da0=np.full((B, H), np.nan, dtype),
        dc0=np.full((B, H), np.nan, dtype),
        dW=pr["dW"].copy(),
        db=pr["db"].copy(),
        dp=pr["dp"].copy(),
        da_sq=np.full((T, B), np.nan, dtype),
        dc_sq=np.full((T, B), np.nan, dtype),
    )
    bwd(out["dx"], out["da0"], out["dc0"], out["dW"], out["db"], out["dp"],
        out["da_sq"], out["dc_sq"], pr["dy"], pr["da_T"], pr["dc_T"],
        pr["x"], a, c, gates, pr["W"], pr["p"], pr["lengths"], peephole)
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dD%dH%d" % s)
@pytest.mark.parametrize("variable", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("peephole", [False, True], ids=["plain", "peephole"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_kernels_match_reference(rng, dtype, peephole, variable, shape):
    T, B, D, H = shape
    pr = make_problem(rng, T, B, D, H, dtype, peephole, variable)
    active = np.arange(T)[:, None] < pr["lengths"][None, :]         # (T, B)

    a, c, gates = run_forward(compiled("lstm").lstm_forward, pr, peephole)
    a_ref, c_ref, gates_ref = run_forward(reference.lstm_forward, pr, peephole)
    assert_close(a, a_ref, dtype, "a")
    assert_close(c, c_ref, dtype, "c")
    assert_close(gates[active], gates_ref[active], dtype, "gates")
    assert np.all(gates[~active] == 0), "gates at inactive steps are not zeroed"

    # backward of each implementation from its own forward pass
    grads = run_backward(compiled("lstm").lstm_backward, pr, a, c, gates, peephole)
    grads_ref = run_backward(reference.lstm_backward, pr, a_ref, c_ref, gates_ref, peephole)
    for name in ["dx", "da0", "dc0", "dW", "db", "dp", "da_sq", "dc_sq"]:
        assert_close(grads[name], grads_ref[name], dtype, name)
    if not peephole:
        np.testing.assert_array_equal(grads["dp"], pr["dp"], "dp changed without peepholes")

    # the compiled backward never reads gates at inactive steps: NaN there changes nothing
    gates_nan = gates_ref.copy()
    gates_nan[~active] = np.nan
    grads_nan = run_backward(compiled("lstm").lstm_backward, pr, a_ref, c_ref, gates_nan, peephole)
    for name in ["dx", "da0", "dc0", "dW", "db", "dp", "da_sq", "dc_sq"]:
        assert_close(grads_nan[name], grads_ref[name], dtype, name + " (NaN gates at inactive steps)")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_kernels_accept_read_only_inputs(rng, dtype):
    T, B, D, H = 3, 2, 3, 4
    pr = make_problem(rng, T, B, D, H, dtype, True, True)
    for arr in pr.values():
        arr.flags.writeable = False
    a, c, gates = run_forward(compiled("lstm").lstm_forward, pr, True)
    for arr in (a, c, gates):
        arr.flags.writeable = False
    grads = run_backward(compiled("lstm").lstm_backward, pr, a, c, gates, True)
    assert np.all(np.isfinite(grads["dx"]))


def test_lstm_kernels_reject_wrong_dtype_or_layout(rng):
    T, B, D, H = 3, 2, 3, 4
    pr = make_problem(rng, T, B, D, H, np.float64, False, False)
    a = np.zeros((T + 1, B, H))
    c = np.zeros((T + 1, B, H))
    gates = np.zeros((T, B, 4 * H))
    args = [pr[k] for k in ("x", "a0", "c0", "W", "b", "p", "lengths")]
    with pytest.raises((TypeError, ValueError)):                     # mixed dtypes
        compiled("lstm").lstm_forward(a, c, gates, pr["x"].astype(np.float32), *args[1:], False)
    with pytest.raises((TypeError, ValueError)):                     # not C-contiguous
        compiled("lstm").lstm_forward(a, c, gates, np.asfortranarray(pr["x"]), *args[1:], False)
    with pytest.raises((TypeError, ValueError)):                     # int32 lengths
        compiled("lstm").lstm_forward(a, c, gates, *args[:-1], pr["lengths"].astype(np.int32), False)
