# The rest of a training step, compiled fast path: Dense forward/backward, softmax
# cross-entropy, the Adam update, the embedding's scatter-add, sums of squares.
# (The oracles are the NumPy references in seqcore/dense.py, seqcore/embedding.py and
# seqcore/optim.py; this module is built once per kernel path, as the cells are.)
#
# Legend: N rows (T*B positions), K input features of the Dense layer, V its outputs
# (the vocabulary), E embedding width.
#
# Why not NumPy: the products run on the core's packed kernel (_packed.pxd) over the
# core's OpenMP threads, not on OpenBLAS' thread pool, whose idle threads spin for
# ~0.1 s after each call on the cores the recurrent layers' threads need (the 2-thread
# training step of a 256-unit LSTM ran at half the speed with two BLAS threads as with
# one); and the element-wise passes are one pass each, without NumPy's temporaries.
# Every function trusts its arguments: seqcore/dense.py, embedding.py and optim.py
# check shapes, dtypes and contiguity and allocate the outputs first.
from cython cimport floating
from libc.stdint cimport int64_t
from cython.parallel cimport prange

from _packed cimport (KC, a_work_len, dense_row, product, product_work_len,
                      region_begin, region_end, region_mark, sc_threads)

cdef extern from "_train.h" nogil:
    double sc_xent_row_f(float* d, const float* z, size_t V, int64_t t, float w)
    double sc_xent_row_d(double* d, const double* z, size_t V, int64_t t, double w)
    void sc_adam_f(float* p, float* m, float* v, const float* g, size_t n, double b1,
                   double b2, double alpha, double eps_hat, double decay)
    void sc_adam_d(double* p, double* m, double* v, const double* g, size_t n, double b1,
                   double b2, double alpha, double eps_hat, double decay)
    double sc_sumsq_f(const float* x, size_t n)
    double sc_sumsq_d(const double* x, size_t n)

# An element-wise pass wakes a second thread from this many values (a hand-off costs
# a few microseconds; one value of Adam's pass a fraction of a nanosecond).
cdef enum:
    MIN_VALUES_PER_THREAD = 1 << 16


include "_load.pxi"

cdef inline Py_ssize_t pass_threads(int threads, size_t n) noexcept nogil:
    cdef size_t nq = n // MIN_VALUES_PER_THREAD
    if nq > <size_t>threads:
        nq = <size_t>threads
    return <Py_ssize_t>(nq if nq > 1 else 1)


# ------------------------------------------------------------------------- Dense

def dense_work_len(Py_ssize_t N, Py_ssize_t K, Py_ssize_t V, int threads, bint double):
    """(work, abuf): elements of the two workspaces dense_forward and dense_backward
    take for N rows of K inputs and V outputs on `threads` threads."""
    cdef size_t w, a
    if double:
        w = max(product_work_len(<double*>NULL, V, K, True, threads),
                product_work_len(<double*>NULL, K, N, False, threads),
                product_work_len(<double*>NULL, K, V, False, threads))
        a = a_work_len(<double*>NULL, max(K, <Py_ssize_t>KC), threads)
    else:
        w = max(product_work_len(<float*>NULL, V, K, True, threads),
                product_work_len(<float*>NULL, K, N, False, threads),
                product_work_len(<float*>NULL, K, V, False, threads))
        a = a_work_len(<float*>NULL, max(K, <Py_ssize_t>KC), threads)
    return w, a


def dense_forward(floating[:, ::1] y,             # (N, V) out
                  const floating[:, ::1] x,       # (N, K)
                  const floating[:, ::1] W,       # (V, K)
                  const floating[::1] b,          # (V,)
                  floating[::1] work,             # dense_work_len()[0]
                  floating[::1] abuf,             # dense_work_len()[1], or None
                  int threads):
    """y = x @ W^T + b; see seqcore.dense.dense_forward_reference."""
    cdef Py_ssize_t N = x.shape[0], K = x.shape[1], V = W.shape[0], q, nq
    cdef floating* Ab = &abuf[0] if abuf is not None and abuf.shape[0] else NULL
    threads = sc_threads(threads)           # one while the cores are taken (_load.h)
    nq = pass_threads(threads, <size_t>(N * V))
    with nogil:
        # every row of y starts as b, then the product adds into it
        if nq > 1:
            region_begin(nq)
            for q in prange(nq, num_threads=nq, schedule="static"):
                fill_rows(&y[0, 0], &b[0], q * N // nq, (q + 1) * N // nq, V)
                region_mark(q)
            region_end()
        else:
            fill_rows(&y[0, 0], &b[0], 0, N, V)
        product(&y[0, 0], V, &x[0, 0], K, 1, &W[0, 0], K, True, N, V, K, True, threads,
                &work[0], Ab)


def dense_forward_q8(floating[:, ::1] y,          # (N, V) out
                     const floating[:, ::1] x,    # (N, K)
                     const signed char[:, ::1] Q, # (V, K) int8 weights
                     const floating[::1] scale,   # (V,) their rows' scales
                     const floating[::1] b,       # (V,)
                     int threads):
    """y = x @ (scale * Q)^T + b for a few rows of x (a token at a time): each row
    quantized and multiplied by the int8 rows of Q straight from memory, int8 x int8
    (sc_rowdot2_q8, _q8.h), the outputs split over the threads. The NumPy twin is
    seqcore.reference.quant.qlinear_int8."""
    cdef Py_ssize_t N = x.shape[0], K = x.shape[1], V = Q.shape[0], n
    threads = sc_threads(threads)           # one while the cores are taken (_load.h)
    with nogil:
        for n in range(N):
            dense_row(&y[n, 0], &x[n, 0], K, NULL, &Q[0, 0], &scale[0], &b[0], V, threads)


cdef inline void fill_rows(floating* y, const floating* b, Py_ssize_t r0, Py_ssize_t r1,
                           Py_ssize_t V) noexcept nogil:
    """rows [r0, r1) of y (., V) = b"""
    cdef Py_ssize_t r, j
    cdef floating* row
    for r in range(r0, r1):
        row = y + r * V
        for j in range(V):
            row[j] = b[j]


def dense_backward(floating[:, ::1] dx,           # (N, K) out, or None
                   floating[:, ::1] dW,           # (V, K) accumulate
                   floating[::1] db,              # (V,) accumulate
                   const floating[:, ::1] dy,     # (N, V)
                   const floating[:, ::1] x,      # (N, K)
                   const floating[:, ::1] W,      # (V, K)
                   floating[::1] work,            # dense_work_len()[0]
                   floating[::1] abuf,            # dense_work_len()[1], or None
                   int threads):
    """dW += dy^T x, db += column sums of dy, dx = dy W; see
    seqcore.dense.dense_backward_reference."""
    cdef Py_ssize_t N = dy.shape[0], V = dy.shape[1], K = x.shape[1], q, nq
    cdef floating* Ab = &abuf[0] if abuf is not None and abuf.shape[0] else NULL
    cdef bint want_dx = dx is not None
    threads = sc_threads(threads)
    nq = pass_threads(threads, <size_t>(N * V))
    with nogil:
        # dW (V, K) += dy^T (V, N) @ x (N, K)   (dy read transposed: rs = 1, cs = V)
        product(&dW[0, 0], K, &dy[0, 0], 1, V, &x[0, 0], K, False, V, K, N, True,
                threads, &work[0], Ab)
        # db (V) += the column sums of dy, the columns split between the threads
        if nq > 1:
            region_begin(nq)
            for q in prange(nq, num_threads=nq, schedule="static"):
                add_column_sums(&db[0], &dy[0, 0], N, V, q * V // nq, (q + 1) * V // nq)
                region_mark(q)
            region_end()
        else:
            add_column_sums(&db[0], &dy[0, 0], N, V, 0, V)
        # dx (N, K) = dy (N, V) @ W (V, K)
        if want_dx:
            product(&dx[0, 0], K, &dy[0, 0], V, 1, &W[0, 0], K, False, N, K, V, False,
                    threads, &work[0], Ab)


cdef inline void add_column_sums(floating* out, const floating* dy, Py_ssize_t rows,
                                 Py_ssize_t n, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """out[j0:j1] += the column sums of dy (rows, n) over columns [j0, j1)"""
    cdef Py_ssize_t r, j
    cdef const floating* row
    for r in range(rows):
        row = dy + r * n
        for j in range(j0, j1):
            out[j] += row[j]


# ------------------------------------------------------------ softmax cross-entropy

cdef inline double xent_row(floating* d, const floating* z, Py_ssize_t V, int64_t t,
                            floating w) noexcept nogil:
    if floating is float:
        return sc_xent_row_f(d, z, V, t, w)
    else:
        return sc_xent_row_d(d, z, V, t, w)


def softmax_cross_entropy(floating[:, ::1] dlogits,       # (N, V) out
                          const floating[:, ::1] logits,  # (N, V)
                          const int64_t[::1] targets,     # (N,) ids in [0, V)
                          const floating[::1] weight,     # (N,) mask / B, or None
                          double scale,                   # 1 / B (when weight is None)
                          int threads):
    """sum_r w_r L_r, with dlogits = dC/dlogits; L_r the cross-entropy of row r's
    softmax. Returns (loss, bad): bad counts the rows with NaN or infinity (then
    loss and dlogits mean nothing). See seqcore.dense.softmax_cross_entropy_reference."""
    cdef Py_ssize_t N = logits.shape[0], V = logits.shape[1], r
    cdef Py_ssize_t nq = pass_threads(sc_threads(threads), <size_t>(N * V))
    cdef bint weighted = weight is not None
    cdef double loss = 0, lr
    cdef Py_ssize_t bad = 0
    cdef floating w
    with nogil:
        if nq > 1:               # rows split between the threads (no region for one)
            for r in prange(N, num_threads=nq, schedule="static"):
                w = weight[r] if weighted else <floating>scale
                lr = xent_row(&dlogits[r, 0], &logits[r, 0], V, targets[r], w)
                if lr != lr:
                    bad += 1
                else:
                    loss += w * lr
        else:
            for r in range(N):
                w = weight[r] if weighted else <floating>scale
                lr = xent_row(&dlogits[r, 0], &logits[r, 0], V, targets[r], w)
                if lr != lr:
                    bad += 1
                else:
                    loss += w * lr
    return loss, bad


# ---------------------------------------------------------------------- optimizers

cdef inline void adam_slice(floating* p, floating* m, floating* v, const floating* g,
                            size_t n, double b1, double b2, double alpha, double eps_hat,
                            double decay) noexcept nogil:
    if floating is float:
        sc_adam_f(p, m, v, g, n, b1, b2, alpha, eps_hat, decay)
    else:
        sc_adam_d(p, m, v, g, n, b1, b2, alpha, eps_hat, decay)


def adam_update(floating[::1] p,                  # (n,) updated
                floating[::1] m,                  # (n,) updated
                floating[::1] v,                  # (n,) updated
                const floating[::1] g,            # (n,)
                double beta1, double beta2, double alpha, double eps_hat, double decay,
                int threads):
    """One Adam(W) update in place; see seqcore.optim.adam_update_reference."""
    cdef size_t n = p.shape[0], i0, i1
    cdef Py_ssize_t q, nq = pass_threads(sc_threads(threads), n)
    with nogil:
        if nq > 1:
            region_begin(nq)
            for q in prange(nq, num_threads=nq, schedule="static"):
                i0 = <size_t>q * n // <size_t>nq
                i1 = <size_t>(q + 1) * n // <size_t>nq
                adam_slice(&p[i0], &m[i0], &v[i0], &g[i0], i1 - i0, beta1, beta2, alpha,
                           eps_hat, decay)
                region_mark(q)
            region_end()
        else:
            adam_slice(&p[0], &m[0], &v[0], &g[0], n, beta1, beta2, alpha, eps_hat, decay)


def sum_squares(const floating[::1] x):
    """sum of x^2, accumulated in double."""
    cdef double s
    with nogil:
        if floating is float:
            s = sc_sumsq_f(&x[0], x.shape[0])
        else:
            s = sc_sumsq_d(&x[0], x.shape[0])
    return s


# ----------------------------------------------------------------------- Embedding

def embedding_backward(floating[:, ::1] dW,       # (V, E) accumulate
                       const floating[:, ::1] dx,  # (N, E)
                       const int64_t[::1] ids):    # (N,) in [-1, V)
    """dW[ids[r]] += dx[r] for every row r with ids[r] >= 0, in row order (so the
    sums are the same on every run); see seqcore.embedding.embedding_backward_reference."""
    cdef Py_ssize_t N = dx.shape[0], E = dx.shape[1], r, j
    cdef int64_t i
    cdef floating* out
    cdef const floating* row
    with nogil:
        for r in range(N):
            i = ids[r]
            if i < 0:
                continue
            out = &dW[i, 0]
            row = &dx[r, 0]
            for j in range(E):
                out[j] += row[j]
