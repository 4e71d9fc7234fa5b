# Every matrix product of the compiled core (fast path); the kernels are in _packed_gemm.h.
#
# C (m, n) (+)= A (m, k) @ op(B), with op(B) = B^T for B (n, k) when B_T, else B (k, n).
# op(B) is packed into column panels (pack), each thread packing and computing its own
# panels, so threads split the result's columns and never share a sum. The recurrent
# weights are packed once per kernel call and reused at every step (packed_product);
# the other operands are packed as they are multiplied (product). A single row
# (a batch of one, one step) goes straight through row_product, which needs no packing.
#
# Why not BLAS: a BLAS gemm repacks both operands on every call, which for the
# per-step shape (B rows, G*H columns, K = H) costs as much as the arithmetic, and an
# OpenBLAS thread pool keeps spinning for ~0.1 s after each call, taking a core from
# the threads of the time loop (measured here; see docs/performance.md).
from cython cimport floating
from cython.parallel cimport prange

# The steps' regions meet at the core's own barrier, which sleeps after a short spin
# and notices a lost core (csrc/_load.h); sc_threads gives a call its threads.
cdef extern from "_load.h" nogil:
    ctypedef struct sc_barrier_t:
        int n
        int solo            # the region went solo: thread 0 ran its rest alone
    void barrier_init "sc_barrier_init" (sc_barrier_t* b, int n)
    int barrier "sc_barrier_wait" (sc_barrier_t* b)
    bint meet "sc_meet" (sc_barrier_t* b, Py_ssize_t* q, Py_ssize_t* nt)
    void barrier_end "sc_barrier_end" (sc_barrier_t* b, Py_ssize_t q)
    void barrier_done "sc_barrier_done" (sc_barrier_t* b)
    int sc_threads(int requested)
    void sc_load_attach(void* shared)
    void region_begin "sc_region_begin" (Py_ssize_t nq)
    void region_mark "sc_region_mark" (Py_ssize_t q)
    void region_end "sc_region_end" ()

cdef extern from "_packed_gemm.h" nogil:
    const size_t SC_MR
    const size_t SC_NR_F
    const size_t SC_NR_D
    const size_t SC_ROWS_F
    const size_t SC_ROWS_D
    const size_t SC_THREAD_MIN_MACS
    const size_t SC_THREAD_MIN_ROW_WEIGHTS
    const size_t SC_SPLIT_COLUMNS
    const size_t SC_REGION_MIN_UNITS
    size_t sc_panels(size_t n, size_t nr)
    size_t sc_a_block_len(size_t k, size_t elsize)
    void sc_pack_rows_f(float* P, const float* src, size_t lds, size_t n, size_t k,
                        size_t p0, size_t p1)
    void sc_pack_rows_d(double* P, const double* src, size_t lds, size_t n, size_t k,
                        size_t p0, size_t p1)
    void sc_pack_cols_f(float* P, const float* src, size_t lds, size_t n, size_t k,
                        size_t p0, size_t p1)
    void sc_pack_cols_d(double* P, const double* src, size_t lds, size_t n, size_t k,
                        size_t p0, size_t p1)
    void sc_packed_gemm_f(float* C, size_t ldc, const float* A, size_t rs, size_t cs,
                          const float* P, size_t m, size_t n, size_t k, size_t j0,
                          size_t j1, int accumulate, float* abuf)
    void sc_packed_gemm_d(double* C, size_t ldc, const double* A, size_t rs, size_t cs,
                          const double* P, size_t m, size_t n, size_t k, size_t j0,
                          size_t j1, int accumulate, double* abuf)
    void sc_rowdot_f(float* c, const float* a, size_t inc_a, const float* W, size_t ldw,
                     size_t n, size_t k, int accumulate)
    void sc_rowdot_d(double* c, const double* a, size_t inc_a, const double* W, size_t ldw,
                     size_t n, size_t k, int accumulate)
    void sc_rowdot2_f(float* c, const float* a1, size_t k1, const float* a2, size_t k2,
                      const float* W, size_t ldw, size_t n, int accumulate)
    void sc_rowdot2_d(double* c, const double* a1, size_t k1, const double* a2, size_t k2,
                      const double* W, size_t ldw, size_t n, int accumulate)
    void sc_rowdot2_q8_f(float* c, const float* a1, size_t k1, const float* a2, size_t k2,
                         const signed char* Q, const float* scale, size_t ldq, size_t n,
                         int accumulate)
    void sc_rowdot2_q8_d(double* c, const double* a1, size_t k1, const double* a2, size_t k2,
                         const signed char* Q, const double* scale, size_t ldq, size_t n,
                         int accumulate)
    void sc_rowaxpy_f(float* c, const float* a, size_t inc_a, const float* W, size_t ldw,
                      size_t n, size_t k, int accumulate)
    void sc_rowaxpy_d(double* c, const double* a, size_t inc_a, const double* W, size_t ldw,
                      size_t n, size_t k, int accumulate)


cdef inline size_t num_panels(const floating* P, size_t n) noexcept nogil:
    """Panels of the packed layout for n result columns (P only selects the type)."""
    if floating is float:
        return sc_panels(n, SC_NR_F)
    else:
        return sc_panels(n, SC_NR_D)


cdef inline size_t packed_len(const floating* P, size_t n, size_t k) noexcept nogil:
    """Elements of a packed (k, n) operand (P only selects the type)."""
    if floating is float:
        return sc_panels(n, SC_NR_F) * k * SC_NR_F
    else:
        return sc_panels(n, SC_NR_D) * k * SC_NR_D


cdef inline Py_ssize_t useful_threads(int threads, size_t m, size_t n, size_t k,
                                      size_t parts) noexcept nogil:
    """How many of `threads` are worth waking for an (m, n, k) product in `parts` pieces.

    A thread pays for its hand-off from about a million multiply-adds
    (SC_THREAD_MIN_MACS, _paths.h); a product of one row is bound by reading the
    weights instead, and splitting them pays from about 64 Ki weights
    (SC_THREAD_MIN_ROW_WEIGHTS) (each core then streams its share from its own cache; one
    step of a 256-unit GRU, 240 Ki weights: 28 -> 20 us on two threads).
    """
    cdef size_t useful = (m * n * k) // SC_THREAD_MIN_MACS
    if m == 1:
        useful = (n * k) // SC_THREAD_MIN_ROW_WEIGHTS
    cdef size_t nq = <size_t>threads
    if nq > parts:
        nq = parts
    if nq > useful:
        nq = useful
    return <Py_ssize_t>(nq if nq > 1 else 1)


cdef inline void pack_panels(floating* P, const floating* B, size_t ldb, bint B_T,
                             size_t n, size_t k, size_t p0, size_t p1) noexcept nogil:
    """Panels [p0, p1) of P = op(B) (k, n)."""
    if floating is float:
        if B_T:
            sc_pack_rows_f(P, B, ldb, n, k, p0, p1)
        else:
            sc_pack_cols_f(P, B, ldb, n, k, p0, p1)
    else:
        if B_T:
            sc_pack_rows_d(P, B, ldb, n, k, p0, p1)
        else:
            sc_pack_cols_d(P, B, ldb, n, k, p0, p1)


cdef inline size_t a_work_len(const floating* P, size_t k, int threads) noexcept nogil:
    """Elements of the workspace `abuf` in which the products of `threads` threads pack
    rows of A of length k (one slot per thread; 0: rows that short are not packed).
    P only selects the type."""
    return <size_t>threads * sc_a_block_len(k, sizeof(floating))


cdef inline floating* a_slot(floating* abuf, size_t k, Py_ssize_t q) noexcept nogil:
    """Thread q's slot of abuf (NULL stays NULL: do not pack)."""
    if abuf == NULL:
        return NULL
    return abuf + <size_t>q * sc_a_block_len(k, sizeof(floating))


cdef inline void gemm_panels(floating* C, size_t ldc, const floating* A, size_t rs,
                             size_t cs, const floating* P, size_t m, size_t n, size_t k,
                             size_t p0, size_t p1, bint accumulate,
                             floating* abuf) noexcept nogil:
    """Panels [p0, p1) of C (m, n) (+)= A (m, k) @ P (k, n); abuf: this thread's slot
    for packing rows of A (a_work_len), or NULL."""
    if floating is float:
        sc_packed_gemm_f(C, ldc, A, rs, cs, P, m, n, k, p0, p1, accumulate, abuf)
    else:
        sc_packed_gemm_d(C, ldc, A, rs, cs, P, m, n, k, p0, p1, accumulate, abuf)


cdef inline void pack(floating* P, const floating* B, size_t ldb, bint B_T, size_t n,
                      size_t k, int threads) noexcept nogil:
    """P = op(B) (k, n) packed, panels split over `threads`."""
    cdef size_t np = num_panels(P, n)
    cdef Py_ssize_t q, nq = useful_threads(threads, 64, n, k, np)
    if nq <= 1:
        pack_panels(P, B, ldb, B_T, n, k, 0, np)
        return
    region_begin(nq)
    for q in prange(nq, num_threads=nq, schedule="static"):
        pack_panels(P, B, ldb, B_T, n, k, q * np // nq, (q + 1) * np // nq)
        region_mark(q)
    region_end()


cdef inline void packed_product(floating* C, size_t ldc, const floating* A, size_t rs,
                                size_t cs, const floating* P, size_t m, size_t n, size_t k,
                                bint accumulate, int threads, floating* abuf) noexcept nogil:
    """C (m, n) (+)= A (m, k) @ P (k, n), P packed; panels split over `threads`.
    A's element (i, kk) is A[i * rs + kk * cs]. abuf: a_work_len(k, threads) elements
    for packing long rows of A, or NULL."""
    cdef size_t np = num_panels(P, n)
    cdef Py_ssize_t q, nq = useful_threads(threads, m, n, k, np)
    if nq <= 1:
        gemm_panels(C, ldc, A, rs, cs, P, m, n, k, 0, np, accumulate, abuf)
        return
    region_begin(nq)
    for q in prange(nq, num_threads=nq, schedule="static"):
        gemm_panels(C, ldc, A, rs, cs, P, m, n, k, q * np // nq, (q + 1) * np // nq,
                    accumulate, a_slot(abuf, k, q))
        region_mark(q)
    region_end()


cdef inline void row_panels(floating* c, const floating* a, const floating* B, size_t ldb,
                            bint B_T, size_t j0, size_t j1, size_t k,
                            bint accumulate) noexcept nogil:
    """c[j0:j1] (+)= (a (k) @ op(B))[j0:j1], a contiguous."""
    if floating is float:
        if B_T:
            sc_rowdot_f(c + j0, a, 1, B + j0 * ldb, ldb, j1 - j0, k, accumulate)
        else:
            sc_rowaxpy_f(c + j0, a, 1, B + j0, ldb, j1 - j0, k, accumulate)
    else:
        if B_T:
            sc_rowdot_d(c + j0, a, 1, B + j0 * ldb, ldb, j1 - j0, k, accumulate)
        else:
            sc_rowaxpy_d(c + j0, a, 1, B + j0, ldb, j1 - j0, k, accumulate)


cdef inline void row_product(floating* c, const floating* a, const floating* B,
                             size_t ldb, bint B_T, size_t n, size_t k, bint accumulate,
                             int threads) noexcept nogil:
    """c (n) (+)= a (k) @ op(B) for one contiguous row a, without packing. The columns
    are split over `threads`, so each core streams its share of B, which then stays
    in its cache from call to call (token-by-token generation)."""
    cdef Py_ssize_t q, nq = useful_threads(threads, 1, n, k, (n + 15) // 16)
    if nq <= 1:
        row_panels(c, a, B, ldb, B_T, 0, n, k, accumulate)
        return
    region_begin(nq)
    for q in prange(nq, num_threads=nq, schedule="static"):
        row_panels(c, a, B, ldb, B_T, q * n // nq, (q + 1) * n // nq, k, accumulate)
        region_mark(q)
    region_end()


cdef inline void row_dot(floating* c, const floating* a1, size_t k1, const floating* a2,
                         size_t k2, const floating* W, size_t ldw, size_t n,
                         bint accumulate) noexcept nogil:
    """c (n) (+)= W (n, k1 + k2) @ [a1 (k1), a2 (k2)], W's rows ldw apart, on the calling
    thread: one step's rows of W against [a<t-1>, x<t>] without copying them together."""
    if floating is float:
        sc_rowdot2_f(c, a1, k1, a2, k2, W, ldw, n, accumulate)
    else:
        sc_rowdot2_d(c, a1, k1, a2, k2, W, ldw, n, accumulate)


cdef inline void row_dot_w(floating* c, const floating* a1, size_t k1, const floating* a2,
                           size_t k2, const floating* W, const signed char* Q,
                           const floating* scale, size_t row, size_t col, size_t ldw,
                           size_t n, bint accumulate) noexcept nogil:
    """row_dot over rows [row, row + n) of the weights from column col: of W, or, when
    Q is not NULL, of the int8 Q (same shape) times its rows' scales (seqcore.quantize),
    with a1 and a2 quantized each on its own, int8 x int8 (_q8.h)."""
    if Q != NULL:
        if floating is float:
            sc_rowdot2_q8_f(c, a1, k1, a2, k2, Q + row * ldw + col, scale + row, ldw, n,
                            accumulate)
        else:
            sc_rowdot2_q8_d(c, a1, k1, a2, k2, Q + row * ldw + col, scale + row, ldw, n,
                            accumulate)
    else:
        row_dot(c, a1, k1, a2, k2, W + row * ldw + col, ldw, n, accumulate)


cdef inline Py_ssize_t step_threads(int threads, size_t n, size_t k,
                                    size_t H) noexcept nogil:
    """Threads for one step of one sequence: n weight rows of length k, over H units
    that split in blocks of rows (see unit_split)."""
    return useful_threads(threads, 1, n, k, (H + SC_ROWS_F - 1) // SC_ROWS_F)


cdef inline Py_ssize_t unit_split(const floating* P, Py_ssize_t H, Py_ssize_t q,
                                  Py_ssize_t nq) noexcept nogil:
    """First of thread q's units when H units are split over nq threads (q = nq
    gives H): at multiples of row_dot's block of rows, so that no block straddles
    two threads. P only selects the type."""
    cdef Py_ssize_t blk = SC_ROWS_F if floating is float else SC_ROWS_D
    cdef Py_ssize_t nb = (H + blk - 1) // blk
    cdef Py_ssize_t u = (q * nb // nq) * blk
    return u if u < H else H


cdef inline void dense_row(floating* y, const floating* x, Py_ssize_t K, const floating* W,
                           const signed char* Q, const floating* scale, const floating* b,
                           Py_ssize_t V, int threads) noexcept nogil:
    """y (V) = W (V, K) @ x (K) + b for one row x (a Dense layer's token), straight
    from W's rows, or from the int8 Q and its rows' scales when Q is not NULL
    (row_dot_w, x quantized by each thread), the outputs split over the threads."""
    cdef Py_ssize_t q, nq = step_threads(threads, V, K, V), j, j0, j1
    if nq <= 1:
        row_dot_w(y, x, K, x, 0, W, Q, scale, 0, 0, K, V, False)
        for j in range(V):
            y[j] = y[j] + b[j]
        return
    region_begin(nq)
    for q in prange(nq, num_threads=nq, schedule="static"):
        j0 = unit_split(y, V, q, nq)
        j1 = unit_split(y, V, q + 1, nq)
        row_dot_w(y + j0, x, K, x, 0, W, Q, scale, j0, 0, K, j1 - j0, False)
        for j in range(j0, j1):
            y[j] = y[j] + b[j]
        region_mark(q)
    region_end()


cdef inline Py_ssize_t step_region_threads(int threads, Py_ssize_t T, Py_ssize_t B,
                                           Py_ssize_t H, Py_ssize_t G) noexcept nogil:
    """Threads of a forward or backward loop's one parallel region (the steps' products
    and gate passes, a barrier after each phase, or each thread its own sequences: the
    driver's by_sequences), for G gate blocks of H units: all of
    them from 2 Ki units per step, else 1 (the loop then runs step by step, each
    product deciding on its own). A barrier costs less than starting a region, so even
    the small configuration's products (32 x 512 x 128, too small to wake a thread for
    alone) pay: small GRU forward 3.0-3.3 -> 2.0-2.3 ms, RNN 1.04 -> 0.84 ms.

    A single sequence (B = 1) takes the region when its step's product alone would
    wake a second thread (useful_threads of one row: from 128 Ki recurrent weights),
    instead of starting a region per product: stream (T = 256, H = 256) forward LSTM
    -7%, GRU -8 to -12%, forward+backward LSTM -2%, GRU -8 to -12%. The gate pass of
    the one row is split by units where they fall in whole panels (the driver's
    by_units), else stays on thread 0. A single step of a single sequence (T = B = 1,
    generation) never does: its kernels read the rows of W, not packed panels."""
    if B == 1:
        if T == 1:
            return 1
        return useful_threads(threads, 1, <size_t>(G * H), <size_t>H, <size_t>threads)
    return threads if <size_t>(B * H) >= SC_REGION_MIN_UNITS else 1


# Rows of op(B) = B that product packs at a time: KC x n values, over which a block of
# rows of A (in L2) passes panel by panel.
cdef enum:
    KC = 512


cdef inline bint split_rows(size_t m, size_t n, Py_ssize_t nq) noexcept nogil:
    """Whether product's nq threads split the rows of C (m, n) rather than its columns
    (op(B) not transposed): when columns would give each thread fewer than 512, as in
    the weight gradients and dx of D = 256 inputs. A thread's products over 128 columns
    ran at 72-89 GFLOP/s here, over 256-512 at 97-106; each thread then packs all of
    B's chunk, a copy of under 1% of its work from some 2 x 12 rows on."""
    return n < SC_SPLIT_COLUMNS * <size_t>nq and m >= 2 * SC_MR * <size_t>nq


cdef inline size_t product_work_len(const floating* P, size_t n, size_t k, bint B_T,
                                    int threads) noexcept nogil:
    """Elements of `work` that product needs for op(B) (k, n) on `threads` threads: all
    of op(B) packed when B is transposed, else KC of its rows, once per thread when
    they split the rows (split_rows). P only selects the type."""
    if B_T:
        return packed_len(P, n, k)
    cdef size_t chunk = packed_len(P, n, k if k < KC else KC)
    return chunk * <size_t>threads if n < SC_SPLIT_COLUMNS * <size_t>threads else chunk


cdef inline size_t row_split(size_t m, Py_ssize_t q, Py_ssize_t nq) noexcept nogil:
    """First of thread q's rows when m rows are split over nq threads (q = nq gives
    m), for products and the driver's sequences alike. The split falls at multiples of
    g rows so that each row is summed by the same micro-kernel code as on one thread,
    and the numbers do not depend on the threads: blocks of MR, 8 and 4 rows sum in one
    chain, blocks of 2 and 1 in two (_packed_gemm.h), so g = 4 when 4 divides SC_MR
    (every block but the last thread's last is then of the one-chain kind, as on one
    thread), else SC_MR."""
    cdef size_t g = 4 if SC_MR % 4 == 0 else SC_MR
    cdef size_t r = (<size_t>q * ((m + g - 1) // g) // <size_t>nq) * g
    return r if r < m else m


cdef inline void chunked_panels(floating* C, size_t ldc, const floating* A, size_t rs,
                                size_t cs, const floating* B, size_t ldb, size_t m,
                                size_t n, size_t k, size_t p0, size_t p1, bint accumulate,
                                floating* work, floating* abuf) noexcept nogil:
    """Panels [p0, p1) of C (m, n) (+)= A (m, k) @ B (k, n), B packed KC rows at a time
    into work (product_work_len(n, k, False) elements). The panels' slots in work are
    fixed, min(k, KC) rows each, so threads on different panels never overlap, even
    when one packs a shorter last chunk while another still packs a full one. abuf:
    this thread's slot for packing rows of A of length min(k, KC), or NULL."""
    cdef size_t nr = SC_NR_F if floating is float else SC_NR_D
    cdef size_t k0 = 0, kc
    cdef floating* mine = work + p0 * (k if k < KC else KC) * nr
    while k0 < k:
        kc = k - k0 if k - k0 < KC else KC
        # panels [p0, p1) of the chunk as panels [0, p1 - p0) of its columns p0 * nr:
        pack_panels(mine, B + k0 * ldb + p0 * nr, ldb, False, n - p0 * nr, kc, 0, p1 - p0)
        gemm_panels(C + p0 * nr, ldc, A + k0 * cs, rs, cs, mine, m, n - p0 * nr, kc, 0,
                    p1 - p0, accumulate or k0 > 0, abuf)
        k0 += kc


cdef inline void product(floating* C, size_t ldc, const floating* A, size_t rs, size_t cs,
                         const floating* B, size_t ldb, bint B_T, size_t m, size_t n,
                         size_t k, bint accumulate, int threads, floating* work,
                         floating* abuf) noexcept nogil:
    """C (m, n) (+)= A (m, k) @ op(B); work holds product_work_len(n, k, B_T) elements,
    abuf a_work_len(k, threads) elements (op(B) = B: a_work_len(min(k, KC))) or NULL
    (see packed_product).
    A's element (i, kk) is A[i * rs + kk * cs]. Each thread packs and multiplies its
    own panels of op(B), so no barrier separates packing from multiplying. op(B) = B^T
    (weights) is packed whole; op(B) = B (all T*B states or inputs, for the weights'
    gradients) KC rows at a time: a workspace of KC rows instead of one as large as B."""
    cdef size_t np = num_panels(work, n), slot, r0, r1
    cdef Py_ssize_t q, nq
    if m == 0 or n == 0:
        return
    if m == 1 and cs == 1:
        row_product(C, A, B, ldb, B_T, n, k, accumulate, threads)
        return
    nq = useful_threads(threads, m, n, k, np)
    cdef size_t kc = k if k < KC else KC
    if not B_T:
        if nq <= 1:
            chunked_panels(C, ldc, A, rs, cs, B, ldb, m, n, k, 0, np, accumulate, work, abuf)
            return
        if split_rows(m, n, nq):
            slot = packed_len(work, n, kc)
            region_begin(nq)
            for q in prange(nq, num_threads=nq, schedule="static"):
                r0 = row_split(m, q, nq)
                r1 = row_split(m, q + 1, nq)
                chunked_panels(C + r0 * ldc, ldc, A + r0 * rs, rs, cs, B, ldb, r1 - r0, n,
                               k, 0, np, accumulate, work + q * slot, a_slot(abuf, kc, q))
                region_mark(q)
            region_end()
            return
        region_begin(nq)
        for q in prange(nq, num_threads=nq, schedule="static"):
            chunked_panels(C, ldc, A, rs, cs, B, ldb, m, n, k, q * np // nq,
                           (q + 1) * np // nq, accumulate, work, a_slot(abuf, kc, q))
            region_mark(q)
        region_end()
        return
    if nq <= 1:
        pack_panels(work, B, ldb, B_T, n, k, 0, np)
        gemm_panels(C, ldc, A, rs, cs, work, m, n, k, 0, np, accumulate, abuf)
        return
    region_begin(nq)
    for q in prange(nq, num_threads=nq, schedule="static"):
        pack_panels(work, B, ldb, B_T, n, k, q * np // nq, (q + 1) * np // nq)
        gemm_panels(C, ldc, A, rs, cs, work, m, n, k, q * np // nq, (q + 1) * np // nq,
                    accumulate, a_slot(abuf, k, q))
        region_mark(q)
    region_end()


cdef inline void step_product(floating* C, size_t ldc, const floating* A, size_t lda,
                              const floating* P, const floating* B, size_t ldb, bint B_T,
                              size_t m, size_t n, size_t k, bint accumulate,
                              int threads, floating* abuf) noexcept nogil:
    """The per-step recurrent product C (m, n) (+)= A (m, k) @ op(B): from the weights
    packed once per call (P), or, for a single step of a single row (P is NULL),
    straight from B. abuf: see packed_product."""
    if P != NULL:
        packed_product(C, ldc, A, lda, 1, P, m, n, k, accumulate, threads, abuf)
    else:
        row_product(C, A, B, ldb, B_T, n, k, accumulate, threads)
