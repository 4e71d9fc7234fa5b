"""Compiled RNN and GRU kernels (seqcore._kernels.{path}.rnn, .gru) vs the NumPy
reference, on every kernel path the CPU runs.

Legend: T time steps, B batch, D input features, H hidden units.
Both sides get the same random inputs (weights, biases, b_cc, initial states, dy and
final-state gradients all random, never ones) and the same nonzero starting dW/db/db_cc,
so the "adds into" contract is checked too.
"""
import numpy as np
import pytest

from seqcore import reference as ref

from conftest import DTYPES, assert_close, compiled

pytestmark = pytest.mark.usefixtures("kernel_path")

# (T, B, D, H): T = 1, B = 1, a few odd sizes, and one with D > H.
SHAPES = [(1, 1, 3, 4), (1, 3, 2, 5), (5, 1, 4, 3), (6, 4, 5, 7), (9, 5, 11, 6), (4, 3, 1, 2)]


def _lengths(rng, T, B, variable):
    """(B,) int64 in [1, T], at least one full-length sequence when variable."""
    lengths = np.full(B, T, dtype=np.int64)
    if variable:
        lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
        lengths[rng.integers(B)] = T
    lengths.flags.writeable = False
    return lengths


def _inputs(rng, dtype, T, B, D, H, G):
    """Random x, initial state, W, b, b_cc, dy, final-state gradient, start dW/db/db_cc."""
    def r(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    s = 1.0 / np.sqrt(H + D)
    p = dict(x=r(T, B, D), s0=r(B, H, scale=0.5), W=r(G * H, H + D, scale=2 * s),
             b=r(G * H, scale=0.3), b_cc=r(H, scale=0.3), dy=r(T, B, H),
             ds_T=r(B, H), dW=r(G * H, H + D), db=r(G * H), db_cc=r(H))
    for arr in p.values():
        arr.flags.writeable = False      # inputs read-only: the kernels declare them const
    return p


def _active(T, lengths):
    """(T, B) mask of active steps."""
    return np.arange(T)[:, None] < lengths[None, :]


# ------------------------------------------------------------------------------ RNN

def _rnn_run(mod, p, lengths, relu):
    x, W = p["x"], p["W"]
    T, B, _ = x.shape
    H = W.shape[0]
    dtype = x.dtype
    a = np.full((T + 1, B, H), np.nan, dtype)              # outputs start as garbage
    mod.rnn_forward(a, x, p["s0"], W, p["b"], lengths, relu)
    dx = np.full(x.shape, np.nan, dtype)
    da0 = np.full((B, H), np.nan, dtype)
    da_sq = np.full((T, B), np.nan, dtype)
    dW, db = p["dW"].copy(), p["db"].copy()
    mod.rnn_backward(dx, da0, dW, db, da_sq, p["dy"], p["ds_T"], x, a, W, lengths, relu)
    return dict(a=a, dx=dx, da0=da0, dW=dW, db=db, da_sq=da_sq)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("variable", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_rnn_matches_reference(rng, dtype, relu, variable, shape):
    T, B, D, H = shape
    p = _inputs(rng, dtype, T, B, D, H, 1)
    lengths = _lengths(rng, T, B, variable)
    got = _rnn_run(compiled("rnn"), p, lengths, relu)
    want = _rnn_run(ref, p, lengths, relu)
    for name in ["a", "dx", "da0", "dW", "db", "da_sq"]:
        assert_close(got[name], want[name], dtype, name)


# ------------------------------------------------------------------------------ GRU

def _gru_run(mod, p, lengths, reset_after):
    x, W = p["x"], p["W"]
    T, B, _ = x.shape
    H = W.shape[0] // 3
    dtype = x.dtype
    b_cc = p["b_cc"] if reset_after else np.zeros(H, dtype)     # the layer passes zeros
    c = np.full((T + 1, B, H), np.nan, dtype)
    gates = np.full((T, B, 3 * H), np.nan, dtype)
    hc = np.full((T, B, H), np.nan, dtype)
    mod.gru_forward(c, gates, hc, x, p["s0"], W, p["b"], b_cc, lengths, reset_after)
    dx = np.full(x.shape, np.nan, dtype)
    dc0 = np.full((B, H), np.nan, dtype)
    da_sq = np.full((T, B), np.nan, dtype)
    dW, db, db_cc = p["dW"].copy(), p["db"].copy(), p["db_cc"].copy()
    mod.gru_backward(dx, dc0, dW, db, db_cc, da_sq, p["dy"], p["ds_T"], x, c, gates, hc,
                     W, lengths, reset_after)
    return dict(c=c, gates=gates, hc=hc, dx=dx, dc0=dc0, dW=dW, db=db, db_cc=db_cc,
                da_sq=da_sq)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("variable", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_gru_matches_reference(rng, dtype, reset_after, variable, shape):
    T, B, D, H = shape
    p = _inputs(rng, dtype, T, B, D, H, 3)
    lengths = _lengths(rng, T, B, variable)
    got = _gru_run(compiled("gru"), p, lengths, reset_after)
    want = _gru_run(ref, p, lengths, reset_after)
    active = _active(T, lengths)
    for name in ["c", "dx", "dc0", "dW", "db", "db_cc", "da_sq"]:
        assert_close(got[name], want[name], dtype, name)
    # gates and hc are only contractual where the step ran.
    for name in ["gates", "hc"]:
        assert_close(got[name][active], want[name][active], dtype, name)
    if not reset_after:
        assert np.array_equal(got["db_cc"], p["db_cc"]), "db_cc touched when not reset_after"


def test_wrong_dtype_or_layout_raises():
    """Typed signatures: a mismatched dtype or a non-contiguous array raises, not crashes."""
    T, B, D, H = 2, 2, 3, 4
    x = np.zeros((T, B, D))
    a = np.zeros((T + 1, B, H))
    a0, W, b = np.zeros((B, H)), np.zeros((H, H + D)), np.zeros(H)
    lengths = np.full(B, T, dtype=np.int64)
    with pytest.raises((TypeError, ValueError)):
        compiled("rnn").rnn_forward(a, x.astype(np.float32), a0, W, b, lengths, False)
    with pytest.raises((TypeError, ValueError)):
        compiled("rnn").rnn_forward(a, np.asfortranarray(x), a0, W, b, lengths, False)
    with pytest.raises((TypeError, ValueError)):
        compiled("rnn").rnn_forward(a, x, a0, W, b, lengths.astype(np.int32), False)
    c, gates, hc = np.zeros((T + 1, B, H)), np.zeros((T, B, 3 * H)), np.zeros((T, B, H))
    W3, b3, b_cc = np.zeros((3 * H, H + D)), np.zeros(3 * H), np.zeros(H)
    compiled("gru").gru_forward(c, gates, hc, x, a0, W3, b3, b_cc, lengths, True)     # the valid call
    with pytest.raises((TypeError, ValueError)):
        compiled("gru").gru_forward(c, gates[:, :, ::2], hc, x, a0, W3, b3, b_cc, lengths, True)
    with pytest.raises((TypeError, ValueError)):
        compiled("gru").gru_forward(c.astype(np.float32), gates, hc, x, a0, W3, b3, b_cc, lengths, True)
