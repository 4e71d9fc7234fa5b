# Row-major BLAS shim over scipy.linalg.cython_blas (fast path): the only place the
# compiled core talks to BLAS. Everything else calls these with C-order (row-major)
# matrices; the shim swaps operands so the column-major Fortran routines see the
# transposed problem, C^T = B^T A^T, which is the same memory.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


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
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)
