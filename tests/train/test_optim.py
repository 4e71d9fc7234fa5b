"""Optimizers against their textbook formulas, clipping, schedules, and resuming from a state dict."""
import math

import numpy as np
import pytest

from seqcore import optim, reference


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


# ------------------------------------------------- AdamW, weight decay, plateau, PyTorch

def _torch_run(torch_opt_cls, params0, grads, **kw):
    """PyTorch's optimizer over fixed gradients: the parameters after each step."""
    torch = pytest.importorskip("torch")
    tp = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params0.items()}
    opt = torch_opt_cls(list(tp.values()), **kw)
    for g in grads:
        for k, t in tp.items():
            t.grad = torch.tensor(g[k])
        opt.step()
    return {k: t.detach().numpy() for k, t in tp.items()}


def test_adamw_matches_pytorch_over_20_steps(rng):
    torch = pytest.importorskip("torch")
    p0 = _params(rng)
    grads = [{k: rng.standard_normal(x.shape) for k, x in p0.items()} for _ in range(20)]
    ref = _torch_run(torch.optim.AdamW, p0, grads, lr=0.01, betas=(0.8, 0.95), eps=1e-6,
                     weight_decay=0.1)
    p = {k: v.copy() for k, v in p0.items()}
    opt = optim.AdamW(0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    for g in grads:
        opt.step(_triples(p, g))
    for k in p:
        np.testing.assert_allclose(p[k], ref[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_adam_matches_pytorch_over_20_steps(rng):
    torch = pytest.importorskip("torch")
    p0 = _params(rng)
    grads = [{k: rng.standard_normal(x.shape) for k, x in p0.items()} for _ in range(20)]
    ref = _torch_run(torch.optim.Adam, p0, grads, lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    p = {k: v.copy() for k, v in p0.items()}
    opt = optim.Adam(0.01, betas=(0.9, 0.99), eps=1e-8)
    for g in grads:
        opt.step(_triples(p, g))
    for k in p:
        np.testing.assert_allclose(p[k], ref[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_with_weight_decay_matches_pytorch(momentum, rng):
    torch = pytest.importorskip("torch")
    p0 = _params(rng)
    grads = [{k: rng.standard_normal(x.shape) for k, x in p0.items()} for _ in range(10)]
    ref = _torch_run(torch.optim.SGD, p0, grads, lr=0.05, momentum=momentum,
                     weight_decay=0.01)
    p = {k: v.copy() for k, v in p0.items()}
    kept = {k: [g[k].copy() for g in grads] for k in p0}
    opt = optim.SGD(0.05, momentum=momentum, weight_decay=0.01)
    for g in grads:
        opt.step(_triples(p, g))
    for k in p:
        np.testing.assert_allclose(p[k], ref[k], rtol=1e-13, atol=1e-15, err_msg=k)
        for g, g0 in zip(grads, kept[k]):               # the model's grads are not changed
            np.testing.assert_array_equal(g[k], g0)


def test_adamw_decay_uses_the_scheduled_rate(rng):
    """p *= 1 - lr(t) * wd with the schedule's lr, as PyTorch's AdamW under a scheduler."""
    torch = pytest.importorskip("torch")
    p0 = {"w": rng.standard_normal(5)}
    grads = [{"w": rng.standard_normal(5)} for _ in range(6)]
    tw = torch.tensor(p0["w"].copy(), requires_grad=True)
    topt = torch.optim.AdamW([tw], lr=0.1, weight_decay=0.5)
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.5)
    p = {"w": p0["w"].copy()}
    opt = optim.AdamW(0.1, weight_decay=0.5, schedule=optim.StepDecay(2, 0.5))
    for g in grads:
        tw.grad = torch.tensor(g["w"])
        topt.step()
        sched.step()
        opt.step(_triples(p, g))
    np.testing.assert_allclose(p["w"], tw.detach().numpy(), rtol=1e-12, atol=1e-14)


METRICS = [5.0, 4.0, 4.0, 3.9999, 3.5, 3.6, 3.6, 3.4, 3.4, 3.4, 3.4, 3.3999, 3.2, 3.3, 3.3,
           3.3, 3.3, 3.3, 3.0, 3.1]


@pytest.mark.parametrize("kw", [dict(factor=0.25, patience=0, threshold=1e-4),
                                dict(factor=0.5, patience=2, threshold=1e-3),
                                dict(factor=0.1, patience=1, threshold=0.0, cooldown=2),
                                dict(factor=0.5, patience=0, threshold=1e-4, min_scale=0.1)])
def test_reduce_on_plateau_matches_pytorch(kw):
    torch = pytest.importorskip("torch")
    t_kw = {k: v for k, v in kw.items() if k != "min_scale"}
    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([w], lr=1.0)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        topt, mode="min", threshold_mode="rel", min_lr=kw.get("min_scale", 0.0), **t_kw)
    sched = optim.ReduceOnPlateau(**kw)
    ours, theirs = [], []
    for metric in METRICS:
        tsched.step(metric)
        sched.observe(metric)
        theirs.append(topt.param_groups[0]["lr"])
        ours.append(sched(123))
    assert ours == pytest.approx(theirs, rel=1e-15)
    assert min(ours) < 1.0                              # it did reduce


def test_plateau_scales_the_optimizers_rate():
    sched = optim.ReduceOnPlateau(factor=0.5, patience=0)
    opt = optim.Adam(0.2, schedule=sched)
    assert opt.current_lr == 0.2
    sched.observe(1.0)
    sched.observe(1.5)                                  # no improvement: halved
    assert opt.current_lr == pytest.approx(0.1)


@pytest.mark.parametrize("make", [
    lambda: optim.AdamW(0.05, weight_decay=0.1, schedule=optim.ReduceOnPlateau(0.5)),
    lambda: optim.SGD(0.05, momentum=0.5, weight_decay=0.01,
                      schedule=optim.ReduceOnPlateau(0.25, patience=1, cooldown=1))])
def test_state_dict_with_plateau_schedule_resumes_exactly(make, rng):
    """Save mid-run (optimizer and schedule state), rebuild from config, load, go on: the
    same parameters and multiplier as the run that never stopped."""
    grads = [{"w": rng.standard_normal((2, 3))} for _ in range(10)]
    metrics = [3.0, 2.0, 2.5, 2.5, 2.4, 2.6, 2.6, 1.0, 1.2, 1.3]

    def run(opt, p, steps):
        for i in steps:
            opt.step(_triples(p, grads[i]))
            opt.schedule.observe(metrics[i])

    p1 = {"w": np.ones((2, 3))}
    straight = make()
    run(straight, p1, range(10))
    p2 = {"w": np.ones((2, 3))}
    first = make()
    run(first, p2, range(4))
    state = {k: np.array(v) for k, v in first.state_dict().items()}
    assert {"schedule/best", "schedule/bad", "schedule/scale", "t"} <= set(state)
    resumed = optim.make_optimizer(first.config())
    assert resumed.config() == first.config()
    resumed.load_state_dict(state)
    run(resumed, p2, range(4, 10))
    np.testing.assert_array_equal(p1["w"], p2["w"])
    assert resumed.schedule.scale == straight.schedule.scale < 1
    assert resumed.t == straight.t == 10


def test_old_state_without_schedule_entries_still_loads(rng):
    opt = optim.Adam(0.1)
    opt.step([("w", np.ones(3), np.ones(3))])
    state = opt.state_dict()
    assert not any(k.startswith("schedule/") for k in state)    # a stateless schedule
    again = optim.make_optimizer(opt.config())
    again.load_state_dict(state)
    assert again.t == 1
    with pytest.raises(ValueError, match="schedule"):
        again.load_state_dict({**state, "schedule/best": np.array(1.0)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_adam_update_matches_reference(dtype, kernel_path, rng):
    from seqcore import _dispatch
    n = 70001                                           # odd, and above a thread's share
    p, g, m, v = (rng.standard_normal(n).astype(dtype) for _ in range(4))
    v = np.abs(v)
    ref = [a.copy() for a in (p, m, v)]
    p0, m0, v0 = (a.copy() for a in (p, m, v))
    args = (0.9, 0.999, 0.003, 1e-8, 1 - 0.003 * 0.01)
    _dispatch.train_kernels().adam_update(p, m, v, g, *args, 2)
    reference.adam_update(ref[0], g, ref[1], ref[2], *args)
    # errors relative to the size of each array's change (some steps are large: v ~ 0)
    tol = {np.float32: 2e-6, np.float64: 1e-14}[dtype]
    before = (p0, m0, v0)
    for name, a, r, b in zip("pmv", (p, m, v), ref, before):
        scale = np.abs(r - b).max()
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * scale, err_msg=name)
    # one thread and two split the same values: the same numbers
    p1, m1, v1 = (a.copy() for a in ref)
    p2, m2, v2 = (a.copy() for a in ref)
    _dispatch.train_kernels().adam_update(p1, m1, v1, g, *args, 1)
    _dispatch.train_kernels().adam_update(p2, m2, v2, g, *args, 2)
    np.testing.assert_array_equal(p1, p2)


def test_adam_takes_the_reference_for_arrays_the_kernel_does_not(rng):
    """Fortran-ordered parameters (allowed in the layers) are updated by the reference."""
    pf = np.asfortranarray(rng.standard_normal((4, 3)))
    pc = np.ascontiguousarray(pf)
    g = rng.standard_normal((4, 3))
    a, b = optim.Adam(0.1), optim.Adam(0.1)
    for _ in range(3):
        a.step([("w", pf, np.asfortranarray(g))])
        b.step([("w", pc, g)])
    np.testing.assert_allclose(pf, pc, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_norm_is_summed_in_float64(dtype, rng):
    grads = [{"a": (rng.standard_normal((300, 7)) * 10).astype(dtype)},
             {"b": rng.standard_normal(1001).astype(dtype), "c": np.zeros(0, dtype)}]
    flat = np.concatenate([g.astype(np.float64).ravel() for d in grads for g in d.values()])
    assert optim.global_norm(grads) == pytest.approx(float(np.sqrt(flat @ flat)), rel=1e-14)
    big = [np.full(4, 1e19, dtype)]                    # squares beyond float32's range
    assert math.isinf(optim.global_norm(big)) == (dtype == np.float32)
    grads[1]["b"][5] = np.inf
    assert math.isinf(optim.global_norm(grads))
    grads[1]["b"][6] = np.nan
    assert math.isnan(optim.global_norm(grads))


def test_new_hyperparameters_are_checked():
    with pytest.raises(ValueError, match="weight_decay"):
        optim.AdamW(0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.SGD(0.1, weight_decay=-0.5)
    with pytest.raises(ValueError, match="factor"):
        optim.ReduceOnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="patience"):
        optim.ReduceOnPlateau(patience=-1)
    with pytest.raises(ValueError, match="unknown name"):
        optim.make_schedule({"name": "nope"})
    for opt in (optim.AdamW(0.1, weight_decay=0.2, schedule=optim.ReduceOnPlateau(0.5, 3)),
                optim.SGD(0.1, weight_decay=0.2)):
        again = optim.make_optimizer(opt.config())
        assert type(again) is type(opt) and again.config() == opt.config()


def test_adamw_and_plateau_state_are_saved_with_the_model(tmp_path, rng):
    """seqcore.save / seqcore.load keep the optimizer's config and the schedule's state."""
    import seqcore
    vocab = seqcore.Vocab.build(["abcab", "bca"])
    model = seqcore.LanguageModel(vocab, hidden_size=8, embedding_dim=4, seed=0)
    sched = optim.ReduceOnPlateau(factor=0.5, patience=0)
    model.optimizer = optim.AdamW(0.01, weight_decay=0.05, schedule=sched)
    grads = [(n, p, rng.standard_normal(p.shape).astype(p.dtype))
             for n, p, _ in model.parameters()]
    model.optimizer.step(grads)
    sched.observe(2.0)
    sched.observe(2.5)                                  # reduced: scale 0.5, best 2.0
    path = model.save(tmp_path / "m.npz")
    again = seqcore.load(path)
    opt = again.optimizer
    assert type(opt) is optim.AdamW and opt.config() == model.optimizer.config()
    assert type(opt.schedule) is optim.ReduceOnPlateau
    assert (opt.schedule.scale, opt.schedule.best, opt.schedule.bad) == (0.5, 2.0, 0)
    assert opt.t == 1 and opt.current_lr == pytest.approx(0.005)
    for name, arr in model.optimizer.m.items():
        np.testing.assert_array_equal(opt.m[name], arr)
