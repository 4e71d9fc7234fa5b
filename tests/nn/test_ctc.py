"""seqcore.ctc_loss: finite differences on the NumPy twin (float64), PyTorch's
ctc_loss and its gradient with respect to the logits (through the log-softmax), and
the compiled kernel against its twin on every kernel path, in both dtypes, on one
thread and two. Bad input is refused by name."""
import numpy as np
import pytest

import seqcore
from seqcore import _dispatch

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def _case(rng, T=12, B=6, C=7, blank=0, repeats=True, long=True, empty=True):
    """Random logits and targets: repeated labels, a target as long as its input
    allows, an empty target, and inputs shorter than T."""
    input_lengths = rng.integers(T // 2, T + 1, B)
    input_lengths[0] = T
    labels = [c for c in range(C) if c != blank]
    targets = []
    for b in range(B):
        L = int(rng.integers(1, max(2, input_lengths[b] // 2)))
        targets.append(list(rng.choice(labels, L)))
    if repeats:
        targets[1] = [labels[0]] * 2 + [labels[1]] * 2           # needs 6 steps
        input_lengths[1] = max(input_lengths[1], 6)
    if long:                                                    # exactly as long as allowed
        targets[2] = [labels[i % len(labels)] for i in range(int(input_lengths[2]))]
    if empty:
        targets[3] = []
    logits = rng.standard_normal((T, B, C)) * 2
    return logits, targets, input_lengths


def _padded(targets, fill=0):
    S = max(1, max(len(t) for t in targets))
    out = np.full((len(targets), S), fill, np.int64)
    for b, t in enumerate(targets):
        out[b, :len(t)] = t
    return out, np.array([len(t) for t in targets])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_finite_differences_of_the_twin(reduction, rng):
    logits, targets, lengths = _case(rng, T=7, B=4, C=5)
    padded, tl = _padded(targets)
    loss, dlogits = seqcore.ctc_loss(logits, padded, lengths, tl, reduction=reduction,
                                     backend="numpy")

    def f(z):
        value = seqcore.ctc_loss(z, padded, lengths, tl, reduction=reduction,
                                 backend="numpy")[0]
        return float(np.sum(value))

    eps, num = 1e-6, np.zeros_like(logits)
    for i in np.ndindex(logits.shape):
        z = logits.copy()
        z[i] += eps
        up = f(z)
        z[i] -= 2 * eps
        num[i] = (up - f(z)) / (2 * eps)
    np.testing.assert_allclose(dlogits, num, rtol=1e-6, atol=1e-8)
    assert not dlogits[lengths[1]:, 1].any() if lengths[1] < logits.shape[0] else True


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("blank", [0, 4])
def test_pytorchs_loss_and_gradient(reduction, blank, flat, kernel_path, rng):
    torch = pytest.importorskip("torch")
    logits, targets, lengths = _case(rng, T=15, B=7, C=6, blank=blank)
    padded, tl = _padded(targets)
    given = np.concatenate([np.asarray(t, np.int64) for t in targets]) if flat else padded
    loss, dlogits = seqcore.ctc_loss(logits, given, lengths, tl, blank=blank,
                                     reduction=reduction)
    z = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.ctc_loss(z.log_softmax(2), torch.tensor(given),
                                        torch.tensor(lengths), torch.tensor(tl), blank=blank,
                                        reduction=reduction)
    want.sum().backward()
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(dlogits, z.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_impossible_alignments_with_zero_infinity_match_pytorch(kernel_path, rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((5, 3, 4))
    targets = np.array([[1, 1, 1, 0], [1, 2, 3, 1], [2, 0, 0, 0]])     # 5 steps, 7 needed
    tl, lengths = np.array([3, 4, 1]), np.array([5, 3, 5])              # 4 labels, 3 steps
    for reduction in ("mean", "sum", "none"):
        loss, dlogits = seqcore.ctc_loss(logits, targets, lengths, tl, reduction=reduction,
                                         zero_infinity=True)
        z = torch.tensor(logits, requires_grad=True)
        want = torch.nn.functional.ctc_loss(z.log_softmax(2), torch.tensor(targets),
                                            torch.tensor(lengths), torch.tensor(tl),
                                            reduction=reduction, zero_infinity=True)
        want.sum().backward()
        np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-10)
        np.testing.assert_allclose(dlogits, z.grad.numpy(), rtol=1e-9, atol=1e-12)
        assert not dlogits[:, 1].any()                  # the impossible example: no gradient
    with pytest.raises(ValueError, match="zero_infinity=True"):
        seqcore.ctc_loss(logits, targets, lengths, tl)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_matches_its_twin(dtype, threads, kernel_path, rng):
    logits, targets, lengths = _case(rng, T=40, B=9, C=12)
    logits = logits.astype(dtype)
    padded, tl = _padded(targets)
    with seqcore.limit_threads(threads):
        compiled = seqcore.ctc_loss(logits, padded, lengths, tl, reduction="none")
    twin = seqcore.ctc_loss(logits, padded, lengths, tl, reduction="none", backend="numpy")
    assert compiled[1].dtype == dtype
    np.testing.assert_allclose(compiled[0], twin[0], rtol=1e-12)       # double inside
    np.testing.assert_allclose(compiled[1], twin[1], **TOL[dtype])
    assert _dispatch.active() == kernel_path


def test_long_inputs_stay_finite(rng):
    """Log space: 2,000 steps of 80 classes, where the probabilities themselves
    underflow double by far."""
    logits = rng.standard_normal((2000, 2, 80)) * 3
    targets = rng.integers(1, 80, (2, 300))
    loss, dlogits = seqcore.ctc_loss(logits, targets, [2000, 1500], [300, 300],
                                     reduction="none")
    assert np.isfinite(loss).all() and loss.min() > 745        # exp(-loss) underflows
    assert np.isfinite(dlogits).all()
    twin = seqcore.ctc_loss(logits, targets, [2000, 1500], [300, 300], reduction="none",
                            backend="numpy")
    np.testing.assert_allclose(loss, twin[0], rtol=1e-12)


def test_bad_input_is_refused_by_name():
    z = np.zeros((6, 2, 4))
    ok = dict(targets=[[1, 2], [3, 0]], input_lengths=[6, 5], target_lengths=[2, 1])

    def call(**kw):
        args = {**ok, **kw}
        return seqcore.ctc_loss(z, args.pop("targets"), args.pop("input_lengths"),
                                args.pop("target_lengths"), **args)

    cases = [
        (dict(targets=[[1, 4], [3, 0]]), ValueError, "targets: expected labels in \\[0, 4\\)"),
        (dict(targets=[[1, -1], [3, 0]]), ValueError, "targets: expected labels"),
        (dict(targets=[[1, 0], [3, 0]]), ValueError, "targets: example 0 holds the blank"),
        (dict(targets=[[1, 2]]), ValueError, "targets: expected 2 rows"),
        (dict(targets=[1, 2, 3, 1]), ValueError, "target_lengths: expected to sum"),
        (dict(targets=[[1.0, 2.0], [3.0, 0.0]]), TypeError, "targets: expected integer"),
        (dict(input_lengths=[6]), ValueError, "input_lengths: expected shape \\(2,\\)"),
        (dict(input_lengths=[7, 5]), ValueError, "input_lengths: expected values in \\[1, 6\\]"),
        (dict(input_lengths=[6, 0]), ValueError, "input_lengths: expected values"),
        (dict(target_lengths=[2, 3]), ValueError, "target_lengths: expected values <= 2"),
        (dict(target_lengths=[2, -1]), ValueError, "target_lengths: expected values >= 0"),
        (dict(target_lengths=[2.0, 1.0]), TypeError, "target_lengths: expected integers"),
        (dict(targets=[[1, 1], [3, 0]], input_lengths=[2, 5]), ValueError,
         "targets: example 0's 2 labels need at least 3 steps"),    # a blank between repeats
        (dict(blank=4), ValueError, "blank: expected a class in \\[0, 4\\)"),
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(backend="torch"), ValueError, "backend"),
        (dict(zero_infinity=1), (TypeError, ValueError), "zero_infinity"),
    ]
    for kw, err, match in cases:
        with pytest.raises(err, match=match):
            call(**kw)
    with pytest.raises(TypeError, match="logits: expected a float32 or float64"):
        seqcore.ctc_loss(z.astype(np.int64), **ok)
    bad = z.copy()
    bad[0, 1, 2] = np.nan
    for backend in ("cython", "numpy"):
        with pytest.raises(ValueError, match="logits: contains NaN or infinity"):
            seqcore.ctc_loss(bad, **ok, backend=backend)
