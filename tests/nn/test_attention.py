"""Attention layers: finite differences (float64, padded batches), step vs sequence form,
float32 vs float64, and PyTorch autograd as the outside oracle."""
import numpy as np
import pytest

from seqcore.attention import (AttentionSource, BahdanauAttention, DotAttention,
                               LuongAttention, make_attention)
from seqcore.models.beam import reorder_rows
from conftest import assert_close, numeric_grad

KINDS = ["bahdanau", "luong", "dot"]
Tx, B, Ty = 5, 3, 3
LENGTHS = np.array([5, 2, 3])          # sources 1 and 2 are padded


def sizes(kind):
    """(query_size Hs, key_size Hh): different widths where the kind allows it."""
    return (3, 3) if kind == "dot" else (4, 3)


def make(kind, dtype=np.float64, seed=0):
    Hs, Hh = sizes(kind)
    return make_attention(kind, Hs, Hh, attention_size=6 if kind == "bahdanau" else None,
                          dtype=dtype, seed=seed)


def data(kind, rng, dtype=np.float64):
    """H (Tx, B, Hh) with nonzero padding, decoder states S (Ty, B, Hs), random upstream grads."""
    Hs, Hh = sizes(kind)
    H = rng.standard_normal((Tx, B, Hh)).astype(dtype)
    S = rng.standard_normal((Ty, B, Hs)).astype(dtype)
    dC = rng.standard_normal((Ty, B, Hh)).astype(dtype)
    dA = rng.standard_normal((Ty, B, Tx)).astype(dtype)
    return H, S, dC, dA


def run_steps(attn, H, S, dC, dA, lengths=LENGTHS):
    """Step form over Ty steps, then backward last step first: outputs, dS, dH."""
    attn.set_source(H, lengths)
    outs = [attn.forward_step(S[t]) for t in range(len(S))]
    dS = np.zeros_like(S)
    for t in reversed(range(len(S))):
        dS[t] = attn.backward_step(dC[t], None if dA is None else dA[t])
    return outs, dS, attn.backward_source()


def step_loss(attn, H, S, dC, dA, lengths=LENGTHS):
    """sum_t c<t> . dC<t> + alpha<t> . dA<t>, through attend (no caches)."""
    src = attn.precompute(H, lengths)
    total = 0.0
    for t in range(len(S)):
        c, a = attn.attend(S[t], src)
        total += float((c * dC[t]).sum()) + (0.0 if dA is None else float((a * dA[t]).sum()))
    return total


def check_grads(attn, f, pairs):
    """Every (name, analytic, array) against central differences of f."""
    for name, analytic, arr in pairs:
        num = numeric_grad(f, arr)
        err = np.abs(analytic - num).max() / max(np.abs(num).max(), 1e-12)
        print(f"{name}: max rel err {err:.2e}")
        np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("with_dalpha", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_step_form_gradients_match_finite_differences(kind, with_dalpha, rng):
    attn = make(kind)
    H, S, dC, dA = data(kind, rng)
    dA = dA if with_dalpha else None
    (_, dS, dH) = run_steps(attn, H, S, dC, dA)
    f = lambda: step_loss(attn, H, S, dC, dA)  # noqa: E731
    pairs = [("dS", dS, S), ("dH", dH, H)]
    pairs += [(k, attn.grads[k], attn.params[k]) for k in attn.params]
    assert len(pairs) == {"bahdanau": 6, "luong": 3, "dot": 2}[kind]
    check_grads(attn, f, pairs)
    # Padding: no gradient reaches h_j for j >= length (exactly zero, not small).
    for b, n in enumerate(LENGTHS):
        assert np.all(dH[n:, b] == 0), f"dH beyond length {n} of row {b}"


@pytest.mark.parametrize("kind", KINDS)
def test_sequence_form_gradients_match_finite_differences(kind, rng):
    attn = make(kind)
    H, S, dC, dA = data(kind, rng)
    attn.forward(S, H, LENGTHS)
    dS, dH = attn.backward(dC, dA)

    def f():
        C, A = attn.forward(S, H, LENGTHS)
        return float((C * dC).sum() + (A * dA).sum())

    check_grads(attn, f, [("dS", dS, S), ("dH", dH, H)]
                + [(k, attn.grads[k], attn.params[k]) for k in attn.params])
    for b, n in enumerate(LENGTHS):
        assert np.all(dH[n:, b] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_padded_positions_get_zero_weight_and_weights_sum_to_one(kind, rng):
    attn = make(kind)
    H, S, _, _ = data(kind, rng)
    C, A = attn.forward(S, H, LENGTHS)
    for b, n in enumerate(LENGTHS):
        assert np.all(A[:, b, n:] == 0.0)
        assert np.all(A[:, b, :n] > 0)
        # The padded states do not matter at all: a row cut to its length gives the same.
        C1, A1 = attn.forward(S[:, b:b + 1], H[:n, b:b + 1].copy())
        assert_close(A1[:, 0], A[:, b, :n], np.float64, "alpha of the row alone")
        assert_close(C1[:, 0], C[:, b], np.float64, "context of the row alone")
    np.testing.assert_allclose(A.sum(axis=2), 1.0, rtol=1e-14)
    # c = sum_j alpha_j h_j, recomputed with a plain loop
    C_loop = np.zeros_like(C)
    for t in range(Ty):
        for b in range(B):
            for j in range(Tx):
                C_loop[t, b] += A[t, b, j] * H[j, b]
    assert_close(C, C_loop, np.float64, "context")


@pytest.mark.parametrize("kind", KINDS)
def test_step_form_equals_sequence_form(kind, rng):
    """Ty forward_step calls give the sequence form's outputs, input gradients and grads."""
    H, S, dC, dA = data(kind, rng)
    step, seq = make(kind), make(kind)
    outs, dS_step, dH_step = run_steps(step, H, S, dC, dA)
    C, A = seq.forward(S, H, LENGTHS)
    dS_seq, dH_seq = seq.backward(dC, dA)
    assert_close(np.stack([c for c, _ in outs]), C, np.float64, "context")
    assert_close(np.stack([a for _, a in outs]), A, np.float64, "alpha")
    assert_close(dS_step, dS_seq, np.float64, "dS")
    assert_close(dH_step, dH_seq, np.float64, "dH")
    for k in seq.params:
        assert_close(step.grads[k], seq.grads[k], np.float64, k)


@pytest.mark.parametrize("kind", KINDS)
def test_backward_adds_into_grads_and_zero_grad_clears(kind, rng):
    attn = make(kind)
    H, S, dC, dA = data(kind, rng)
    _, dS1, dH1 = run_steps(attn, H, S, dC, dA)
    once = {k: g.copy() for k, g in attn.grads.items()}
    # a second pass on the same source, without set_source: same dS and dH, grads doubled
    for t in range(Ty):
        attn.forward_step(S[t])
    dS2 = np.stack([attn.backward_step(dC[t], dA[t]) for t in reversed(range(Ty))][::-1])
    dH2 = attn.backward_source()
    np.testing.assert_array_equal(dS2, dS1)
    np.testing.assert_array_equal(dH2, dH1)
    for k in once:
        assert_close(attn.grads[k], 2 * once[k], np.float64, k)
    attn.zero_grad()
    assert all(np.all(g == 0) for g in attn.grads.values())


@pytest.mark.parametrize("kind", KINDS)
def test_float32_agrees_with_float64(kind, rng):
    a64, a32 = make(kind, np.float64), make(kind, np.float32)
    for k in a64.params:
        a32.params[k] = a64.params[k].astype(np.float32)
    H, S, dC, dA = data(kind, rng)
    o64, dS64, dH64 = run_steps(a64, H, S, dC, dA)
    o32, dS32, dH32 = run_steps(a32, *(x.astype(np.float32) for x in (H, S, dC, dA)))
    assert dS32.dtype == dH32.dtype == o32[0][0].dtype == np.float32
    for t in range(Ty):
        assert_close(o32[t][0], o64[t][0], np.float32, "context")
        assert_close(o32[t][1], o64[t][1], np.float32, "alpha")
    assert_close(dS32, dS64, np.float32, "dS", rtol=2e-4)
    assert_close(dH32, dH64, np.float32, "dH", rtol=2e-4)
    for k in a64.params:
        assert a32.grads[k].dtype == np.float32
        assert_close(a32.grads[k], a64.grads[k], np.float32, k, rtol=2e-4)


def torch_attention(torch, kind, params, S, H, lengths):
    """The same attention written directly in PyTorch: scores, masked softmax, context."""
    Tx_, B_ = H.shape[:2]
    if kind == "bahdanau":
        q = S @ params["W_s"].T                                        # (Ty, B, A)
        k = H @ params["W_h"].T + params["b"]                          # (Tx, B, A)
        e = torch.tanh(q[:, :, None, :] + k.permute(1, 0, 2)[None]) @ params["v"]
    elif kind == "luong":
        e = torch.einsum("tbs,sh,jbh->tbj", S, params["W"], H)
    else:
        e = torch.einsum("tbh,jbh->tbj", S, H)
    pad = torch.arange(Tx_)[None, :] >= torch.as_tensor(lengths)[:, None]  # (B, Tx)
    alpha = torch.softmax(e.masked_fill(pad[None], float("-inf")), dim=2)
    context = torch.einsum("tbj,jbh->tbh", alpha, H)
    return context, alpha


@pytest.mark.parametrize("kind", KINDS)
def test_matches_pytorch_autograd(kind, rng):
    torch = pytest.importorskip("torch")
    attn = make(kind)
    H, S, dC, dA = data(kind, rng)
    C, A = attn.forward(S, H, LENGTHS)
    dS, dH = attn.backward(dC, dA)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in attn.params.items()}
    tS = torch.tensor(S, requires_grad=True)
    tH = torch.tensor(H, requires_grad=True)
    tC, tA = torch_attention(torch, kind, tp, tS, tH, LENGTHS)
    ((tC * torch.tensor(dC)).sum() + (tA * torch.tensor(dA)).sum()).backward()
    assert_close(C, tC.detach().numpy(), np.float64, "context")
    assert_close(A, tA.detach().numpy(), np.float64, "alpha")
    assert_close(dS, tS.grad.numpy(), np.float64, "dS")
    assert_close(dH, tH.grad.numpy(), np.float64, "dH")
    for k in tp:
        assert_close(attn.grads[k], tp[k].grad.numpy(), np.float64, k)


@pytest.mark.parametrize("kind", KINDS)
def test_attend_on_reordered_source_is_reordered_attend(kind, rng):
    """What a beam search does: reorder_rows on an AttentionSource picks the rows."""
    attn = make(kind)
    H, S, _, _ = data(kind, rng)
    src = attn.precompute(H, LENGTHS)
    assert isinstance(src, AttentionSource)
    index = np.array([2, 2, 0, 1, 0])
    moved = reorder_rows(src, index)
    assert isinstance(moved, AttentionSource)
    c, a = attn.attend(S[0], src)
    c2, a2 = attn.attend(S[0][index], moved)
    np.testing.assert_array_equal(c2, c[index])
    np.testing.assert_array_equal(a2, a[index])


def test_lengths_none_means_every_position(rng):
    attn = make("luong")
    H, S, _, _ = data("luong", rng)
    C0, A0 = attn.forward(S, H)
    C1, A1 = attn.forward(S, H, np.full(B, Tx))
    np.testing.assert_array_equal(C0, C1)
    assert np.all(A0 > 0)


def test_factory_builds_each_kind_and_config_rebuilds():
    for kind, cls in zip(KINDS, (BahdanauAttention, LuongAttention, DotAttention)):
        attn = make(kind, seed=3)
        assert type(attn) is cls and attn.kind == kind
        again = make_attention(**attn.config(), dtype=np.float64, seed=3)
        for k in attn.params:
            np.testing.assert_array_equal(again.params[k], attn.params[k])
    a = make_attention("bahdanau", 4, 3)
    assert a.attention_size == 4 and a.params["W_s"].shape == (4, 4)
    assert a.params["W_h"].dtype == np.float32
    assert make_attention("dot", 3, 3).params == {}


def test_invalid_arguments_raise_clear_errors(rng):
    with pytest.raises(ValueError, match="kind"):
        make_attention("general", 4, 3)
    with pytest.raises(ValueError, match="query_size == key_size"):
        make_attention("dot", 4, 3)
    with pytest.raises(ValueError, match="attention_size"):
        make_attention("luong", 4, 3, attention_size=5)
    with pytest.raises(ValueError, match="attention_size"):
        make_attention("bahdanau", 4, 3, attention_size=0)
    with pytest.raises(TypeError, match="query_size"):
        make_attention("luong", 4.0, 3)
    with pytest.raises(TypeError, match="dtype"):
        make_attention("luong", 4, 3, dtype=np.int32)
    attn = make("bahdanau")
    H, S, dC, dA = data("bahdanau", rng)
    with pytest.raises(ValueError, match="set_source"):
        attn.forward_step(S[0])
    with pytest.raises(ValueError, match="before forward"):
        attn.backward(dC, dA)
    with pytest.raises(ValueError, match="before set_source"):
        attn.backward_source()
    with pytest.raises(TypeError, match="H: expected dtype float64"):
        attn.set_source(H.astype(np.float32))
    with pytest.raises(ValueError, match=r"H: expected shape \(Tx, B, 3\)"):
        attn.set_source(H[..., :2].copy())
    with pytest.raises(ValueError, match="lengths"):
        attn.set_source(H, [6, 1, 1])
    with pytest.raises(ValueError, match="lengths"):
        attn.set_source(H, [0, 1, 1])
    bad = H.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        attn.set_source(bad)
    attn.set_source(H, LENGTHS)
    with pytest.raises(ValueError, match=r"s: expected shape \(3, 4\)"):
        attn.forward_step(S[0][:2])
    with pytest.raises(ValueError, match="no forward_step"):
        attn.backward_step(dC[0])
    attn.forward_step(S[0])
    with pytest.raises(ValueError, match="not yet taken back"):
        attn.backward_source()
    with pytest.raises(ValueError, match=r"dalpha: expected shape \(3, 5\)"):
        attn.backward_step(dC[0], dA[0][:, :4])
    with pytest.raises(ValueError, match=r"dcontext: expected shape \(3, 3\)"):
        attn.backward_step(dC[0][:, :2])
    with pytest.raises(TypeError, match="AttentionSource"):
        attn.attend(S[0], (H, H, LENGTHS))
    with pytest.raises(ValueError, match=r"S: expected shape \(Ty, 3, 4\)"):
        attn.forward(S[:, :2], H)
