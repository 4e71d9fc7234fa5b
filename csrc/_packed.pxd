# Packed-weight products for the per-step recurrent GEMMs (fast path); see _packed_gemm.h.
#
# Each kernel packs W_aa once per call (pack_rows for a @ W_aa^T in forward, pack_cols
# for dz @ W_aa in backward) and then runs `step_gemm` at every time step, which splits
# the packed panels (column blocks of the result) between the core's threads.
from cython cimport floating
from cython.parallel cimport prange

from _blas cimport gemm

cdef extern from "_packed_gemm.h" nogil:
    const size_t SC_NR_F
    const size_t SC_NR_D
    size_t sc_panels(size_t n, size_t nr)
    void sc_pack_rows_f(float* P, const float* src, size_t lds, size_t n, size_t k)
    void sc_pack_rows_d(double* P, const double* src, size_t lds, size_t n, size_t k)
    void sc_pack_cols_f(float* P, const float* src, size_t lds, size_t n, size_t k)
    void sc_pack_cols_d(double* P, const double* src, size_t lds, size_t n, size_t k)
    void sc_packed_gemm_f(float* C, size_t ldc, const float* A, size_t rs, size_t cs,
                          const float* P, size_t m, size_t n, size_t k, size_t j0,
                          size_t j1, int accumulate)
    void sc_packed_gemm_d(double* C, size_t ldc, const double* A, size_t rs, size_t cs,
                          const double* P, size_t m, size_t n, size_t k, size_t j0,
                          size_t j1, int accumulate)
    void sc_rowdot_f(float* c, const float* a, size_t inc_a, const float* W, size_t ldw,
                     size_t n, size_t k, int accumulate)
    void sc_rowdot_d(double* c, const double* a, size_t inc_a, const double* W, size_t ldw,
                     size_t n, size_t k, int accumulate)
    void sc_rowaxpy_f(float* c, const float* a, size_t inc_a, const float* W, size_t ldw,
                      size_t n, size_t k, int accumulate)
    void sc_rowaxpy_d(double* c, const double* a, size_t inc_a, const double* W, size_t ldw,
                      size_t n, size_t k, int accumulate)


cdef inline Py_ssize_t useful_threads(int threads, size_t m, size_t n, size_t k,
                                      size_t parts) noexcept nogil:
    """How many of `threads` are worth waking for an (m, n, k) product in `parts` pieces.

    A thread pays for its hand-off from about a million multiply-adds; a product of
    one row is bound by reading the weights instead, and splitting them pays from
    about 128 Ki weights (each core then streams its share from its own cache).
    """
    cdef size_t useful = (m * n * k) >> 20
    if m == 1:
        useful = (n * k) >> 17
    cdef size_t nq = <size_t>threads
    if nq > parts:
        nq = parts
    if nq > useful:
        nq = useful
    return <Py_ssize_t>(nq if nq > 1 else 1)


cdef inline size_t num_panels(const floating* P, size_t n) noexcept nogil:
    """Panels of the packed layout for n result columns (P only selects the type)."""
    if floating is float:
        return sc_panels(n, SC_NR_F)
    else:
        return sc_panels(n, SC_NR_D)


cdef inline size_t packed_len(const floating* P, size_t n, size_t k) noexcept nogil:
    """Elements of a packed (k, n) operand."""
    if floating is float:
        return sc_panels(n, SC_NR_F) * k * SC_NR_F
    else:
        return sc_panels(n, SC_NR_D) * k * SC_NR_D


cdef inline void pack_rows(floating* P, const floating* src, size_t lds, size_t n,
                           size_t k) noexcept nogil:
    """P (k, n) = src^T, src (n, k) with row stride lds."""
    if floating is float:
        sc_pack_rows_f(P, src, lds, n, k)
    else:
        sc_pack_rows_d(P, src, lds, n, k)


cdef inline void pack_cols(floating* P, const floating* src, size_t lds, size_t n,
                           size_t k) noexcept nogil:
    """P (k, n) = src, src (k, n) with row stride lds."""
    if floating is float:
        sc_pack_cols_f(P, src, lds, n, k)
    else:
        sc_pack_cols_d(P, src, lds, n, k)


cdef inline void step_gemm(floating* C, size_t ldc, const floating* A, size_t lda,
                           const floating* P, size_t m, size_t n, size_t k,
                           bint accumulate, int threads) noexcept nogil:
    """C (m, n) (+)= A (m, k) @ P (k, n), A row-major; panels split over `threads`."""
    cdef size_t np = num_panels(P, n)
    cdef Py_ssize_t q, nq = useful_threads(threads, m, n, k, np)
    if nq <= 1:
        if floating is float:
            sc_packed_gemm_f(C, ldc, A, lda, 1, P, m, n, k, 0, np, accumulate)
        else:
            sc_packed_gemm_d(C, ldc, A, lda, 1, P, m, n, k, 0, np, accumulate)
        return
    for q in prange(nq, num_threads=nq, schedule="static"):
        if floating is float:
            sc_packed_gemm_f(C, ldc, A, lda, 1, P, m, n, k, q * np // nq,
                             (q + 1) * np // nq, accumulate)
        else:
            sc_packed_gemm_d(C, ldc, A, lda, 1, P, m, n, k, q * np // nq,
                             (q + 1) * np // nq, accumulate)


cdef inline void row_product(floating* c, const floating* a, const floating* W, size_t ldw,
                             bint W_T, size_t j0, size_t j1, size_t k,
                             bint accumulate) noexcept nogil:
    """c[j0:j1] (+)= (a (k) @ op(W))[j0:j1], op(W) = W^T for W (n, k) when W_T."""
    if floating is float:
        if W_T:
            sc_rowdot_f(c + j0, a, 1, W + j0 * ldw, ldw, j1 - j0, k, accumulate)
        else:
            sc_rowaxpy_f(c + j0, a, 1, W + j0, ldw, j1 - j0, k, accumulate)
    else:
        if W_T:
            sc_rowdot_d(c + j0, a, 1, W + j0 * ldw, ldw, j1 - j0, k, accumulate)
        else:
            sc_rowaxpy_d(c + j0, a, 1, W + j0, ldw, j1 - j0, k, accumulate)


cdef inline void rec_gemm(floating* C, size_t ldc, const floating* A, size_t lda,
                          const floating* P, const floating* W, size_t ldw, bint W_T,
                          size_t m, size_t n, size_t k, bint accumulate,
                          int threads) noexcept nogil:
    """C (m, n) (+)= A (m, k) @ op(W): op(W) = W^T for W (n, k) when W_T, else W (k, n).

    P is op(W) packed (pack_rows when W_T, pack_cols otherwise), or NULL: then BLAS
    reads W directly, which is cheaper when there are too few steps to repay packing.
    """
    cdef floating one = 1, beta = 1 if accumulate else 0
    cdef Py_ssize_t q, nq
    if P != NULL:
        step_gemm(C, ldc, A, lda, P, m, n, k, accumulate, threads)
    elif m == 1:
        # one row: split the result's columns (rows of W^T) so each core streams
        # its share of the weights, which then stays in its cache from call to call
        nq = useful_threads(threads, m, n, k, (n + 15) // 16)
        if nq <= 1:
            row_product(C, A, W, ldw, W_T, 0, n, k, accumulate)
            return
        for q in prange(nq, num_threads=nq, schedule="static"):
            row_product(C, A, W, ldw, W_T, q * n // nq, (q + 1) * n // nq, k, accumulate)
    else:
        gemm(False, W_T, <int>m, <int>n, <int>k, one, A, <int>lda, W, <int>ldw,
             beta, C, <int>ldc)
