# Row-major BLAS shim over scipy.linalg.cython_blas (fast path): the only place the
# compiled core talks to BLAS (a batch of one row it computes directly). Everything
# else calls these with C-order (row-major) matrices; the shim swaps operands so the column-major Fortran routines see the
# transposed problem, C^T = B^T A^T, which is the same memory.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm

cdef extern from "_packed_gemm.h" nogil:
    void sc_rowdot_f(float* c, const float* a, size_t inc_a, const float* W, size_t ldw,
                     size_t n, size_t k, int accumulate)
    void sc_rowdot_d(double* c, const double* a, size_t inc_a, const double* W, size_t ldw,
                     size_t n, size_t k, int accumulate)
    void sc_rowaxpy_f(float* c, const float* a, size_t inc_a, const float* W, size_t ldw,
                      size_t n, size_t k, int accumulate)
    void sc_rowaxpy_d(double* c, const double* a, size_t inc_a, const double* W, size_t ldw,
                      size_t n, size_t k, int accumulate)


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* A, int lda,
                      const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    op(A) is (m, k): A is (m, k) with row stride lda, or (k, m) when trans_a.
    op(B) is (k, n): B is (k, n) with row stride ldb, or (n, k) when trans_b.
    """
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # BLAS would only scale C; keep the contract without calling it.
        if beta == 0:
            for i in range(m):
                for j in range(n):
                    C[i * ldc + j] = 0
        elif beta != 1:
            for i in range(m):
                for j in range(n):
                    C[i * ldc + j] *= beta
        return
    cdef size_t inc_a
    if m == 1:
        # A batch of one: a vector-matrix product, run directly (see _packed_gemm.h)
        # because BLAS' dispatch costs more than the arithmetic here.
        # C[0, :] (n) = alpha * a (k) @ op(B) + beta * C[0, :], a's stride is lda
        # when trans_a (a column of A), else 1.
        inc_a = lda if trans_a else 1
        if alpha == 1 and (beta == 0 or beta == 1):
            if floating is float:
                if trans_b:
                    sc_rowdot_f(C, A, inc_a, B, ldb, n, k, beta == 1)
                else:
                    sc_rowaxpy_f(C, A, inc_a, B, ldb, n, k, beta == 1)
            else:
                if trans_b:
                    sc_rowdot_d(C, A, inc_a, B, ldb, n, k, beta == 1)
                else:
                    sc_rowaxpy_d(C, A, inc_a, B, ldb, n, k, beta == 1)
            return
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)
