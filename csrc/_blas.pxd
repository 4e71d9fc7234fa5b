# Row-major BLAS shim over scipy.linalg.cython_blas (fast path): the only place the
# compiled core talks to BLAS. Everything else calls these with C-order (row-major)
# matrices; the shim swaps operands so the column-major Fortran routines see the
# transposed problem, C^T = B^T A^T, which is the same memory.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv


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
    cdef char tr
    cdef int inc_a, one = 1
    if m == 1:
        # One row (a batch of one): a matrix-vector product, which BLAS runs far
        # better through gemv than through gemm's blocked kernels.
        # C[0, :] (n) = alpha * a (k) @ op(B) + beta * C[0, :]; a's stride is lda when
        # trans_a (a column of A), else 1. Column-major, row-major B (n, k) is B^T.
        inc_a = lda if trans_a else 1
        tr = b'T' if trans_b else b'N'
        if trans_b:
            if floating is float:
                sgemv(&tr, &k, &n, &alpha, <float*>B, &ldb, <float*>A, &inc_a, &beta, C, &one)
            else:
                dgemv(&tr, &k, &n, &alpha, <double*>B, &ldb, <double*>A, &inc_a, &beta, C, &one)
        else:
            if floating is float:
                sgemv(&tr, &n, &k, &alpha, <float*>B, &ldb, <float*>A, &inc_a, &beta, C, &one)
            else:
                dgemv(&tr, &n, &k, &alpha, <double*>B, &ldb, <double*>A, &inc_a, &beta, C, &one)
        return
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)
