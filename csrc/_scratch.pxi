# The backward kernels' dz scratch (included by each cell's .pyx, after numpy).
#
# Backward runs its steps in chunks of time (from the last): the steps of a chunk fill
# dz, dC/d(pre-activations), for the chunk's rows, and the products dW += dz^T [a, x]
# and dx = dz W_x of those rows follow before the next chunk. So dz holds one chunk,
# not all T*B rows: the medium LSTM's 52 MB became 4 MB. A chunk has CHUNK_ROWS rows,
# or more when they hold fewer than CHUNK_VALUES values: the products pack their
# operands CHUNK_ROWS rows at a time anyway, so they run as fast on chunks as on all
# rows at once, and small layers run in one chunk (no extra parallel regions).

cdef enum:
    ALIGN = 64                  # bytes: a cache line, and the widest vector (AVX-512)
    CHUNK_ROWS = 512
    CHUNK_VALUES = 1 << 20


def dz_chunk_steps(Py_ssize_t T, Py_ssize_t B, Py_ssize_t n):
    """The steps of one chunk of backward for T steps of B rows of n gate values:
    max(CHUNK_ROWS, CHUNK_VALUES / n) rows, at least one step, at most T."""
    cdef Py_ssize_t rows = max(<Py_ssize_t>CHUNK_ROWS, CHUNK_VALUES // max(n, 1))
    return max(1, min(T, rows // max(B, 1)))


cdef object aligned_empty(size_t n, object dtype):
    """An uninitialized 1-D array of n values (n >= 1) that starts on a cache line.
    NumPy aligns to 16 bytes; packed panels read 64 bytes at a time, and a panel
    row that straddles two lines costs two reads (one row of the stream LSTM's step,
    1 x 256 x 1024 from packed weights in L2: 8.6 us aligned, 14.9 us 16 bytes off;
    the medium step 64 x 512 x 2048: 0.93 vs 1.11 ms)."""
    cdef size_t extra = ALIGN // np.dtype(dtype).itemsize
    buf = np.empty(max(n, <size_t>1) + extra, dtype)
    cdef size_t skip = ((-buf.ctypes.data) % ALIGN) // np.dtype(dtype).itemsize
    return buf[skip:skip + max(n, <size_t>1)]


cdef object dz_scratch(object dz_work, Py_ssize_t T, Py_ssize_t B, Py_ssize_t n, object dtype):
    """dz for chunks of C steps, (C, B, n): the caller's scratch when given (C is its
    first dimension, 1 <= C <= T), else a fresh array of dz_chunk_steps(T, B, n) steps.
    The layers keep one between calls: a fresh array on every call costs page faults,
    and after an idle second on a VM whose host reclaims freed memory, 3-20x more
    (60 MB: 7-9 ms, then 28-177 ms)."""
    if dz_work is None:
        return np.empty((dz_chunk_steps(T, B, n), B, n), dtype)
    got = tuple(dz_work.shape[:3])
    if got[1:] != (B, n) or not 1 <= got[0] <= T:
        raise ValueError(f"dz_work: expected shape (C, {B}, {n}) with 1 <= C <= {T}, "
                         f"got {got}")
    return dz_work


cdef void add_column_sums(floating* out, const floating* dz, Py_ssize_t rows,
                          Py_ssize_t n) noexcept nogil:
    """out (n) += the column sums of dz (rows, n): a bias's gradient over a chunk."""
    cdef Py_ssize_t r, j
    cdef const floating* row
    for r in range(rows):
        row = dz + r * n
        for j in range(n):
            out[j] += row[j]
