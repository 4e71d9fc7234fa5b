"""Dense and softmax_cross_entropy: finite differences, and PyTorch where installed."""
import numpy as np
import pytest

import seqcore
from conftest import numeric_grad



def test_dense_gradients_match_finite_differences(rng):
    layer = seqcore.Dense(4, 3, dtype=np.float64, seed=1)
    x = rng.standard_normal((5, 2, 4))
    dy = rng.standard_normal((5, 2, 3))
    y = layer.forward(x)
    np.testing.assert_allclose(y, x @ layer.params["W"].T + layer.params["b"], rtol=1e-14)
    dx = layer.backward(dy)
    f = lambda: float((layer.forward(x) * dy).sum())  # noqa: E731
    for name, analytic, arr in [("dx", dx, x), ("W", layer.grads["W"], layer.params["W"]),
                                ("b", layer.grads["b"], layer.params["b"])]:
        num = numeric_grad(f, arr)
        np.testing.assert_allclose(analytic, num, rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("use_mask", [False, True])
def test_softmax_cross_entropy_gradient_matches_finite_differences(use_mask, rng):
    T, B, V = 4, 3, 5
    logits = rng.standard_normal((T, B, V)) * 3
    targets = rng.integers(0, V, (T, B))
    mask = (rng.random((T, B)) < 0.7) if use_mask else None
    loss, dlogits = seqcore.softmax_cross_entropy(logits, targets, mask)
    num = numeric_grad(lambda: seqcore.softmax_cross_entropy(logits, targets, mask)[0], logits)
    np.testing.assert_allclose(dlogits, num, rtol=1e-6, atol=1e-8)


def test_cost_is_summed_over_time_and_averaged_over_batch(rng):
    """The notes' C = sum_t L(y<t>, y_hat<t>): for B = 1 exactly the sum of the step losses."""
    T, V = 6, 4
    logits = rng.standard_normal((T, 1, V))
    targets = rng.integers(0, V, (T, 1))
    p = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    expected = -sum(np.log(p[t, 0, targets[t, 0]]) for t in range(T))
    loss, _ = seqcore.softmax_cross_entropy(logits, targets)
    assert loss == pytest.approx(expected, rel=1e-12)
    # Uniform logits cost T ln V: the baseline of a language model that knows nothing.
    loss, _ = seqcore.softmax_cross_entropy(np.zeros((T, 2, V)), np.zeros((T, 2), int))
    assert loss == pytest.approx(T * np.log(V), rel=1e-12)


def test_softmax_cross_entropy_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    T, B, V = 5, 3, 7
    logits = rng.standard_normal((T, B, V))
    targets = rng.integers(0, V, (T, B))
    loss, dlogits = seqcore.softmax_cross_entropy(logits, targets)
    lt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(lt.reshape(-1, V), torch.tensor(targets).reshape(-1),
                                            reduction="sum") / B
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(dlogits, lt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[[1000.0, 0.0, -1000.0]]])
    loss, d = seqcore.softmax_cross_entropy(logits, np.array([[0]]))
    assert loss == 0.0 and np.isfinite(d).all()
    loss, d = seqcore.softmax_cross_entropy(logits, np.array([[2]]))
    assert loss == pytest.approx(2000.0) and np.isfinite(d).all()


# ------------------------------------------------ compiled kernels against the references

from conftest import DTYPES, assert_close  # noqa: E402

from seqcore import _dispatch, reference  # noqa: E402

# (T, B, K, V): tiny, the char-level and word-level LM's output layers (cut down),
# and one row (sampling one token)
SHAPES = [(3, 2, 5, 7), (16, 8, 64, 100), (5, 4, 96, 3000), (1, 1, 4, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_dense_matches_reference(shape, dtype, kernel_path, rng):
    T, B, K, V = shape
    layer = seqcore.Dense(K, V, dtype=dtype, seed=3)
    W, b = layer.params["W"], layer.params["b"]
    x = rng.standard_normal((T, B, K)).astype(dtype)
    dy = rng.standard_normal((T, B, V)).astype(dtype)
    y = layer.forward(x)
    assert_close(y, reference.dense_forward(x, W, b), dtype, "y")
    g0W = rng.standard_normal(W.shape).astype(dtype)       # backward adds into grads
    g0b = rng.standard_normal(b.shape).astype(dtype)
    layer.grads["W"][...] = g0W
    layer.grads["b"][...] = g0b
    dx = layer.backward(dy)
    dW, db = g0W.copy(), g0b.copy()
    dx_ref = reference.dense_backward(dy.reshape(-1, V), x.reshape(-1, K), W, dW, db)
    assert_close(dx, dx_ref.reshape(dx.shape), dtype, "dx")
    assert_close(layer.grads["W"], dW, dtype, "dW")
    assert_close(layer.grads["b"], db, dtype, "db")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_on_one_thread_and_two_gives_the_same_numbers(dtype, rng):
    """The threads split columns or rows of each product, never a sum: equal bits."""
    T, B, K, V = 16, 32, 128, 1000
    x = rng.standard_normal((T, B, K)).astype(dtype)
    dy = rng.standard_normal((T, B, V)).astype(dtype)
    targets = rng.integers(0, V, (T, B))
    out = []
    for n in (1, 2):
        old = seqcore.set_num_threads(n)
        try:
            layer = seqcore.Dense(K, V, dtype=dtype, seed=3)
            y = layer.forward(x)
            dx = layer.backward(dy)
            loss, dl = seqcore.softmax_cross_entropy(y, targets)
        finally:
            seqcore.set_num_threads(old)
        out.append((y, dx, layer.grads["W"], layer.grads["b"], dl))
    for name, a, b in zip(("y", "dx", "dW", "db", "dlogits"), *out):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("shape", [(4, 3, 5), (8, 16, 100), (3, 5, 3001), (1, 1, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_softmax_cross_entropy_matches_reference(shape, dtype, use_mask,
                                                          kernel_path, rng):
    T, B, V = shape
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    targets = rng.integers(0, V, (T, B))
    mask = (rng.random((T, B)) < 0.6) if use_mask else None
    loss, dlogits = seqcore.softmax_cross_entropy(logits, targets, mask)
    w = (np.ones((T, B)) if mask is None else mask).astype(dtype) / B
    loss_ref, dlogits_ref = reference.softmax_cross_entropy(logits, targets, w)
    assert loss == pytest.approx(loss_ref, rel=TOL_LOSS[np.dtype(dtype)], abs=1e-12)
    assert_close(dlogits, dlogits_ref, dtype, "dlogits")


TOL_LOSS = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_refuses_non_finite_logits(bad, dtype, rng):
    logits = rng.standard_normal((3, 2, 37)).astype(dtype)
    mask = np.ones((3, 2))
    for where in [(0, 0, 0), (2, 1, 36), (1, 0, 17)]:     # a block of 16, the tail, a middle
        z = logits.copy()
        z[where] = bad
        mask[where[:2]] = 0                              # even where the mask is 0
        with pytest.raises(ValueError, match="logits: contains NaN or infinity"):
            seqcore.softmax_cross_entropy(z, np.zeros((3, 2), int), mask)


def test_dense_refuses_replaced_grads():
    layer = seqcore.Dense(3, 4)
    layer.forward(np.zeros((2, 3), np.float32))
    layer.grads["W"] = np.zeros((4, 3), np.float64)
    with pytest.raises(ValueError, match=r"grads\['W'\].*zero_grad"):
        layer.backward(np.zeros((2, 4), np.float32))
    layer.zero_grad()
    layer.backward(np.zeros((2, 4), np.float32))


def test_dense_copies_get_a_workspace_of_their_own(rng):
    import copy
    import pickle
    layer = seqcore.Dense(8, 50, seed=0)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    y = layer.forward(x)
    for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert twin._work is None
        np.testing.assert_array_equal(twin.forward(x), y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_embedding_backward_matches_reference(dtype, kernel_path, rng):
    V, E = 13, 6
    layer = seqcore.Embedding(V, E, dtype=dtype, seed=1)
    ids = rng.integers(-1, V, (9, 4))                   # repeats, and -1 (no token)
    ids[0, :] = -1
    ids[1, :] = 5                                       # one token at many positions
    layer.forward(ids)
    dx = rng.standard_normal((9, 4, E)).astype(dtype)
    g0 = rng.standard_normal((V, E)).astype(dtype)
    layer.grads["W"][...] = g0
    layer.backward(dx)
    ref = g0.copy()
    reference.embedding_backward(ref, ids, dx)
    assert_close(layer.grads["W"], ref, dtype, "dW")
    layer.zero_grad()
    layer.forward(np.asfortranarray(ids))               # ids in any layout
    layer.backward(dx)
    assert_close(layer.grads["W"], ref - g0, dtype, "dW (Fortran-ordered ids)")
    layer.grads["W"] = np.zeros((V, E + 1), dtype)
    with pytest.raises(ValueError, match=r"grads\['W'\].*zero_grad"):
        layer.backward(dx)


def test_outputs_the_caller_holds_are_never_reused(rng):
    """Dense and the cost reuse their last output array only once nothing else holds it
    (not the caller's name, not a view of it)."""
    layer = seqcore.Dense(6, 9, seed=2)
    x1, x2 = (rng.standard_normal((4, 3, 6)).astype(np.float32) for _ in range(2))
    t = rng.integers(0, 9, (4, 3))
    y1 = layer.forward(x1)
    keep = y1.copy()
    y2 = layer.forward(x2)                           # y1 held by its name: a new array
    assert y2 is not y1
    np.testing.assert_array_equal(y1, keep)
    view = y2[-1]
    keep2, second = y2.copy(), id(y2)
    del y1, y2
    y3 = layer.forward(x1)                           # y2 held by a view: a new array
    np.testing.assert_array_equal(view, keep2[-1])
    assert id(y3) != second
    del view
    third = id(y3)
    del y3
    y4 = layer.forward(x1)                           # let go of: the same array again
    assert id(y4) == third
    np.testing.assert_array_equal(y4, keep)

    l1, d1 = seqcore.softmax_cross_entropy(y4, t)
    keep_d = d1.copy()
    l2, d2 = seqcore.softmax_cross_entropy(y4 * 2, t)
    assert d2 is not d1
    np.testing.assert_array_equal(d1, keep_d)
    dx1 = layer.backward(d1)
    keep_dx = dx1.copy()
    dx2 = layer.backward(d2)
    assert dx2 is not dx1
    np.testing.assert_array_equal(dx1, keep_dx)
    held = id(dx2)
    del dx1, dx2
    assert id(layer.backward(d1)) == held             # let go of: reused
    kept = id(d2)
    del d1, d2
    l3, d3 = seqcore.softmax_cross_entropy(y4, t)    # its last dlogits, let go of: reused
    assert id(d3) == kept
    assert l3 == l1
    np.testing.assert_array_equal(d3, keep_d)


def test_the_cost_does_not_write_into_logits_it_was_given(rng):
    logits = rng.standard_normal((3, 2, 5))
    _, d = seqcore.softmax_cross_entropy(logits, np.zeros((3, 2), int))
    again = d.copy()
    _, d2 = seqcore.softmax_cross_entropy(d, np.zeros((3, 2), int))   # its own output as input
    np.testing.assert_array_equal(d, again)
    assert d2 is not d


def test_embedding_outputs_the_caller_holds_are_never_reused(rng):
    import copy
    import pickle
    layer = seqcore.Embedding(11, 4, seed=0)
    ids = [rng.integers(-1, 11, (5, 3)) for _ in range(4)]
    want = [layer.params["W"][np.maximum(i, 0)] * (i >= 0)[:, :, None] for i in ids]
    held = [layer.forward(i) for i in ids]          # all held: four distinct arrays
    for x, w in zip(held, want):
        np.testing.assert_array_equal(x, w)
    assert len({id(x) for x in held}) == 4
    ids_of = {id(held[2]), id(held[3])}             # the pool keeps the last two
    del held, x
    again = [layer.forward(i) for i in ids[:2]]
    assert {id(x) for x in again} == ids_of         # let go of: reused
    for x, w in zip(again, want[:2]):
        np.testing.assert_array_equal(x, w)
    for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert twin._out is None
        np.testing.assert_array_equal(twin.forward(ids[0]), want[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 17), (0,)])
def test_aligned_empty_starts_on_a_cache_line(shape, dtype):
    from seqcore.nn.buffers import ALIGN, aligned_empty
    for _ in range(8):                     # NumPy's own start varies from one array to the next
        a = aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable
        assert a.size == 0 or a.ctypes.data % ALIGN == 0     # an empty one has no start
        a[...] = 1                         # every element is its own, none past the end
        assert a.sum() == a.size


@pytest.mark.parametrize("cell", ["RNN", "GRU", "LSTM"])
def test_the_recurrent_layers_workspaces_start_on_a_cache_line(cell, rng):
    from seqcore.nn.buffers import ALIGN
    layer = getattr(seqcore, cell)(5, 6, dtype=np.float32)
    layer.forward(rng.standard_normal((4, 3, 5)).astype(np.float32))
    made = [buf for key, buf in layer._workspaces.items() if isinstance(key[0], int)]
    assert made                            # the states (and the gates, for GRU and LSTM)
    for buf in made:
        assert buf.ctypes.data % ALIGN == 0
    dense = seqcore.Dense(5, 40)
    dense.forward(rng.standard_normal((64, 5)).astype(np.float32))
    assert dense._work[0].ctypes.data % ALIGN == 0
