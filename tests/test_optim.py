"""Optimizers against their textbook formulas, clipping, schedules, and resuming from a state dict."""
import math

import numpy as np
import pytest

from seqcore import optim


def _params(rng):
    return {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}


def _triples(params, grads):
    return [(k, params[k], grads[k]) for k in params]


def test_adam_matches_the_papers_algorithm(rng):
    p = _params(rng)
    ref = {k: v.copy() for k, v in p.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    opt = optim.Adam(0.01, betas=(0.8, 0.95), eps=1e-6)
    for t in range(1, 6):
        g = {k: rng.standard_normal(x.shape) for k, x in p.items()}
        opt.step(_triples(p, g))
        for k in ref:                                       # Kingma & Ba, Algorithm 1
            m[k] = 0.8 * m[k] + 0.2 * g[k]
            v[k] = 0.95 * v[k] + 0.05 * g[k] ** 2
            m_hat = m[k] / (1 - 0.8 ** t)
            v_hat = v[k] / (1 - 0.95 ** t)
            ref[k] -= 0.01 * m_hat / (np.sqrt(v_hat) + 1e-6)
    for k in p:
        np.testing.assert_allclose(p[k], ref[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_sgd_with_momentum_matches_its_formula(rng):
    p = _params(rng)
    ref = {k: x.copy() for k, x in p.items()}
    vel = {k: np.zeros_like(x) for k, x in p.items()}
    opt = optim.SGD(0.1, momentum=0.9)
    for _ in range(4):
        g = {k: rng.standard_normal(x.shape) for k, x in p.items()}
        opt.step(_triples(p, g))
        for k in ref:
            vel[k] = 0.9 * vel[k] + g[k]
            ref[k] -= 0.1 * vel[k]
    for k in p:
        np.testing.assert_allclose(p[k], ref[k], rtol=1e-13, err_msg=k)


@pytest.mark.parametrize("make", [lambda: optim.Adam(0.1), lambda: optim.SGD(0.1)])
def test_optimizers_minimize_a_quadratic(make):
    target = np.array([1.0, -2.0, 3.0])
    p = {"x": np.zeros(3)}
    opt = make()
    for _ in range(300):
        g = {"x": 2 * (p["x"] - target)}
        opt.step(_triples(p, g))
    np.testing.assert_allclose(p["x"], target, atol=1e-3)


def test_clip_grad_value_bounds_every_entry(rng):
    grads = [{"a": rng.standard_normal((5, 5)) * 10}, {"b": rng.standard_normal(7) * 10}]
    before = [g.copy() for d in grads for g in d.values()]
    optim.clip_grad_value(grads, 1.5)
    after = [g for d in grads for g in d.values()]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, np.clip(b, -1.5, 1.5))


def test_clip_grad_norm_rescales_all_gradients_together(rng):
    grads = [{"a": rng.standard_normal((5, 5))}, {"b": rng.standard_normal(7)}]
    flat = np.concatenate([g.ravel() for d in grads for g in d.values()])
    norm = optim.clip_grad_norm(grads, 0.5)
    assert norm == pytest.approx(np.linalg.norm(flat), rel=1e-12)
    clipped = np.concatenate([g.ravel() for d in grads for g in d.values()])
    assert np.linalg.norm(clipped) == pytest.approx(0.5, rel=1e-9)
    np.testing.assert_allclose(clipped / np.linalg.norm(clipped), flat / np.linalg.norm(flat))
    assert optim.clip_grad_norm(grads, 10.0) == pytest.approx(0.5, rel=1e-9)   # below: untouched
    assert np.linalg.norm(np.concatenate([g.ravel() for d in grads for g in d.values()])) \
        == pytest.approx(0.5, rel=1e-9)


def test_clip_grad_norm_reports_non_finite_norm_without_scaling():
    grads = [{"a": np.array([np.inf, 1.0])}]
    assert math.isinf(optim.clip_grad_norm(grads, 1.0))
    assert grads[0]["a"][1] == 1.0


def test_schedules():
    assert optim.Constant()(123) == 1.0
    s = optim.StepDecay(10, 0.5)
    assert [s(0), s(9), s(10), s(25)] == [1.0, 1.0, 0.5, 0.25]
    c = optim.Cosine(100, warmup=10, final=0.1)
    assert c(0) == pytest.approx(0.1) and c(9) == pytest.approx(1.0)
    assert c(10) == pytest.approx(1.0) and c(55) == pytest.approx(0.55)
    assert c(100) == pytest.approx(0.1) and c(500) == pytest.approx(0.1)
    opt = optim.SGD(2.0, schedule=optim.StepDecay(1, 0.5))
    p = {"x": np.zeros(1)}
    lrs = []
    for _ in range(3):
        lrs.append(opt.current_lr)
        opt.step(_triples(p, {"x": np.ones(1)}))
    assert lrs == [2.0, 1.0, 0.5]
    np.testing.assert_allclose(p["x"], [-3.5])


@pytest.mark.parametrize("make", [lambda: optim.Adam(0.05, schedule=optim.Cosine(8)),
                                  lambda: optim.SGD(0.05, momentum=0.5)])
def test_state_dict_resumes_exactly(make, rng):
    grads = [{"w": rng.standard_normal((2, 3))} for _ in range(8)]
    p1 = {"w": np.ones((2, 3))}
    straight = make()
    for g in grads:
        straight.step(_triples(p1, g))
    p2 = {"w": np.ones((2, 3))}
    first = make()
    for g in grads[:3]:
        first.step(_triples(p2, g))
    resumed = optim.make_optimizer(first.config())
    resumed.load_state_dict({k: np.array(v) for k, v in first.state_dict().items()})
    for g in grads[3:]:
        resumed.step(_triples(p2, g))
    np.testing.assert_array_equal(p1["w"], p2["w"])
    assert resumed.t == straight.t == 8


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="lr"):
        optim.Adam(0)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="clip"):
        optim.clip_grad_value([], 0)
