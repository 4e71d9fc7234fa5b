"""The compiled core against the NumPy reference, whole layers, in both dtypes.

Covers every cell variant, stacked and bidirectional layers, variable lengths,
batch-first and non-contiguous inputs, and T = 1 / B = 1.
"""
import numpy as np
import pytest

from _cases import (CELL_IDS, copy_params, make_layer, random_lengths, random_state, run,
                    state_list)
from conftest import DTYPES, assert_close, compiled

pytestmark = pytest.mark.usefixtures("kernel_path")    # every kernel path the CPU runs

CONFIGS = [
    # T, B, D, H, num_layers, bidirectional, lengths, batch_first
    (1, 1, 3, 4, 1, False, False, False),
    (4, 2, 3, 1, 1, True, True, False),      # H = 1: single-row GEMMs (gemv) in backward
    (8, 1, 1, 3, 2, False, True, False),     # B = 1, D = 1
    (1, 1, 40, 36, 2, True, False, False),   # one step of one sequence: vector loops
    (5, 1, 2, 3, 1, True, False, False),
    (1, 4, 3, 5, 2, True, True, False),
    (7, 3, 5, 4, 1, False, True, False),
    (6, 4, 3, 6, 2, True, True, True),
    (9, 5, 8, 16, 2, False, False, True),
    (9, 64, 8, 16, 1, False, True, False),   # T*B > 512: weight gradients in chunks
    (5, 20, 7, 128, 1, True, True, False),   # B >= 16 on all threads: inputs step by step,
                                             # each thread its units (whole panels)
    (5, 20, 7, 150, 1, False, True, False),  # ... split products (H not whole panels)
    (5, 32, 7, 64, 2, False, True, True),    # ... and each thread its own sequences
]


def twin_layers(cell, D, H, dtype, rng, **kwargs):
    """A reference layer with random parameters, and a compiled one with the same."""
    ref = make_layer(cell, D, H, dtype=dtype, backend="numpy",
                     seed=int(rng.integers(1000)), **kwargs)
    fast = make_layer(cell, D, H, dtype=dtype, backend="cython", **kwargs)
    copy_params(fast, ref)
    return ref, fast


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "T{}B{}D{}H{}L{}{}{}{}".format(
    *c[:5], "bi" if c[5] else "", "len" if c[6] else "", "bf" if c[7] else ""))
def test_cython_matches_reference(cell, dtype, config, rng):
    T, B, D, H, L, bi, use_lengths, bf = config
    ref, fast = twin_layers(cell, D, H, dtype, rng, num_layers=L, bidirectional=bi,
                            batch_first=bf)
    x = rng.standard_normal((B, T, D) if bf else (T, B, D)).astype(dtype)
    state = random_state(ref, B, rng)
    lengths = random_lengths(T, B, rng) if use_lengths else None
    dy = rng.standard_normal((B, T, H * ref.num_directions) if bf else
                             (T, B, H * ref.num_directions)).astype(dtype)
    dfinal = random_state(ref, B, rng)

    expected = run(ref, x, state, lengths, dy, dfinal)
    got = run(fast, x, state, lengths, dy, dfinal)
    names = ["y", "final", "dx", "dstate0"]
    worst = 0.0
    for name, g, e in zip(names, got[:4], expected[:4]):
        for i, (gi, ei) in enumerate(zip(state_list(g), state_list(e))):
            assert gi.dtype == np.dtype(dtype)
            assert_close(gi, ei, dtype, f"{cell} {name}[{i}]")
            worst = max(worst, np.abs(gi - ei).max() / max(np.abs(ei).max(), 1e-30))
    for k in expected[4]:
        assert_close(got[4][k], expected[4][k], dtype, f"{cell} grads[{k}]")
        worst = max(worst, np.abs(got[4][k] - expected[4][k]).max()
                    / max(np.abs(expected[4][k]).max(), 1e-30))
    # The diagnostics BPTT records agree too.
    for k in ref.last_grad_sq:
        assert_close(fast.last_grad_sq[k], ref.last_grad_sq[k], dtype, f"{cell} grad_sq[{k}]")
    print(f"{cell} {np.dtype(dtype)}: worst relative difference {worst:.2e}")


@pytest.mark.parametrize("backend", ["numpy", "cython"])
@pytest.mark.parametrize("cell", ["gru", "lstm_peephole"])
def test_non_contiguous_inputs_give_the_same_numbers(cell, backend, rng):
    T, B, D, H = 5, 3, 4, 6
    layer = make_layer(cell, D, H, bidirectional=True, backend=backend)
    x = rng.standard_normal((T, B, D))
    state = random_state(layer, B, rng)
    y, final = layer.forward(x, state)
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy)
    # Fortran order, and strided views.
    xf = np.asfortranarray(x)
    big = np.zeros((T, 2 * B, D))
    big[:, ::2] = x
    for variant in (xf, big[:, ::2]):
        assert not variant.flags.c_contiguous
        y2, final2 = layer.forward(variant, state)
        dx2, _ = layer.backward(np.asfortranarray(dy))
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(dx2, dx)
        for f, f2 in zip(state_list(final), state_list(final2)):
            np.testing.assert_array_equal(f2, f)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_backward_adds_into_grads_and_zero_grad_clears(cell, backend, rng):
    T, B, D, H = 4, 2, 3, 5
    layer = make_layer(cell, D, H, num_layers=2, backend=backend)
    x = rng.standard_normal((T, B, D))
    y, _ = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    layer.backward(dy)
    once = {k: g.copy() for k, g in layer.grads.items()}
    assert all(np.abs(g).max() > 0 for g in once.values())
    layer.forward(x)
    layer.backward(dy)
    for k in once:
        np.testing.assert_allclose(layer.grads[k], 2 * once[k], rtol=1e-12, atol=1e-15)
    layer.zero_grad()
    assert all(np.all(g == 0) for g in layer.grads.values())


@pytest.mark.parametrize("cell", CELL_IDS)
def test_lengths_equal_to_T_match_no_lengths(cell, rng):
    T, B, D, H = 6, 3, 4, 5
    layer = make_layer(cell, D, H, bidirectional=True, backend="cython")
    x = rng.standard_normal((T, B, D))
    y1, f1 = layer.forward(x)
    y2, f2 = layer.forward(x, lengths=np.full(B, T))
    np.testing.assert_allclose(y2, y1, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("cell", CELL_IDS)
def test_padding_is_invisible(cell, rng):
    """A padded batch gives each sequence exactly what it gets alone."""
    T, B, D, H = 7, 3, 4, 5
    layer = make_layer(cell, D, H, num_layers=2, bidirectional=True, backend="cython")
    lengths = np.array([7, 3, 5])
    x = rng.standard_normal((T, B, D))
    y, final = layer.forward(x, lengths=lengths)
    for b in range(B):
        n = lengths[b]
        yb, fb = layer.forward(x[:n, b:b + 1])
        np.testing.assert_allclose(y[:n, b:b + 1], yb, rtol=1e-12, atol=1e-14)
        assert np.all(y[n:, b] == 0)
        for f, g in zip(state_list(final), state_list(fb)):
            np.testing.assert_allclose(f[:, b:b + 1], g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("B", [64, 26])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_thread_count_does_not_change_the_numbers(cell, B, rng):
    """Threads split the columns of each product, or the sequences at multiples of the
    micro-kernel's rows, never a sum: results are bitwise equal. B = 26 ends in a block
    of 2 rows, which the micro-kernel sums in two chains."""
    import seqcore
    # enough work per step to use every thread; T*B rows above product's chunk of
    # KC = 512 (B 64), with a shorter last chunk (threads must not share workspace rows)
    T, D, H = 9, 8, 128
    layer = make_layer(cell, D, H, num_layers=2, bidirectional=True, backend="cython",
                       dtype=np.float32)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    dy = rng.standard_normal((T, B, 2 * H)).astype(np.float32)
    results = []
    old = seqcore.get_num_threads()
    try:
        for n in (1, 2, 3):
            seqcore.set_num_threads(n)
            assert seqcore.get_num_threads() == n
            layer.zero_grad()
            y, _ = layer.forward(x, lengths=random_lengths(T, B, np.random.default_rng(1)))
            assert np.abs(y).max() > 0
            dx, _ = layer.backward(dy)
            results.append([y, dx] + [g.copy() for g in layer.grads.values()])
    finally:
        seqcore.set_num_threads(old)
    for other in results[1:]:
        for r0, r in zip(results[0], other):
            np.testing.assert_array_equal(r, r0)
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        seqcore.set_num_threads(0)


@pytest.mark.parametrize("cell", CELL_IDS)
def test_backward_scratch_kept_between_calls_and_shapes(cell, rng):
    """The compiled backward fills a dz scratch the layer keeps between calls (one for
    all layers and directions): calls of changing shapes, in any order, still match
    fresh reference layers."""
    D, H = 5, 7
    fast = make_layer(cell, D, H, num_layers=2, bidirectional=True, backend="cython")
    ref = make_layer(cell, D, H, num_layers=2, bidirectional=True, backend="numpy", seed=3)
    copy_params(fast, ref)
    for T, B in [(6, 3), (2, 5), (6, 3), (9, 1)]:
        x = rng.standard_normal((T, B, D))
        dy = rng.standard_normal((T, B, 2 * H))
        lengths = random_lengths(T, B, rng)
        expected = run(ref, x, None, lengths, dy, None)
        got = run(fast, x, None, lengths, dy, None)
        chunk = fast._kernels.dz_chunk_steps(T, B, fast._num_gates * H)
        assert fast._workspaces[("backward", "dz")].shape[:2] == (chunk, B)
        for name, g, e in zip(["y", "final", "dx", "dstate0"], got[:4], expected[:4]):
            for gi, ei in zip(state_list(g), state_list(e)):
                assert_close(gi, ei, np.float64, f"{cell} {name} T={T} B={B}")
        for k in expected[4]:
            assert_close(got[4][k], expected[4][k], np.float64, f"{cell} grad {k}")


@pytest.mark.parametrize("cell", CELL_IDS)
@pytest.mark.parametrize("bad", ["batch", "width", "no steps", "more steps than T"])
def test_backward_scratch_of_the_wrong_shape_is_refused(cell, bad, rng):
    """The compiled kernels check the scratch they are given before writing into it:
    (C, B, G*H) with 1 <= C <= T."""
    T, B, D, H = 3, 2, 4, 5
    layer = make_layer(cell, D, H, backend="cython")
    layer.forward(rng.standard_normal((T, B, D)))
    n = layer._backward_scratch(T, B)["dz_work"].shape[2]
    shape = {"batch": (T, B + 1, n), "width": (T, B, n + 1), "no steps": (0, B, n),
             "more steps than T": (T + 1, B, n)}[bad]
    layer._backward_scratch = lambda T, B: {"dz_work": np.empty(shape)}
    want = (rf"dz_work: expected shape \(C, 2, {n}\) with 1 <= C <= 3, "
            rf"got \({shape[0]}, {shape[1]}, {shape[2]}\)")
    with pytest.raises(ValueError, match=want):
        layer.backward(rng.standard_normal((T, B, H)))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_backward_chunks_hold_512_rows_or_a_million_values(cell):
    """dz_chunk_steps(T, B, n): steps of max(512, 2**20 / n) rows, at least one step,
    at most T: the medium LSTM (n = 2048) in chunks of 8 steps, small layers whole."""
    steps = compiled(cell).dz_chunk_steps
    assert steps(100, 64, 4 * 512) == 8        # medium LSTM: 512 rows
    assert steps(100, 64, 512) == 32           # medium RNN: 2048 rows of 512 values
    assert steps(50, 64, 4 * 1024) == 8        # large LSTM: 512 rows (a larger n, same rows)
    assert steps(64, 32, 4 * 128) == 64        # small LSTM: 2048 rows > T*B, one chunk
    assert steps(256, 1, 3 * 256) == 256       # stream: capped at T
    assert steps(5, 1000, 4096) == 1           # B > 512 rows: one step


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_backward_in_chunks_of_any_length_matches_reference(cell, dtype, threads, rng):
    """Backward runs its steps in chunks of C steps (the scratch's first dimension),
    each followed by its rows of dW and dx: every C from one step to all of them, with
    a partial last chunk and sequences ending inside chunks, on one thread and in the
    steps' parallel region (B*H >= 2048), gives the reference's gradients."""
    import seqcore
    T, B, D, H = 7, 40, 6, 64
    ref, fast = twin_layers(cell, D, H, dtype, rng, num_layers=2, bidirectional=True)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    lengths = random_lengths(T, B, rng)
    dy = rng.standard_normal((T, B, 2 * H)).astype(dtype)
    expected = run(ref, x, None, lengths, dy, None)
    n = fast._num_gates * H
    old = seqcore.get_num_threads()
    try:
        seqcore.set_num_threads(threads)
        for C in [1, 2, 3, T]:
            scratch = np.full((C, B, n), np.nan, dtype)    # nothing read before written
            fast._backward_scratch = lambda T, B: {"dz_work": scratch}
            got = run(fast, x, None, lengths, dy, None)
            for name, g, e in zip(["dx", "dstate0"], got[2:4], expected[2:4]):
                for gi, ei in zip(state_list(g), state_list(e)):
                    assert_close(gi, ei, dtype, f"{cell} {name} C={C}")
            for k in expected[4]:
                assert_close(got[4][k], expected[4][k], dtype, f"{cell} grads[{k}] C={C}")
    finally:
        seqcore.set_num_threads(old)
