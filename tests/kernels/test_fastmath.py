"""The compiled core's exp/sigmoid/tanh (csrc/_fastmath.h) against NumPy, over the whole range.

Read out through the kernels themselves: an RNN cell with W = [0 | 1], b = 0 returns
a<1> = tanh(x), and an LSTM cell whose update gate sees only x stores gamma_u = sigma(x).
"""
import numpy as np
import pytest

from conftest import DTYPES, compiled

pytestmark = pytest.mark.usefixtures("kernel_path")    # each path's own vectorized code

# tiny, small (Taylor branch below 0.1), medium, saturated and extreme arguments
X = np.concatenate([
    [0.0, 1e-30, -1e-30, 1e-8, -1e-8],
    np.linspace(-0.2, 0.2, 4001),
    np.linspace(-30, 30, 60001),
    [-100.0, 100.0, -1000.0, 1000.0, -1e30, 1e30],
])
# float32: a few ulp; float64: close to correct rounding
RTOL = {np.dtype(np.float32): 4e-7, np.dtype(np.float64): 2e-15}


def as_batch(x, dtype):
    return np.ascontiguousarray(x.astype(dtype).reshape(1, -1, 1))   # (T=1, B, D=1)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_tanh(dtype):
    x = as_batch(X, dtype)
    B = x.shape[1]
    a = np.empty((2, B, 1), dtype)
    W = np.array([[0.0, 1.0]], dtype)
    compiled("rnn").rnn_forward(a, x, np.zeros((B, 1), dtype), W, np.zeros(1, dtype),
                     np.ones(B, np.int64), False)
    got = a[1, :, 0].astype(np.float64)
    expected = np.tanh(x[0, :, 0].astype(np.float64))
    err = np.abs(got - expected) / np.maximum(np.abs(expected), np.finfo(dtype).tiny)
    assert np.all(np.isfinite(got))
    assert err.max() <= RTOL[np.dtype(dtype)], f"max rel err {err.max():.2e}"
    assert got[1] == pytest.approx(1e-30 if dtype == np.float64 else np.float32(1e-30))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_sigmoid(dtype):
    x = as_batch(X, dtype)
    B, H = x.shape[1], 1
    a = np.empty((2, B, H), dtype)
    c = np.empty((2, B, H), dtype)
    gates = np.empty((1, B, 4 * H), dtype)
    W = np.zeros((4 * H, H + 1), dtype)
    W[0, 1] = 1                                     # gamma_u = sigma(x)
    compiled("lstm").lstm_forward(a, c, gates, x, np.zeros((B, H), dtype), np.zeros((B, H), dtype),
                       W, np.zeros(4 * H, dtype), np.zeros((3, H), dtype),
                       np.ones(B, np.int64), False)
    got = gates[0, :, 0].astype(np.float64)
    x64 = x[0, :, 0].astype(np.float64)
    with np.errstate(over="ignore"):
        expected = 1 / (1 + np.exp(-x64))
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))
    # where sigma(x) is above the smallest normal number: relative accuracy
    normal = expected > np.finfo(dtype).tiny * 1e3
    err = np.abs(got - expected)[normal] / expected[normal]
    assert err.max() <= 2 * RTOL[np.dtype(dtype)], f"max rel err {err.max():.2e}"
    # below it the core clamps the argument: the value is tiny, never negative or NaN
    assert np.all(got[~normal] < 1e-30)
