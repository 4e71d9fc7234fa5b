/* Packed-weight matrix product for the recurrent step (fast path).
 *
 * Every time step multiplies the same recurrent weights W_aa by a new small batch of
 * states. A BLAS gemm repacks its operands into cache-friendly panels on every call;
 * for the step's shape (B = tens of rows, G*H columns, K = H) that repacking of the
 * weights costs about as much as the arithmetic. Here the weights are packed once
 * per forward/backward call and every step runs only the register-blocked kernel.
 *
 *   C (m, n) (+)= A (m, k) @ P (k, n)
 *
 * A: element (i, kk) at A[i * rs + kk * cs]: row-major (rs = row stride, cs = 1) or
 * transposed (rs = 1, cs = row stride of A^T), so dz^T needs no copy. P: the packed weights, made by one of
 *   sc_pack_rows(src (n, k), lds)  P = src^T   (e.g. forward:  z += a @ W_aa^T)
 *   sc_pack_cols(src (k, n), lds)  P = src     (e.g. backward: da += dz @ W_aa)
 * stored as ceil(n / NR) panels of (k, NR) values, zero-padded past n.
 *
 * The micro-kernel keeps an MR x NR block of C in vector registers (GCC vector
 * extensions of the path's width: see _paths.h for MR and NR per instruction set)
 * and, for each of the k steps, loads one row of a panel and broadcasts one value
 * of A per row.
 * sc_packed_gemm(..., j0, j1) computes panels [j0, j1) only, so threads can
 * split the columns between them.
 *
 * Long rows of A are packed too (sc_pack_a, into a workspace the caller gives): the
 * MR rows a micro-kernel reads are then one contiguous run instead of MR rows k
 * values apart. At k = 1024 floats those rows lie 4 KiB apart, all in the same set
 * of the L1 cache, which holds only 8 of them: one thread's share of the large
 * LSTM step (64 x 2048 x 1024) ran at 100 GFLOP/s from the rows, 110 packed.
 */
#ifndef SEQCORE_PACKED_GEMM_H
#define SEQCORE_PACKED_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_paths.h"   /* SC_MR, SC_NR_F/D, SC_ROWS_F/D, SC_VEC_BYTES of this path */

typedef float sc_vf __attribute__((vector_size(SC_VEC_BYTES)));
typedef float sc_vf_u __attribute__((vector_size(SC_VEC_BYTES), aligned(4)));
typedef double sc_vd __attribute__((vector_size(SC_VEC_BYTES)));
typedef double sc_vd_u __attribute__((vector_size(SC_VEC_BYTES), aligned(8)));

static inline size_t sc_panels(size_t n, size_t nr) { return (n + nr - 1) / nr; }

/* ------------------------------------------------------------------ packing */

#define SC_DEFINE_PACK(T, NR, SUFFIX)                                               \
/* Panels [p0, p1) of P = src^T: src (n, k) row-major with row stride lds. A whole     \
 * panel is written row after row, each row's NR values read from NR rows of src     \
 * (NR lines, which serve the next values of k too). Row of src after row of src,   \
 * each wrote a column of the whole panel, whose lines for k = 512 (64 KiB of floats  \
 * on avx512) no longer stay in L1. One thread, before -> after: the medium LSTM's    \
 * W_aa^T (2048 x 512) 2.48 -> 0.98 ms on avx512, 1.20 -> 0.54 ms on avx2, 0.79 ->   \
 * 0.60 ms on generic; the stream LSTM's (1024 x 256) 0.28 -> 0.24, 0.19 -> 0.14,     \
 * 0.17 -> 0.13 ms. */                                                                 \
static inline void sc_pack_rows_##SUFFIX(T *P, const T *src, size_t lds,             \
                                         size_t n, size_t k, size_t p0, size_t p1)    \
{                                                                                     \
    for (size_t p = p0; p < p1; p++) {                                                \
        T *panel = P + p * k * NR;                                                    \
        if ((p + 1) * NR <= n) {                                                      \
            const T *rows = src + p * NR * lds;                                       \
            for (size_t kk = 0; kk < k; kk++)                                         \
                for (size_t j = 0; j < NR; j++)                                       \
                    panel[kk * NR + j] = rows[j * lds + kk];                          \
            continue;                                                                 \
        }                                                                             \
        for (size_t j = 0; j < NR; j++) {             /* the last, partial panel */   \
            size_t col = p * NR + j;                                                  \
            if (col < n) {                                                            \
                const T *row = src + col * lds;                                       \
                for (size_t kk = 0; kk < k; kk++) panel[kk * NR + j] = row[kk];       \
            } else {                                                                  \
                for (size_t kk = 0; kk < k; kk++) panel[kk * NR + j] = 0;             \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
}                                                                                     \
/* Panels [p0, p1) of P = src: src (k, n) row-major with row stride lds. */                             \
static inline void sc_pack_cols_##SUFFIX(T *P, const T *src, size_t lds,             \
                                         size_t n, size_t k, size_t p0, size_t p1)    \
{                                                                                     \
    for (size_t p = p0; p < p1; p++) {                                                \
        T *panel = P + p * k * NR;                                                    \
        size_t width = n - p * NR < NR ? n - p * NR : NR;                             \
        for (size_t kk = 0; kk < k; kk++) {                                           \
            const T *row = src + kk * lds + p * NR;                                   \
            size_t j = 0;                                                             \
            for (; j < width; j++) panel[kk * NR + j] = row[j];                       \
            for (; j < NR; j++) panel[kk * NR + j] = 0;                               \
        }                                                                             \
    }                                                                                 \
}

SC_DEFINE_PACK(float, SC_NR_F, f)
SC_DEFINE_PACK(double, SC_NR_D, d)

/* Rows of A packed from k = 1024 on, when the calling thread has 512 columns or more
 * to compute: the copy then costs under 2% of the product (measured, one thread:
 * + 8-10% from k = 1024 and 512 columns; break-even at 256 columns or k = 512). */
/* (SC_PACK_A_MIN_K and SC_PACK_A_MIN_N: _paths.h) */

/* Rows of A per block of the product: about 256 KiB of A, which stays in L2 while every
 * panel passes over it (see sc_packed_gemm). */
static inline size_t sc_row_block(size_t k, size_t elsize)
{
    size_t mc = (SC_ROW_BLOCK_BYTES / elsize) / (k ? k : 1);
    return mc < SC_MR ? SC_MR : mc - mc % SC_MR;
}

/* Elements of one thread's workspace for packing rows of A of length k (0: rows
 * that short are never packed): a bound on sc_row_block(k) * k that never decreases
 * with k, so a workspace sized for the longest rows of a kernel serves all of them. */
static inline size_t sc_a_block_len(size_t k, size_t elsize)
{
    size_t block = SC_ROW_BLOCK_BYTES / elsize, mr_rows = SC_MR * k;
    int packs = k >= SC_PACK_A_MIN_K || SC_PACK_AT_MIN_N != SC_NEVER;
    return packs ? (mr_rows > block ? mr_rows : block) : 0;
}

#define SC_DEFINE_PACK_A(T, SUFFIX)                                                 \
/* Ap = the m rows of A (element (i, kk) at A[i * rs + kk * cs]) in blocks of MR     \
 * rows, each block stored by columns, (k, MR), the last one (k, m % MR): element    \
 * (i, kk) of the block is at kk * rows + i, so the micro-kernel reads it with        \
 * rs = 1, cs = rows. A transposed A (rs = 1: dz^T in the weight gradients) is read   \
 * MR values at a time from each of its k rows. */                                    \
static inline void sc_pack_a_##SUFFIX(T *Ap, const T *A, size_t rs, size_t cs,      \
                                      size_t m, size_t k)                           \
{                                                                                   \
    for (size_t i0 = 0; i0 < m; i0 += SC_MR) {                                      \
        size_t rows = m - i0 < SC_MR ? m - i0 : SC_MR;                              \
        T *block = Ap + i0 * k;                                                     \
        if (rs == 1) {                                                              \
            for (size_t kk = 0; kk < k; kk++)                                       \
                for (size_t i = 0; i < rows; i++)                                   \
                    block[kk * rows + i] = A[i0 + i + kk * cs];                     \
            continue;                                                               \
        }                                                                           \
        for (size_t i = 0; i < rows; i++) {                                         \
            const T *row = A + (i0 + i) * rs;                                       \
            for (size_t kk = 0; kk < k; kk++) block[kk * rows + i] = row[kk * cs];  \
        }                                                                           \
    }                                                                               \
}

SC_DEFINE_PACK_A(float, f)
SC_DEFINE_PACK_A(double, d)

/* ------------------------------------------------------------- micro-kernel */

/* C[0:MR, 0:width] (+)= A[0:MR, 0:k] @ panel (k, NR). MR is a compile-time constant
 * in every call (see the switch below), so the accumulators live in registers.
 * The block of C is prefetched (for writing) before the k loop: the input projection
 * writes a C far larger than the caches (T*B rows, 52 MB for the medium LSTM), and
 * each step adds into its rows of it, so every block would otherwise wait for its
 * lines at the end, rows ldc apart where the hardware prefetcher does not follow.
 * One thread's share of the medium input projection (6400 x 1024 x 256) went from
 * 86-92 to 97-99 GFLOP/s; medium LSTM forward -5%, RNN -4%, others -1 to -3%. */
#define SC_DEFINE_KERNEL(T, V, VU, NR, SUFFIX)                                       \
static inline __attribute__((always_inline)) void                                   \
sc_kernel_##SUFFIX(const int MR, T *C, size_t ldc, const T *A, size_t rs, size_t cs,\
                   const T *panel, size_t k, size_t width, int accumulate)          \
{                                                                                   \
    V c0[SC_MR], c1[SC_MR];                                                         \
    for (int i = 0; i < MR; i++) { c0[i] = (V){0}; c1[i] = (V){0}; }                \
    for (int i = 0; i < MR; i++) {   /* C's lines, fetched while the k loop runs */  \
        __builtin_prefetch(C + i * ldc, 1, 3);                                      \
        __builtin_prefetch(C + i * ldc + NR - 1, 1, 3);                             \
    }                                                                               \
    size_t kk = 0;                                                                  \
    if (MR <= 2) {   /* few rows: a second chain of sums over odd k hides FMA latency */ \
        V d0[2] = {{0}}, d1[2] = {{0}};                                             \
        for (; kk + 2 <= k; kk += 2) {                                              \
            V b0 = *(const VU *)(panel + kk * NR);                                   \
            V b1 = *(const VU *)(panel + kk * NR + NR / 2);                          \
            V e0 = *(const VU *)(panel + (kk + 1) * NR);                             \
            V e1 = *(const VU *)(panel + (kk + 1) * NR + NR / 2);                    \
            for (int i = 0; i < MR; i++) {                                          \
                T a = A[i * rs + kk * cs], a_odd = A[i * rs + (kk + 1) * cs];       \
                c0[i] += a * b0;                                                    \
                c1[i] += a * b1;                                                    \
                d0[i] += a_odd * e0;                                                \
                d1[i] += a_odd * e1;                                                \
            }                                                                       \
        }                                                                           \
        for (int i = 0; i < MR; i++) { c0[i] += d0[i]; c1[i] += d1[i]; }            \
    }                                                                               \
    for (; kk < k; kk++) {                                                          \
        V b0 = *(const VU *)(panel + kk * NR);                                       \
        V b1 = *(const VU *)(panel + kk * NR + NR / 2);                              \
        for (int i = 0; i < MR; i++) {                                              \
            T a = A[i * rs + kk * cs];                                              \
            c0[i] += a * b0;                                                        \
            c1[i] += a * b1;                                                        \
        }                                                                           \
    }                                                                               \
    if (width == NR) {                                                              \
        for (int i = 0; i < MR; i++) {                                              \
            VU *out0 = (VU *)(C + i * ldc);                                         \
            VU *out1 = (VU *)(C + i * ldc + NR / 2);                                \
            if (accumulate) { *out0 += c0[i]; *out1 += c1[i]; }                     \
            else { *out0 = c0[i]; *out1 = c1[i]; }                                  \
        }                                                                           \
    } else {                                                                        \
        for (int i = 0; i < MR; i++) {                                              \
            T tmp[NR];                                                              \
            memcpy(tmp, &c0[i], sizeof(V));                                         \
            memcpy(tmp + NR / 2, &c1[i], sizeof(V));                                \
            for (size_t j = 0; j < width; j++)                                      \
                C[i * ldc + j] = accumulate ? C[i * ldc + j] + tmp[j] : tmp[j];     \
        }                                                                           \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* Panels [j0, j1) of C (m, n) (+)= A (m, k) @ P (k, n). Rows go in blocks of about   \
 * 256 KiB of A, which stay in L2 while every panel passes over them: a whole step's  \
 * states up to (64, 1024) floats, so each panel of the weights comes from memory     \
 * once per step (blocks of 128 KiB read the 16 MiB of the large LSTM's packed W_aa   \
 * twice per step: its forward took 13% longer). abuf: sc_a_block_len(k) elements    \
 * for packing the rows of A (see the top of this file), or NULL not to pack them. */ \
static inline void sc_packed_gemm_##SUFFIX(T *C, size_t ldc, const T *A, size_t rs, \
        size_t cs, const T *P, size_t m, size_t n, size_t k, size_t j0, size_t j1,  \
        int accumulate, T *abuf)                                                    \
{                                                                                   \
    size_t mc = sc_row_block(k, sizeof(T));                                         \
    size_t cols = (j1 - j0) * NR;                                                   \
    int pack_a = abuf != NULL && ((cs == 1 && k >= SC_PACK_A_MIN_K                  \
                                   && cols >= SC_PACK_A_MIN_N)                      \
                                  || (rs == 1 && cs != 1 && cols >= SC_PACK_AT_MIN_N)); \
    for (size_t i0 = 0; i0 < m; i0 += mc) {                                         \
        size_t i1 = i0 + mc < m ? i0 + mc : m;                                      \
        if (pack_a)                                                                 \
            sc_pack_a_##SUFFIX(abuf, A + i0 * rs, rs, cs, i1 - i0, k);              \
        for (size_t p = j0; p < j1; p++) {                                          \
            const T *panel = P + p * k * NR;                                        \
            size_t width = n - p * NR < NR ? n - p * NR : NR;                       \
            T *Cp = C + p * NR;                                                     \
            size_t i = i0;                                                          \
            for (; i + SC_MR <= i1; i += SC_MR) {                                   \
                if (pack_a)                                                         \
                    sc_kernel_##SUFFIX(SC_MR, Cp + i * ldc, ldc, abuf + (i - i0) * k, \
                                       1, SC_MR, panel, k, width, accumulate);      \
                else                                                                \
                    sc_kernel_##SUFFIX(SC_MR, Cp + i * ldc, ldc, A + i * rs, rs, cs, \
                                       panel, k, width, accumulate);                \
            }                                                                       \
            if (pack_a) {                                                           \
                SC_TAIL(SUFFIX, i1 - i, Cp + i * ldc, ldc, abuf + (i - i0) * k, 1,  \
                        i1 - i, panel, k, width, accumulate)                        \
            } else {                                                                \
                SC_TAIL(SUFFIX, i1 - i, Cp + i * ldc, ldc, A + i * rs, rs, cs, panel, \
                        k, width, accumulate)                                       \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}

/* The last r < MR rows (r < 16) as blocks of 8, 4, 2 and 1 rows, each a kernel with
 * a compile-time MR: four instances serve every path's MR instead of one per count. */
#define SC_TAIL(SUFFIX, r, C, ldc, A, rs, ...)                                       \
    {                                                                               \
        size_t left_ = (r), done_ = 0;                                              \
        if (SC_MR > 8 && (left_ & 8)) {                                             \
            sc_kernel_##SUFFIX(8, (C) + done_ * (ldc), ldc, (A) + done_ * (rs), rs, \
                               __VA_ARGS__);                                        \
            done_ += 8;                                                             \
        }                                                                           \
        if (SC_MR > 4 && (left_ & 4)) {                                             \
            sc_kernel_##SUFFIX(4, (C) + done_ * (ldc), ldc, (A) + done_ * (rs), rs, \
                               __VA_ARGS__);                                        \
            done_ += 4;                                                             \
        }                                                                           \
        if (left_ & 2) {                                                            \
            sc_kernel_##SUFFIX(2, (C) + done_ * (ldc), ldc, (A) + done_ * (rs), rs, \
                               __VA_ARGS__);                                        \
            done_ += 2;                                                             \
        }                                                                           \
        if (left_ & 1)                                                              \
            sc_kernel_##SUFFIX(1, (C) + done_ * (ldc), ldc, (A) + done_ * (rs), rs, \
                               __VA_ARGS__);                                        \
    }

SC_DEFINE_KERNEL(float, sc_vf, sc_vf_u, SC_NR_F, f)
SC_DEFINE_KERNEL(double, sc_vd, sc_vd_u, SC_NR_D, d)

/* ---------------------------------------------------------- a single row */

/* A batch of one (token-by-token generation) makes every product a vector times a
 * matrix: a BLAS gemv call then costs more in dispatch than in arithmetic, so these
 * run it directly, streaming the weights once.
 *   sc_rowdot:  c (n) (+)= a (k) @ W^T, W (n, k) with row stride ldw: a dot per row
 *   sc_rowdot2: the same for a vector a stored in two pieces
 *   sc_rowaxpy: c (n) (+)= a (k) @ W,   W (k, n) with row stride ldw: c += a_kk W[kk]
 *
 * sc_rowdot(2) takes rows in blocks of L (the lanes of a vector): one accumulator vector
 * per row, then one "transposing" reduction turns the L accumulators into one vector
 * holding the L row sums. Summing each accumulator on its own (a horizontal add per
 * row) cost as much as the multiplications: 1024 x 320 floats took 25 us on one
 * core here, the blocked form 13 us (the weights then stream at ~100 GB/s). */

typedef int sc_vi_f __attribute__((vector_size(SC_VEC_BYTES)));       /* shuffle masks */
typedef long long sc_vi_d __attribute__((vector_size(SC_VEC_BYTES)));

/* One round of the reduction. x and y hold groups of w lanes, one group per row
 * (x's rows first). The result holds groups of w/2 lanes, each the sum of the two
 * halves of a group, x's rows then y's: the rows stay in order and every round
 * halves the lanes per row. a, b pick the first and the second halves (lane l of
 * y is lane L + l of the pair): output lane o, in group o / (w/2) at place o % (w/2),
 * takes source lane (o / (w/2)) * w + o % (w/2) and the one w/2 after it. */
#define SC_HALVE(x, y, a, b) (__builtin_shuffle((x), (y), (a)) + __builtin_shuffle((x), (y), (b)))
#define SC_FIRST_HALF(w, o) ((o) / ((w) / 2) * (w) + (o) % ((w) / 2))
#define SC_SECOND_HALF(w, o) (SC_FIRST_HALF(w, o) + (w) / 2)

/* f(w, 0), ..., f(w, L - 1): the L lanes of a mask, as a constant initializer. */
#define SC_LANES_2(f, w) f(w, 0), f(w, 1)
#define SC_LANES_4(f, w) SC_LANES_2(f, w), f(w, 2), f(w, 3)
#define SC_LANES_8(f, w) SC_LANES_4(f, w), f(w, 4), f(w, 5), f(w, 6), f(w, 7)
#define SC_LANES_16(f, w) SC_LANES_8(f, w), f(w, 8), f(w, 9), f(w, 10), f(w, 11), \
                          f(w, 12), f(w, 13), f(w, 14), f(w, 15)
#define SC_LANE_LIST(L, f, w) SC_LANE_LIST_(L, f, w)
#define SC_LANE_LIST_(L, f, w) SC_LANES_##L(f, w)

/* One round for groups of w lanes (skipped when a vector has fewer): n vectors in r
 * become n / 2. */
#define SC_ROUND(VI, L, w, r, n)                                                    \
    if ((L) >= (w)) {                                                               \
        const VI a = {SC_LANE_LIST(L, SC_FIRST_HALF, w)};                           \
        const VI b = {SC_LANE_LIST(L, SC_SECOND_HALF, w)};                          \
        n /= 2;                                                                     \
        for (int i_ = 0; i_ < n; i_++)                                              \
            r[i_] = SC_HALVE(r[2 * i_], r[2 * i_ + 1], a, b);                       \
    }

#define SC_DEFINE_ROW_SUMS(V, VI, L, SUFFIX)                                        \
/* s[0..L-1] (L rows' accumulators) -> one vector of the L row sums, in order. */     \
static inline V sc_row_sums_##SUFFIX(const V *s)                                     \
{                                                                                   \
    V r[L];                                                                         \
    int n = L;                                                                      \
    for (int i = 0; i < L; i++) r[i] = s[i];                                        \
    SC_ROUND(VI, L, 16, r, n)                                                       \
    SC_ROUND(VI, L, 8, r, n)                                                        \
    SC_ROUND(VI, L, 4, r, n)                                                        \
    SC_ROUND(VI, L, 2, r, n)                                                        \
    return r[0];                                                                    \
}

SC_DEFINE_ROW_SUMS(sc_vf, sc_vi_f, SC_LANES_F, f)
SC_DEFINE_ROW_SUMS(sc_vd, sc_vi_d, SC_LANES_D, d)

#define SC_DEFINE_ROW(T, V, VU, L, SUFFIX)                                          \
/* acc[0..R-1] += the lane-wise products of R rows of W (ldw apart) with a, over the \
 * first kv (a multiple of L) columns; R = min(8, L), a constant. A few rows at a     \
 * time: their pointers fit in registers, and each load of a serves all of them. */  \
static inline __attribute__((always_inline)) void                                   \
sc_dot_rows_##SUFFIX(V *acc, const T *w, size_t ldw, const T *a, size_t kv)          \
{                                                                                   \
    enum { R = L < 8 ? L : 8 };                                                     \
    const T *wr[R];                                                                 \
    V s[R];                                                                         \
    for (int r = 0; r < R; r++) { wr[r] = w + r * ldw; s[r] = acc[r]; }             \
    for (size_t kk = 0; kk < kv; kk += L) {                                         \
        V av = *(const VU *)(a + kk);                                               \
        for (int r = 0; r < R; r++) s[r] += *(const VU *)(wr[r] + kk) * av;         \
    }                                                                               \
    for (int r = 0; r < R; r++) acc[r] = s[r];                                      \
}                                                                                   \
/* c (n) (+)= W[:, :k1] @ a1 + W[:, k1:k1+k2] @ a2: each row of W against a vector    \
 * stored in two pieces ([a<t-1>, x<t>] of a step), in one pass over the rows. */     \
static inline void sc_rowdot2_##SUFFIX(T *c, const T *a1, size_t k1, const T *a2,    \
                                       size_t k2, const T *W, size_t ldw, size_t n,  \
                                       int accumulate)                              \
{                                                                                   \
    size_t kv1 = k1 - k1 % L, kv2 = k2 - k2 % L;   /* the parts in whole vectors */ \
    for (size_t j = 0; j < n; j += L) {            /* a block of L rows */          \
        size_t rows = n - j < L ? n - j : L;                                        \
        const T *w = W + j * ldw;                                                   \
        V s[L], zero = {0};                                                         \
        for (int r = 0; r < L; r++) s[r] = zero;     /* (memset: a libc call) */     \
        if (rows == L) {                                                            \
            for (int h = 0; h < L; h += (L < 8 ? L : 8)) {                          \
                sc_dot_rows_##SUFFIX(s + h, w + h * ldw, ldw, a1, kv1);             \
                sc_dot_rows_##SUFFIX(s + h, w + h * ldw + k1, ldw, a2, kv2);        \
            }                                                                       \
        } else {                                   /* the last, partial block */    \
            for (size_t r = 0; r < rows; r++) {                                     \
                for (size_t kk = 0; kk < kv1; kk += L)                              \
                    s[r] += *(const VU *)(w + r * ldw + kk) * *(const VU *)(a1 + kk); \
                for (size_t kk = 0; kk < kv2; kk += L)                              \
                    s[r] += *(const VU *)(w + r * ldw + k1 + kk) * *(const VU *)(a2 + kk); \
            }                                                                       \
        }                                                                           \
        V sums = sc_row_sums_##SUFFIX(s);                                           \
        T r[L];                                                                     \
        memcpy(r, &sums, sizeof(V));                                                \
        for (size_t q = 0; q < rows; q++) {        /* the columns past whole vectors */ \
            for (size_t kk = kv1; kk < k1; kk++) r[q] += w[q * ldw + kk] * a1[kk];  \
            for (size_t kk = kv2; kk < k2; kk++) r[q] += w[q * ldw + k1 + kk] * a2[kk]; \
            c[j + q] = accumulate ? c[j + q] + r[q] : r[q];                         \
        }                                                                           \
    }                                                                               \
}                                                                                   \
static inline void sc_rowdot_##SUFFIX(T *c, const T *a, size_t inc_a, const T *W,   \
                                      size_t ldw, size_t n, size_t k, int accumulate)\
{                                                                                   \
    if (inc_a == 1) {                                                               \
        sc_rowdot2_##SUFFIX(c, a, k, a, 0, W, ldw, n, accumulate);                  \
        return;                                                                     \
    }                                                                               \
    for (size_t j = 0; j < n; j++) {               /* strided a: rare, plain loop */ \
        T s = 0;                                                                    \
        for (size_t kk = 0; kk < k; kk++) s += W[j * ldw + kk] * a[kk * inc_a];     \
        c[j] = accumulate ? c[j] + s : s;                                           \
    }                                                                               \
}                                                                                   \
static inline void sc_rowaxpy_##SUFFIX(T *__restrict__ c, const T *a, size_t inc_a, \
                                       const T *__restrict__ W, size_t ldw,         \
                                       size_t n, size_t k, int accumulate)          \
{                                                                                   \
    if (!accumulate)                                                                \
        for (size_t j = 0; j < n; j++) c[j] = 0;                                    \
    for (size_t kk = 0; kk < k; kk++) {                                             \
        const T s = a[kk * inc_a];                                                  \
        const T *__restrict__ w = W + kk * ldw;                                     \
        for (size_t j = 0; j < n; j++) c[j] += s * w[j];                            \
    }                                                                               \
}

SC_DEFINE_ROW(float, sc_vf, sc_vf_u, SC_LANES_F, f)
SC_DEFINE_ROW(double, sc_vd, sc_vd_u, SC_LANES_D, d)

/* A single row against int8 weights: sc_rowdot2_q8 (int8 x int8). */
#include "_q8.h"

#endif
