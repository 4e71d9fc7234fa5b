"""Shared test helpers: tolerance table per dtype, comparison with a printed max error."""
import re
import zlib

import numpy as np
import pytest

from seqcore import _dispatch

DTYPES = [np.float32, np.float64]

# Compiled core vs NumPy reference: relative agreement (docs/spec.md §Tolerances), with an absolute
# floor for entries that are (near) zero.
TOL = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}


def max_rel_err(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(np.abs(expected).max(initial=0.0), 1e-30)
    return np.abs(actual - expected).max(initial=0.0) / scale


def assert_close(actual, expected, dtype, name="", rtol=None, atol=None):
    """np.testing.assert_allclose with the dtype's tolerance; the message names the array."""
    tol = dict(TOL[np.dtype(dtype)])
    if rtol is not None:
        tol["rtol"] = rtol
    if atol is not None:
        tol["atol"] = atol
    assert np.shape(actual) == np.shape(expected), (
        f"{name}: shape {np.shape(actual)} != {np.shape(expected)}")
    # assert_allclose's own test, in fewer passes over the arrays; a NaN or an inf (and
    # any failure) goes to assert_allclose, whose message then names the max error
    with np.errstate(invalid="ignore", over="ignore"):
        bound = tol["atol"] + tol["rtol"] * np.abs(expected)
        if (np.all(np.abs(np.subtract(actual, expected)) <= bound)
                and np.all(np.isfinite(bound))):
            return
    np.testing.assert_allclose(
        actual, expected, err_msg=f"{name}: max rel err {max_rel_err(actual, expected):.3e}",
        **tol)


def numeric_grad(f, arr, eps=1e-6):
    """Central finite differences of the scalar f() w.r.t. every entry of arr (in place)."""
    g = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        fp = f()
        arr[i] = old - eps
        fm = f()
        arr[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


# Every kernel path this CPU runs (avx512, avx2, generic: the best first).
KERNEL_PATHS = _dispatch.supported()


@pytest.fixture(params=KERNEL_PATHS)
def kernel_path(request):
    """Runs the test once per kernel path the CPU supports: compiled layers made inside
    it, and `compiled(cell)`, use that path's modules."""
    with _dispatch.use(request.param):
        yield request.param


class _Compiled:
    """A cell's compiled module whose {cell}_forward / {cell}_backward are given the
    core's thread count (seqcore.get_num_threads()), as the layers give it; called with
    the reference's arguments otherwise."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        kernel = getattr(self._module, name)
        if not name.endswith(("_forward", "_backward")):
            return kernel
        return lambda *args, **kwargs: kernel(*args, threads=_dispatch.get_num_threads(),
                                              **kwargs)


def compiled(cell):
    """The active kernel path's module of a cell ("rnn", "gru", "lstm"), its kernels
    called with the core's thread count."""
    return _Compiled(_dispatch.kernels(cell))


@pytest.fixture
def rng(request):
    # A different but reproducible stream per test, seeded by its file and name without
    # the folder (tests/kernels/test_x.py::t as tests/test_x.py::t), so that moving a
    # test between folders leaves its data as it was.
    nodeid = re.sub(r"^tests/[a-z_]+/(?=test_)", "tests/", request.node.nodeid)
    seed = zlib.crc32(nodeid.encode())
    return np.random.default_rng(seed)


def pytest_report_header(config):
    import seqcore
    info = seqcore.cpu_info()
    return (f"seqcore {seqcore.__version__} from {seqcore.__file__}\n"
            f"kernel paths: {', '.join(info['supported'])} on {info['cpu']} "
            f"(default {info['kernels']}); kernel tests run on each")
