"""BLAS thread limits for small models: threadpoolctl when installed, else OpenBLAS' own setter via ctypes.

The matrices of a small recurrent model (a hundred units, batches of tens) are too
small for a multi-threaded GEMM to pay off: OpenBLAS' thread hand-offs cost more than
the arithmetic, and far more when the cores are shared with other work (measured: the
default `seqcore train` takes ~8 s on one thread and over 3 minutes with OpenBLAS'
default threads on a busy 2-core machine). The command line therefore runs with one
BLAS thread by default. threadpoolctl (in the ``test`` extra) does this for every BLAS;
without it, the OpenBLAS builds that NumPy and SciPy ship are found among the loaded
libraries (Linux) and set directly. Elsewhere the limit is skipped.
"""

import contextlib
import ctypes

# (set, get) function names exported by the OpenBLAS builds of NumPy and SciPy wheels.
_SYMBOLS = [("openblas_set_num_threads", "openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_")]


def _openblas_handles():
    """[(set_fn, get_fn)] for each OpenBLAS loaded in this process (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f
                            if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return []
    handles = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            set_fn, get_fn = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if set_fn is not None and get_fn is not None:
                set_fn.argtypes, get_fn.restype = [ctypes.c_int], ctypes.c_int
                handles.append((set_fn, get_fn))
                break
    return handles


@contextlib.contextmanager
def _openblas_limit(n):
    handles = _openblas_handles()
    saved = [get_fn() for _, get_fn in handles]
    for set_fn, _ in handles:
        set_fn(n)
    try:
        yield
    finally:
        for (set_fn, _), old in zip(handles, saved):
            set_fn(old)


def limit_blas_threads(n):
    """Context manager: at most ``n`` BLAS threads inside (no-op for None)."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return _openblas_limit(int(n))
    return threadpool_limits(limits=int(n), user_api="blas")
