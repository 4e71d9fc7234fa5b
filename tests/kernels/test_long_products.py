"""The compiled core against the NumPy reference on the long products: rows of A
packed from k = 1024, and a single sequence's steps in one parallel region.

Each test makes its reference layer and its result once, then runs the compiled layer
on every kernel path the CPU supports and on 1, 2 (and 3) threads against it: the
reference is the same for all of them, and it is most of a test's time.
"""
import numpy as np
import pytest

from _cases import CELL_IDS, copy_params, make_layer, random_state, run, state_list
from conftest import DTYPES, KERNEL_PATHS, TOL, assert_close
from seqcore import _dispatch


def compiled_twins(ref, cell, D, H, **kwargs):
    """(path, the compiled layer of that path with ref's parameters) for every path."""
    for path in KERNEL_PATHS:
        with _dispatch.use(path):
            fast = make_layer(cell, D, H, dtype=ref.dtype, backend="cython", **kwargs)
        copy_params(fast, ref)
        yield path, fast


def on_threads(n, fn, *args):
    import seqcore
    old = seqcore.get_num_threads()
    try:
        seqcore.set_num_threads(n)
        return fn(*args)
    finally:
        seqcore.set_num_threads(old)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_long_rows_packed_match_reference(cell, dtype, rng):
    """D = H = 1024: the products pack their rows of A (from k = 1024 with 512 columns
    per thread) in every pass: input projection, steps, backward steps. B = 70 rows
    span two row blocks of a step (64 + 6 floats) and end in a partial micro-kernel
    block. On every path, with 1 and 2 threads."""
    T, B, D, H = 3, 70, 1024, 1024
    ref = make_layer(cell, D, H, dtype=dtype, backend="numpy", seed=int(rng.integers(1000)))
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state = random_state(ref, B, rng)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    expected = run(ref, x, state, None, dy, None)
    for path, fast in compiled_twins(ref, cell, D, H):
        for threads in (1, 2):
            got = on_threads(threads, run, fast, x, state, None, dy, None)
            # sums of 1024-2048 terms: float32 entries near 0 are compared on the
            # array's scale
            pairs = [(f"{name}[{i}]", gi, ei) for name, g, e in
                     zip(["y", "final", "dx", "dstate0"], got[:4], expected[:4])
                     for i, (gi, ei) in enumerate(zip(state_list(g), state_list(e)))]
            pairs += [(f"grad {k}", got[4][k], expected[4][k]) for k in expected[4]]
            for name, g, e in pairs:
                scale = TOL[np.dtype(dtype)]["rtol"] * np.abs(e).max()
                assert_close(g, e, dtype, f"{path} {cell} {name} threads={threads}",
                             atol=scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_one_long_sequence_in_one_region_matches_reference(cell, dtype, rng):
    """B = 1 with enough recurrent weights per step (H = 384: 147 Ki to 590 Ki) runs
    all its steps in one parallel region on two threads, the gate pass on thread 0,
    in both directions of a 2-layer bidirectional layer, also with the sequence ending
    before T; a single step (T = 1, whose kernels read W's rows, not packed panels)
    stays out of the region. Matches the reference on every path and on 1, 2 and 3
    threads, with the same bits on each thread count (threads split the products'
    columns, never a sum)."""
    D, H = 5, 384
    kw = dict(num_layers=2, bidirectional=True)
    ref = make_layer(cell, D, H, dtype=dtype, backend="numpy", seed=int(rng.integers(1000)),
                     **kw)
    cases = []
    for T, lengths in ((9, None), (9, np.array([6])), (1, None)):
        x = rng.standard_normal((T, 1, D)).astype(dtype)
        state = random_state(ref, 1, rng)
        dy = rng.standard_normal((T, 1, 2 * H)).astype(dtype)
        dfinal = random_state(ref, 1, rng)
        args = (x, state, lengths, dy, dfinal)
        cases.append((T, args, run(ref, *args)))
    for path, fast in compiled_twins(ref, cell, D, H, **kw):
        for T, args, expected in cases:
            results = []
            for threads in (1, 2, 3):
                got = on_threads(threads, run, fast, *args)
                what = f"{path} {cell} T={T} threads={threads}"
                for name, g, e in zip(["y", "final", "dx", "dstate0"], got[:4],
                                      expected[:4]):
                    for gi, ei in zip(state_list(g), state_list(e)):
                        assert_close(gi, ei, dtype, f"{what} {name}")
                for k in expected[4]:
                    assert_close(got[4][k], expected[4][k], dtype, f"{what} grads[{k}]")
                results.append([a for v in got[:4] for a in state_list(v)]
                               + list(got[4].values()))
            for other in results[1:]:
                for r0, r in zip(results[0], other):
                    np.testing.assert_array_equal(r, r0)
