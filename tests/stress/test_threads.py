"""The BLAS thread limit used by the command line: applied inside, restored after, with or without threadpoolctl."""
import sys

import numpy as np
import pytest

from seqcore import _threads

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    np.dot(np.ones((2, 2)), np.ones((2, 2)))
    return sorted(i["num_threads"] for i in threadpoolctl.threadpool_info()
                  if i["user_api"] == "blas")


@pytest.mark.parametrize("without_threadpoolctl", [False, True])
def test_limit_threads_applies_and_restores(without_threadpoolctl, monkeypatch):
    if without_threadpoolctl:
        monkeypatch.setitem(sys.modules, "threadpoolctl", None)   # the ctypes fallback
    before = _blas_threads()
    assert before, "no BLAS found"
    with _threads.limit_threads(1):
        monkeypatch.undo()
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def _forked_forward(layer, x, queue):
    import seqcore
    y, _ = layer.forward(x)
    queue.put((seqcore.get_num_threads(), y))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_forked_child_runs_the_core_on_one_thread():
    """OpenMP's threads do not survive fork(): without the at-fork hook the child's first
    parallel region waits forever. The child gets one thread and the same numbers."""
    import multiprocessing as mp

    import seqcore
    old = seqcore.set_num_threads(2)
    try:
        layer = seqcore.LSTM(32, 256, seed=0)
        x = np.random.default_rng(0).standard_normal((4, 64, 32)).astype(np.float32)
        y, _ = layer.forward(x)                 # the parent's threads are started
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_forked_forward, args=(layer, x, queue))
        child.start()
        try:
            threads, y_child = queue.get(timeout=60)    # (before join: the queue's pipe
        except Exception:                               # must drain for the child to end)
            child.kill()
            pytest.fail("the forked child hung in the core")
        child.join(10)
        assert child.exitcode == 0 and threads == 1
        np.testing.assert_array_equal(y_child, y)
        assert seqcore.get_num_threads() == 2   # the parent keeps its threads
    finally:
        seqcore.set_num_threads(old)
