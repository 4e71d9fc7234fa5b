"""Gradient-flow and gate diagnostics against independent computations."""
import numpy as np
import pytest

from _cases import CELL_IDS, make_layer, state_list
from seqcore import diagnostics

BACKENDS = ["numpy", "cython"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELL_IDS)
def test_loss_at_last_step_only(cell, backend, rng):
    T, B, D, H = 6, 3, 4, 5
    layer = make_layer(cell, D, H, backend=backend)
    y, _ = layer.forward(rng.standard_normal((T, B, D)))
    dy = np.zeros_like(y)
    dy[-1] = rng.standard_normal((B, H))
    layer.backward(dy)
    norms = diagnostics.gradient_norms(layer)
    assert norms.shape == (T, 1)
    assert norms[-1, 0] == pytest.approx(np.linalg.norm(dy[-1]), rel=1e-12)
    assert np.all(norms[:-1] > 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELL_IDS)
def test_norms_match_an_independent_bptt(cell, backend, rng):
    """dC/da<t+1> = dy[t] + (gradient of the rest of the cost w.r.t. the state that
    starts the rest of the sequence): rerun the layer from a<t+1> on x[t+1:]."""
    T, B, D, H = 5, 2, 3, 4
    layer = make_layer(cell, D, H, backend=backend)
    x = rng.standard_normal((T, B, D))
    y, _ = layer.forward(x)
    states = [s.copy() for s in layer._cache["caches"][0][1:1 + layer._num_states]]
    dy = rng.standard_normal(y.shape)
    layer.backward(dy)
    norms = diagnostics.gradient_norms(layer)[:, 0]
    probe = make_layer(cell, D, H, backend="numpy")
    probe.params = {k: v.copy() for k, v in layer.params.items()}
    for t in range(T):
        total = dy[t].copy()
        if t + 1 < T:
            s0 = [s[t + 1][None] for s in states]
            probe.forward(x[t + 1:], s0[0] if len(s0) == 1 else tuple(s0))
            _, d0 = probe.backward(dy[t + 1:])
            total += state_list(d0)[0][0]
        assert norms[t] == pytest.approx(np.linalg.norm(total), rel=1e-10), t


@pytest.mark.parametrize("backend", BACKENDS)
def test_lstm_cell_gradient_at_the_last_step(backend, rng):
    """At the last step dC/dc<T> = dC/dc_T + da<T> * gamma_o * (1 - tanh(c<T>)^2)."""
    T, B, D, H = 4, 3, 2, 5
    layer = make_layer("lstm", D, H, backend=backend)
    y, (a, c) = layer.forward(rng.standard_normal((T, B, D)))
    dy = rng.standard_normal(y.shape)
    dc_T = rng.standard_normal(c.shape)
    layer.backward(dy, (np.zeros_like(a), dc_T))
    gamma_o = layer._cache["caches"][0][3][-1, :, 3 * H:]
    expected = dc_T[0] + dy[-1] * gamma_o * (1 - np.tanh(c[0]) ** 2)
    norms = diagnostics.gradient_norms(layer, of="c")
    assert norms[-1, 0] == pytest.approx(np.linalg.norm(expected), rel=1e-10)
    with pytest.raises(ValueError, match="of='c'"):
        gru = make_layer("gru", D, H)
        gru.forward(np.zeros((T, B, D)))
        gru.backward(np.zeros((T, B, H)))
        diagnostics.gradient_norms(gru, of="c")


def test_norms_require_a_backward():
    layer = make_layer("rnn_tanh", 2, 3)
    with pytest.raises(ValueError, match="backward"):
        diagnostics.gradient_norms(layer)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["gru", "gru_reset_after", "lstm"])
def test_gate_stats_of_one_step_from_zero_state(cell, backend, rng):
    """From a<0> = 0 the gates are sigma(W_ax x + b): compute them directly."""
    B, D, H = 50, 3, 4
    layer = make_layer(cell, D, H, backend=backend)
    layer.params["W_l0"] *= 8                    # push some activations into saturation
    x = rng.standard_normal((1, B, D))
    layer.forward(x)
    stats = diagnostics.gate_stats(layer)
    z = x[0] @ layer.params["W_l0"][:, H:].T + layer.params["b_l0"]
    blocks = {"gru": {"gamma_r": 0, "gamma_u": 1},
              "lstm": {"gamma_u": 0, "gamma_f": 1, "gamma_o": 3}}[cell.split("_")[0]]
    assert set(stats) == set(blocks)
    for name, g in blocks.items():
        act = sigmoid(z[:, g * H:(g + 1) * H])
        assert stats[name]["mean"][0, 0] == pytest.approx(act.mean(), rel=1e-12)
        sat = ((act < 0.05) | (act > 0.95)).mean()
        assert stats[name]["saturated"][0, 0] == pytest.approx(sat)
    assert 0 < max(s["saturated"][0, 0] for s in stats.values())


def test_gate_stats_ignore_padding_and_follow_time_in_reverse(rng):
    T, B, D, H = 6, 3, 2, 4
    layer = make_layer("lstm", D, H, bidirectional=True, num_layers=2, backend="cython")
    x = rng.standard_normal((T, B, D))
    lengths = np.array([6, 2, 4])
    layer.forward(x, lengths=lengths)
    stats = diagnostics.gate_stats(layer)
    assert stats["gamma_f"]["mean"].shape == (T, 4)
    # Sequence 0 alone, full length: the steps where only it is active must agree.
    layer.forward(x[:, :1])
    alone = diagnostics.gate_stats(layer)
    for name in stats:
        np.testing.assert_allclose(stats[name]["mean"][4:], alone[name]["mean"][4:], rtol=1e-12)
