"""seqcore against PyTorch, the outside oracle: exact weights through seqcore.interop.

float64, for RNN (tanh, relu) / GRU / LSTM x 1-2 layers x 1-2 directions x with and
without lengths (PyTorch's packed sequences): outputs, final states, dx, initial-state
gradients and every parameter gradient.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import seqcore  # noqa: E402
from seqcore import _dispatch, interop  # noqa: E402
from conftest import KERNEL_PATHS  # noqa: E402

KINDS = ["rnn_tanh", "rnn_relu", "gru", "lstm"]


def torch_module(kind, D, H, **kw):
    if kind == "lstm":
        return torch.nn.LSTM(D, H, **kw)
    if kind == "gru":
        return torch.nn.GRU(D, H, **kw)
    return torch.nn.RNN(D, H, nonlinearity=kind[4:], **kw)


def torch_grads_in_seqcore_layout(module, layer):
    """PyTorch's parameter gradients mapped to seqcore's names and layout.

    W = [W_hh | W_ih] and b = b_ih + b_hh, so dW stacks the two gradients and
    db equals either bias gradient; the GRU's u block is negated (z = 1 - gamma_u)
    and its b_cc is bias_hh's n block.
    """
    H = layer.hidden_size
    out = {}
    for l in range(layer.num_layers):
        for sfx in ("", "_reverse")[: layer.num_directions]:
            g = lambda n: getattr(module, f"{n}_l{l}{sfx}").grad.numpy()  # noqa: E731
            dW = np.concatenate([g("weight_hh"), g("weight_ih")], axis=1)
            db = g("bias_ih").copy()
            # b = b_ih + b_hh (the GRU's r and u blocks only): both get the same gradient.
            shared = 2 * H if kind_of(layer) == "gru" else db.size
            np.testing.assert_allclose(g("bias_hh")[:shared], db[:shared], rtol=1e-12,
                                       atol=1e-15)   # PyTorch's own two sums, to rounding
            if kind_of(layer) == "gru":
                dW[H:2 * H] *= -1
                db[H:2 * H] *= -1
                out[f"b_cc_l{l}{sfx}"] = g("bias_hh")[2 * H:]
            out[f"W_l{l}{sfx}"] = dW
            out[f"b_l{l}{sfx}"] = db
    return out


def kind_of(layer):
    return type(layer).__name__.lower()


# the compiled core on every kernel path the CPU runs, and the reference
BACKENDS = [f"cython/{path}" for path in KERNEL_PATHS] + ["numpy"]


@pytest.mark.parametrize("backend_path", BACKENDS)
@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_pytorch_float64(kind, num_layers, bidirectional, use_lengths, backend_path,
                                 rng):
    T, B, D, H = 6, 4, 5, 7
    backend, _, path = backend_path.partition("/")
    torch.manual_seed(int(rng.integers(1 << 30)))
    module = torch_module(kind, D, H, num_layers=num_layers,
                          bidirectional=bidirectional).double()
    with _dispatch.use(path or _dispatch.active()):
        layer = interop.from_torch(module, backend=backend)
    assert layer.dtype == np.float64 and layer.backend == backend
    dirs = 2 if bidirectional else 1
    x = rng.standard_normal((T, B, D))
    h0 = rng.standard_normal((num_layers * dirs, B, H))
    c0 = rng.standard_normal((num_layers * dirs, B, H))
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    lengths = lengths if use_lengths else None
    state = (h0, c0) if kind == "lstm" else h0

    y, final = layer.forward(x, state, lengths)

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True)
    state_t = (h0t, c0t) if kind == "lstm" else h0t
    if use_lengths:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), enforce_sorted=False)
        yp, final_t = module(packed, state_t)
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, total_length=T)
    else:
        yt, final_t = module(xt, state_t)
    finals = final if kind == "lstm" else (final,)
    finals_t = final_t if kind == "lstm" else (final_t,)

    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg="y")
    for f, ft in zip(finals, finals_t):
        np.testing.assert_allclose(f, ft.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg="final state")

    dy = rng.standard_normal(y.shape)
    dfinal = [rng.standard_normal(h0.shape) for _ in finals]
    loss = (yt * torch.tensor(dy)).sum()
    for ft, d in zip(finals_t, dfinal):
        loss = loss + (ft * torch.tensor(d)).sum()
    loss.backward()
    dx, dstate0 = layer.backward(dy, tuple(dfinal) if kind == "lstm" else dfinal[0])

    worst = np.abs(dx - xt.grad.numpy()).max()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg="dx")
    d0 = dstate0 if kind == "lstm" else (dstate0,)
    for d, t0 in zip(d0, (h0t, c0t)):
        np.testing.assert_allclose(d, t0.grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg="dstate0")
    expected = torch_grads_in_seqcore_layout(module, layer)
    assert set(expected) == set(layer.grads)
    for k, g in expected.items():
        np.testing.assert_allclose(layer.grads[k], g, rtol=1e-10, atol=1e-12,
                                   err_msg=f"grads[{k}]")
        worst = max(worst, np.abs(layer.grads[k] - g).max())
    print(f"{kind} L={num_layers} dirs={dirs} lengths={use_lengths}: max abs diff {worst:.2e}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_and_batch_first(kind, dtype, rng):
    D, H = 3, 4
    module = torch_module(kind, D, H, num_layers=2, bidirectional=True,
                          batch_first=True).to(dtype)
    layer = interop.from_torch(module)
    assert layer.batch_first and layer.num_layers == 2 and layer.bidirectional
    assert layer.dtype == (np.float32 if dtype == torch.float32 else np.float64)
    back = interop.to_torch(layer)
    assert type(back) is type(module) and back.batch_first
    for (n1, p1), (n2, p2) in zip(module.named_parameters(), back.named_parameters()):
        assert n1 == n2
        if n1.startswith("bias"):
            continue  # biases are split differently; compared through outputs below
        assert torch.equal(p1, p2), n1
    x = rng.standard_normal((2, 5, D)).astype(layer.dtype)
    y, _ = layer.forward(x)
    with torch.no_grad():
        y1 = module(torch.from_numpy(x))[0].numpy()
        y2 = back(torch.from_numpy(x))[0].numpy()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(y, y1, rtol=tol, atol=tol)
    np.testing.assert_allclose(y2, y1, rtol=tol, atol=tol)


def test_conversion_refuses_what_pytorch_cannot_hold():
    with pytest.raises(ValueError, match="reset_after"):
        interop.to_torch(seqcore.GRU(3, 4, reset_after=False))
    with pytest.raises(ValueError, match="peephole"):
        interop.to_torch(seqcore.LSTM(3, 4, peephole=True))
    with pytest.raises(TypeError, match="module"):
        interop.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="proj_size"):
        interop.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
