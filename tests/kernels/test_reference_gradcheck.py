"""Central finite differences, float64, every cell and variant: the NumPy reference, and
the compiled core on every kernel path the CPU runs."""
import numpy as np
import pytest

from conftest import numeric_grad
from _cases import CELL_IDS, make_layer, random_lengths, random_state, state_list

def cost(layer, x, state, lengths, dy, dfinal):
    """C = sum(y * dy) + sum(final * dfinal): its gradients are the backward's inputs."""
    y, final = layer.forward(x, state, lengths)
    return float((y * dy).sum() + sum((f * g).sum() for f, g in
                                      zip(state_list(final), state_list(dfinal))))


@pytest.mark.parametrize("cell", CELL_IDS)
@pytest.mark.parametrize("num_layers,bidirectional,use_lengths,batch_first", [
    (1, False, False, False),
    (1, False, True, False),
    (2, True, True, False),
    (1, True, False, True),
])
def test_reference_matches_finite_differences(cell, num_layers, bidirectional, use_lengths,
                                              batch_first, rng):
    check_finite_differences("numpy", cell, num_layers, bidirectional, use_lengths,
                             batch_first, rng)


@pytest.mark.parametrize("cell", CELL_IDS)
@pytest.mark.parametrize("num_layers,bidirectional,use_lengths", [
    (1, False, True),
    (2, True, True),
])
def test_compiled_core_matches_finite_differences(cell, num_layers, bidirectional, use_lengths,
                                                  kernel_path, rng):
    check_finite_differences("cython", cell, num_layers, bidirectional, use_lengths, False,
                             rng)


def check_finite_differences(backend, cell, num_layers, bidirectional, use_lengths,
                             batch_first, rng):
    T, B, D, H = 4, 3, 3, 2
    layer = make_layer(cell, D, H, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=batch_first, backend=backend, seed=int(rng.integers(1000)))
    xshape = (B, T, D) if batch_first else (T, B, D)
    x = rng.standard_normal(xshape)
    state = random_state(layer, B, rng)
    lengths = random_lengths(T, B, rng) if use_lengths else None
    y, final = layer.forward(x, state, lengths)
    dy = rng.standard_normal(y.shape)
    dfinal = random_state(layer, B, rng)

    dx, dstate0 = layer.backward(dy, dfinal)
    f = lambda: cost(layer, x, state, lengths, dy, dfinal)  # noqa: E731

    worst = 0.0
    checks = [("dx", dx, x)]
    checks += [(f"dstate0[{i}]", d, s) for i, (d, s) in
               enumerate(zip(state_list(dstate0), state_list(state)))]
    checks += [(f"grads[{k}]", layer.grads[k], layer.params[k]) for k in layer.params]
    for name, analytic, arr in checks:
        numeric = numeric_grad(f, arr)
        err = np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-8)
        worst = max(worst, err)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8,
                                   err_msg=f"{cell} {name}: max rel err {err:.2e}")
    print(f"{backend} {cell}: worst relative error vs finite differences {worst:.2e}")
    if use_lengths:
        # Past its length a sequence's input cannot matter, and its output is 0.
        lens = np.asarray(lengths)
        for b in range(B):
            if batch_first:
                assert np.all(dx[b, lens[b]:] == 0) and np.all(y[b, lens[b]:] == 0)
            else:
                assert np.all(dx[lens[b]:, b] == 0) and np.all(y[lens[b]:, b] == 0)
