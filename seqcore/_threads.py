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
import os
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


@contextlib.contextmanager
def _core_limit(n):
    old = set_num_threads(min(n, get_num_threads()))
    try:
        yield
    finally:
        set_num_threads(old)


def limit_threads(n, blas=None):
    """Context manager: at most ``n`` core threads and ``blas`` BLAS threads inside.

    Parameters
    ----------
    n : int or None
        The most threads the compiled core may use in the block; None leaves its count
        as it is.
    blas : int, optional
        The BLAS threads in the block (threadpoolctl when installed, else OpenBLAS'
        own setter); defaults to ``n``.

    Returns
    -------
    contextlib.ExitStack
        Restores both counts when the block ends.

    Examples
    --------
    >>> import seqcore
    >>> with seqcore.limit_threads(1):
    ...     seqcore.get_num_threads()
    1
    """
    blas = n if blas is None else blas
    stack = contextlib.ExitStack()
    if n is not None:
        stack.enter_context(_core_limit(int(n)))
    if blas is None:
        return stack
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        stack.enter_context(_openblas_limit(int(blas)))
    else:
        stack.enter_context(threadpool_limits(limits=int(blas), user_api="blas"))
    return stack


def default_core_threads():
    """SEQCORE_NUM_THREADS if set, else the cores this process may run on."""
    env = os.environ.get("SEQCORE_NUM_THREADS")
    if env:
        try:
            return max(int(env), 1)
        except ValueError:
            raise ValueError(f"SEQCORE_NUM_THREADS: expected an integer, got {env!r}") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_num_threads(n):
    """Set the threads of the compiled core (all cells, Dense, the loss, Adam).

    The default is ``SEQCORE_NUM_THREADS``, else the cores this process may run on.
    A child process made by ``fork`` starts on one thread (GNU OpenMP's threads do not
    survive ``fork``); start workers with ``spawn`` to keep them all.

    Parameters
    ----------
    n : int
        At least 1.

    Returns
    -------
    int
        The count it replaces.

    Raises
    ------
    ValueError
        ``n`` not an integer ``>= 1``.
    """
    from . import _dispatch
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    old = get_num_threads()
    _dispatch.set_num_threads(n)
    return old


def get_num_threads():
    """The threads the compiled core uses.

    Returns
    -------
    int
    """
    from . import _dispatch
    return _dispatch.get_num_threads()


def one_thread_after_fork():
    """In a child made by fork(): the core on one thread. GNU OpenMP's worker threads do
    not survive fork(), and a child entering a parallel region after its parent had
    started them waits for them forever (measured: a forked LSTM forward hung). On one
    thread the core never enters one. (Start worker processes with the "spawn" method to
    keep every thread.)"""
    set_num_threads(1)

