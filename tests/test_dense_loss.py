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
