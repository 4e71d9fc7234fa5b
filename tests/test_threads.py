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
