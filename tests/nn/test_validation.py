"""Bad inputs raise a clear ValueError/TypeError at the boundary; nothing reaches the core."""
import numpy as np
import pytest

import seqcore

BACKENDS = ["cython", "numpy"]


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(input_size=0, hidden_size=4), ValueError, "input_size"),
    (dict(input_size=-3, hidden_size=4), ValueError, "input_size"),
    (dict(input_size=2.5, hidden_size=4), TypeError, "input_size"),
    (dict(input_size="3", hidden_size=4), TypeError, "input_size"),
    (dict(input_size=True, hidden_size=4), TypeError, "input_size"),
    (dict(input_size=3, hidden_size=0), ValueError, "hidden_size"),
    (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, "num_layers"),
    (dict(input_size=3, hidden_size=4, dtype=np.int32), TypeError, "dtype"),
    (dict(input_size=3, hidden_size=4, dtype=np.float16), TypeError, "dtype"),
    (dict(input_size=3, hidden_size=4, dtype="banana"), TypeError, "dtype"),
    (dict(input_size=3, hidden_size=4, backend="torch"), ValueError, "backend"),
    (dict(input_size=3, hidden_size=4, bidirectional="yes"), TypeError, "bidirectional"),
    (dict(input_size=3, hidden_size=4, batch_first=1), TypeError, "batch_first"),
    (dict(input_size=3, hidden_size=4, seed=-1), ValueError, "seed"),
    (dict(input_size=3, hidden_size=4, peephole="no"), TypeError, "peephole"),
])
def test_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        seqcore.LSTM(**kwargs)


def test_cell_options():
    with pytest.raises(ValueError, match="nonlinearity"):
        seqcore.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="reset_after"):
        seqcore.GRU(3, 4, reset_after=None)


@pytest.fixture(params=BACKENDS)
def lstm(request):
    return seqcore.LSTM(3, 4, num_layers=2, backend=request.param, seed=0)


@pytest.fixture(params=BACKENDS)
def gru(request):
    return seqcore.GRU(3, 4, bidirectional=True, backend=request.param, seed=0)


X = np.zeros((5, 2, 3), np.float32)


@pytest.mark.parametrize("x,error,match", [
    (np.zeros((5, 3), np.float32), ValueError, r"x: expected 3 dimensions \(T, B, 3\)"),
    (np.zeros((5, 2, 4), np.float32), ValueError, r"x: expected shape \(T, B, 3\)"),
    (np.zeros((5, 2, 3), np.float64), TypeError, "x: expected dtype float32, got float64"),
    (np.zeros((5, 2, 3), np.int64), TypeError, "x: expected dtype float32"),
    (np.zeros((5, 2, 3), np.complex64), TypeError, "x: expected dtype float32"),
    (np.zeros((0, 2, 3), np.float32), ValueError, "empty"),
    (np.zeros((5, 0, 3), np.float32), ValueError, "empty"),
    (np.full((5, 2, 3), np.nan, np.float32), ValueError, "x: contains NaN"),
    (np.full((5, 2, 3), np.inf, np.float32), ValueError, "x: contains NaN or inf"),
    ("hello", TypeError, "x"),
    (None, TypeError, "x"),
    (np.array([["a"]]), TypeError, "x"),
])
def test_bad_x(lstm, x, error, match):
    with pytest.raises(error, match=match):
        lstm.forward(x)


@pytest.mark.parametrize("lengths,error,match", [
    (np.array([0, 5]), ValueError, r"lengths: expected values in \[1, 5\]"),
    (np.array([6, 5]), ValueError, r"lengths: expected values in \[1, 5\]"),
    (np.array([-1, 5]), ValueError, "lengths"),
    (np.array([5]), ValueError, r"lengths: expected shape \(2,\)"),
    (np.array([[5, 5]]), ValueError, r"lengths: expected shape \(2,\)"),
    (np.array([2.5, 5.0]), TypeError, "lengths: expected integers"),
    (np.array([np.nan, 5.0]), TypeError, "lengths: expected integers"),
    (["a", "b"], TypeError, "lengths"),
])
def test_bad_lengths(gru, lengths, error, match):
    with pytest.raises(error, match=match):
        gru.forward(X, lengths=lengths)


def test_whole_float_lengths_are_accepted(gru):
    y1, _ = gru.forward(X, lengths=np.array([3.0, 5.0]))
    y2, _ = gru.forward(X, lengths=[3, 5])
    np.testing.assert_array_equal(y1, y2)


def test_bad_state_gru(gru):
    with pytest.raises(ValueError, match=r"state: expected shape \(2, 2, 4\)"):
        gru.forward(X, state=np.zeros((1, 2, 4), np.float32))
    with pytest.raises(TypeError, match="state: expected one array"):
        gru.forward(X, state=(np.zeros((2, 2, 4), np.float32),) * 2)
    with pytest.raises(TypeError, match="state: expected dtype float32"):
        gru.forward(X, state=np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="state: contains NaN"):
        gru.forward(X, state=np.full((2, 2, 4), np.nan, np.float32))


def test_bad_state_lstm(lstm):
    good = np.zeros((2, 2, 4), np.float32)
    with pytest.raises(TypeError, match=r"state: expected a pair \(a, c\)"):
        lstm.forward(X, state=good)
    with pytest.raises(TypeError, match=r"state: expected a pair \(a, c\)"):
        lstm.forward(X, state=(good, good, good))
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape \(2, 2, 4\)"):
        lstm.forward(X, state=(good, np.zeros((2, 3, 4), np.float32)))


def test_backward_before_forward(lstm):
    with pytest.raises(ValueError, match="before forward"):
        lstm.backward(np.zeros((5, 2, 4), np.float32))


def test_bad_dy_and_dstate(lstm):
    lstm.forward(X)
    with pytest.raises(ValueError, match=r"dy: expected shape \(5, 2, 4\)"):
        lstm.backward(np.zeros((4, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"dy: expected shape \(T, B, 4\)"):
        lstm.backward(np.zeros((5, 2, 8), np.float32))
    with pytest.raises(TypeError, match="dy: expected dtype float32"):
        lstm.backward(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match="dy: contains NaN"):
        lstm.backward(np.full((5, 2, 4), np.nan, np.float32))
    with pytest.raises(TypeError, match="dstate"):
        lstm.backward(np.zeros((5, 2, 4), np.float32), np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"dstate\[0\]: expected shape \(2, 2, 4\)"):
        lstm.backward(np.zeros((5, 2, 4), np.float32),
                      (np.zeros((2, 1, 4), np.float32), np.zeros((2, 2, 4), np.float32)))


def test_replaced_params_are_checked(lstm):
    lstm.params["W_l1"] = np.zeros((16, 7), np.float32)
    with pytest.raises(ValueError, match=r"params\['W_l1'\]: expected shape \(16, 8\)"):
        lstm.forward(X)
    lstm.params["W_l1"] = np.zeros((16, 8), np.float64)
    with pytest.raises(TypeError, match=r"params\['W_l1'\]: expected dtype float32"):
        lstm.forward(X)
    del lstm.params["W_l1"]
    with pytest.raises(ValueError, match=r"params\['W_l1'\]: missing"):
        lstm.forward(X)
    lstm.params["W_l1"] = np.asfortranarray(np.ones((16, 8), np.float32))
    lstm.forward(X)  # a Fortran-ordered replacement is fine


def test_replaced_grads_are_checked(lstm):
    y, _ = lstm.forward(X)
    lstm.grads["b_l0"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"grads\['b_l0'\].*zero_grad"):
        lstm.backward(np.zeros_like(y))
    lstm.zero_grad()
    lstm.backward(np.zeros_like(y))


def test_batch_first_shapes():
    layer = seqcore.RNN(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, T, 3\)"):
        layer.forward(np.zeros((2, 5, 2), np.float32))
    y, _ = layer.forward(np.zeros((2, 5, 3), np.float32))
    assert y.shape == (2, 5, 4)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 5, 4\)"):
        layer.backward(np.zeros((5, 2, 4), np.float32))


def test_dense_and_loss_validation():
    dense = seqcore.Dense(3, 2)
    with pytest.raises(ValueError, match="before forward"):
        dense.backward(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3\)"):
        dense.forward(np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        dense.forward(np.zeros((4, 3)))
    dense.forward(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"dy: expected shape \(4, 2\)"):
        dense.backward(np.zeros((4, 3), np.float32))
    logits = np.zeros((2, 1, 3))
    with pytest.raises(ValueError, match=r"targets: expected ids in \[0, 3\)"):
        seqcore.softmax_cross_entropy(logits, np.array([[0], [3]]))
    with pytest.raises(TypeError, match="targets: expected integer"):
        seqcore.softmax_cross_entropy(logits, np.array([[0.0], [1.0]]))
    with pytest.raises(ValueError, match=r"targets: expected shape \(2, 1\)"):
        seqcore.softmax_cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 1\)"):
        seqcore.softmax_cross_entropy(logits, np.array([[0], [1]]), mask=np.ones(2))
    with pytest.raises(TypeError, match="logits"):
        seqcore.softmax_cross_entropy(logits.astype(int), np.array([[0], [1]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_finds_every_nan_and_infinity(dtype):
    """The compiled check (contiguous float arrays) and NumPy's (any other array)."""
    from seqcore._validation import all_finite
    for n in (1, 15, 16, 17, 100):
        x = np.linspace(-1, 1, n).astype(dtype)
        assert all_finite(x) and all_finite(x[::2]) and all_finite(x.reshape(1, n).T)
        x[-1] = np.finfo(dtype).max                     # the largest finite value is fine
        assert all_finite(x)
        for bad in (np.nan, np.inf, -np.inf):
            for i in {0, n // 2, n - 1}:
                y = x.copy()
                y[i] = bad
                assert not all_finite(y), (n, i, bad)
                assert not all_finite(np.repeat(y, 2)[::2])   # strided: NumPy's path
    assert all_finite(np.arange(5))                     # integers: always finite
