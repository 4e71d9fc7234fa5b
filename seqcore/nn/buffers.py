"""The layers' output buffers: arrays kept between calls and reused once let go of,
the workspaces the kernels fill (aligned to a cache line), and the gradient arrays
the kernels add into, checked before they do."""

import sys

import numpy as np

__all__ = ["kept", "checked_grad", "aligned_empty"]


def _refs(kept, i):
    """The reference count of kept[i], as kept sees it."""
    buf = kept[i]
    return sys.getrefcount(buf)


_FREE = _refs([np.empty(1)], 0)     # the count of an array nothing else references


ALIGN = 64      # bytes: a cache line, and the widest vector (AVX-512)


def aligned_empty(shape, dtype):
    """np.empty(shape, dtype) starting on a cache line, for the arrays the kernels
    fill (a layer's workspaces, never an output handed to the caller: kept() counts
    references to the array itself, which a view of this one's base would not hold).
    NumPy aligns to 16 bytes; the kernels write 64 bytes at a time, and a vector that
    straddles two lines costs two accesses (the small LSTM's forward, whose products
    write its gates: 4.4 -> 3.9 ms on one thread, avx512, with the kernels' own
    workspaces aligned too)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    buf = np.empty(n + ALIGN // dtype.itemsize, dtype)
    skip = (-buf.ctypes.data % ALIGN) // dtype.itemsize
    return buf[skip:skip + n].reshape(shape)


def kept(holder, attr, shape, dtype, pool=1):
    """An output array (shape, dtype) from holder.<attr>, a list of up to ``pool``
    arrays kept between calls: one that nothing but the list references (CPython's
    reference count against _FREE; a caller's name, a view or a memoryview of it each
    hold one), else a new one, kept in place of the oldest.

    Outputs are kept for reuse because a fresh array per call costs page faults once
    the previous step's arrays have gone back to the system (1666 faults, 3 ms of a
    46 ms char-level LSTM step). A pool of two serves an output that the next layer
    holds until the next call (the embedding's, in the recurrent layer's cache)."""
    kept = getattr(holder, attr, None)
    if kept is None:
        kept = []
        setattr(holder, attr, kept)
    for i in range(len(kept)):
        if _refs(kept, i) == _FREE and kept[i].shape == shape and kept[i].dtype == dtype:
            return kept[i]
    buf = np.empty(shape, dtype)
    if len(kept) >= pool:
        del kept[0]
    kept.append(buf)
    return buf


def checked_grad(grads, name, shape, dtype):
    """grads[name], which the kernels add into: the right shape, dtype and layout."""
    g = grads.get(name)
    if (not isinstance(g, np.ndarray) or g.shape != shape or g.dtype != dtype
            or not g.flags.c_contiguous or not g.flags.writeable):
        raise ValueError(f"grads[{name!r}]: expected a writeable C-contiguous array of "
                         f"shape {shape} and dtype {dtype}; call zero_grad() to reset "
                         "the gradients")
    return g
