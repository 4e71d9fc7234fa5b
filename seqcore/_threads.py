"""BLAS thread limits for small models: a context manager over threadpoolctl, when it is installed.

The matrices of a small recurrent model (a few hundred units, batches of tens) are
too small for a multi-threaded GEMM to pay off: OpenBLAS' thread hand-offs cost more
than the arithmetic, and far more when the cores are shared with other work. The
command line therefore runs with one BLAS thread by default. threadpoolctl is
optional (it comes with the ``test`` extra); without it the limit is skipped.
"""

import contextlib


def limit_blas_threads(n):
    """Context manager: at most ``n`` BLAS threads inside (no-op for None or without threadpoolctl)."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")
