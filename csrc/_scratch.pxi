# The backward kernels' dz scratch (included by each cell's .pyx, after numpy).
#
# Backward runs its steps in chunks of time (from the last): the steps of a chunk fill
# dz, dC/d(pre-activations), for the chunk's rows, and the products dW += dz^T [a, x]
# and dx = dz W_x of those rows follow before the next chunk. So dz holds one chunk,
# about CHUNK_ROWS rows, not all T*B: the medium LSTM's 52 MB became 4 MB. The
# products pack their operands CHUNK_ROWS rows at a time anyway (_packed.pxd), so they
# run as fast on chunks as on all rows at once.

cdef enum:
    CHUNK_ROWS = 512


def dz_chunk_steps(Py_ssize_t T, Py_ssize_t B):
    """The steps of one chunk of backward for T steps of B rows: CHUNK_ROWS rows, at
    least one step, at most T."""
    return max(1, min(T, CHUNK_ROWS // max(B, 1)))


cdef object dz_scratch(object dz_work, Py_ssize_t T, Py_ssize_t B, Py_ssize_t n, object dtype):
    """dz for chunks of C steps, (C, B, n): the caller's scratch when given (C is its
    first dimension, 1 <= C <= T), else a fresh array of dz_chunk_steps(T, B) steps.
    The layers keep one between calls: a fresh array on every call costs page faults,
    and after an idle second on a VM whose host reclaims freed memory, 3-20x more
    (60 MB: 7-9 ms, then 28-177 ms)."""
    if dz_work is None:
        return np.empty((dz_chunk_steps(T, B), B, n), dtype)
    got = tuple(dz_work.shape[:3])
    if got[1:] != (B, n) or not 1 <= got[0] <= T:
        raise ValueError(f"dz_work: expected shape (C, {B}, {n}) with 1 <= C <= {T}, "
                         f"got {got}")
    return dz_work
