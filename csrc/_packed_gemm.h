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
 * extensions: AVX-512, AVX2 or SSE, whatever -march allows) and, for each of the k
 * steps, loads one row of a panel and broadcasts one value of A per row.
 * sc_packed_gemm(..., j0, j1) computes panels [j0, j1) only, so threads can
 * split the columns between them.
 */
#ifndef SEQCORE_PACKED_GEMM_H
#define SEQCORE_PACKED_GEMM_H

#include <stddef.h>
#include <string.h>

#define SC_MR 12             /* rows of C per micro-kernel call */
#define SC_NR_F 32           /* columns of a float panel (2 vectors of 16) */
#define SC_NR_D 16           /* columns of a double panel (2 vectors of 8) */

typedef float sc_vf __attribute__((vector_size(64)));
typedef float sc_vf_u __attribute__((vector_size(64), aligned(4)));
typedef double sc_vd __attribute__((vector_size(64)));
typedef double sc_vd_u __attribute__((vector_size(64), aligned(8)));

static inline size_t sc_panels(size_t n, size_t nr) { return (n + nr - 1) / nr; }

/* ------------------------------------------------------------------ packing */

#define SC_DEFINE_PACK(T, NR, SUFFIX)                                               \
/* Panels [p0, p1) of P = src^T: src (n, k) row-major with row stride lds. */                            \
static inline void sc_pack_rows_##SUFFIX(T *P, const T *src, size_t lds,             \
                                         size_t n, size_t k, size_t p0, size_t p1)    \
{                                                                                     \
    for (size_t p = p0; p < p1; p++) {                                                \
        T *panel = P + p * k * NR;                                                    \
        for (size_t j = 0; j < NR; j++) {                                             \
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

/* ------------------------------------------------------------- micro-kernel */

/* C[0:MR, 0:width] (+)= A[0:MR, 0:k] @ panel (k, NR). MR is a compile-time constant
 * in every call (see the switch below), so the accumulators live in registers. */
#define SC_DEFINE_KERNEL(T, V, VU, NR, SUFFIX)                                       \
static inline __attribute__((always_inline)) void                                   \
sc_kernel_##SUFFIX(const int MR, T *C, size_t ldc, const T *A, size_t rs, size_t cs,\
                   const T *panel, size_t k, size_t width, int accumulate)          \
{                                                                                   \
    V c0[SC_MR], c1[SC_MR];                                                         \
    for (int i = 0; i < MR; i++) { c0[i] = (V){0}; c1[i] = (V){0}; }                \
    for (size_t kk = 0; kk < k; kk++) {                                             \
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
 * 128 KiB of A so a block stays in L2 while every panel passes over it. */          \
static inline void sc_packed_gemm_##SUFFIX(T *C, size_t ldc, const T *A, size_t rs, \
        size_t cs, const T *P, size_t m, size_t n, size_t k, size_t j0, size_t j1,  \
        int accumulate)                                                             \
{                                                                                   \
    size_t mc = (131072 / sizeof(T)) / (k ? k : 1);                                 \
    mc = mc < SC_MR ? SC_MR : mc - mc % SC_MR;                                      \
    for (size_t i0 = 0; i0 < m; i0 += mc) {                                         \
        size_t i1 = i0 + mc < m ? i0 + mc : m;                                      \
        for (size_t p = j0; p < j1; p++) {                                          \
            const T *panel = P + p * k * NR;                                        \
            size_t width = n - p * NR < NR ? n - p * NR : NR;                       \
            T *Cp = C + p * NR;                                                     \
            size_t i = i0;                                                          \
            for (; i + SC_MR <= i1; i += SC_MR)                                     \
                sc_kernel_##SUFFIX(SC_MR, Cp + i * ldc, ldc, A + i * rs, rs, cs,    \
                                   panel, k, width, accumulate);                    \
            SC_TAIL(SUFFIX, i1 - i, Cp + i * ldc, ldc, A + i * rs, rs, cs, panel, k, \
                    width, accumulate)                                              \
        }                                                                           \
    }                                                                               \
}

/* The last m % MR rows, each count with its own compile-time MR. */
#define SC_TAIL(SUFFIX, r, ...)                                                     \
    switch (r) {                                                                    \
    case 0: break;                                                                  \
    case 1: sc_kernel_##SUFFIX(1, __VA_ARGS__); break;                              \
    case 2: sc_kernel_##SUFFIX(2, __VA_ARGS__); break;                              \
    case 3: sc_kernel_##SUFFIX(3, __VA_ARGS__); break;                              \
    case 4: sc_kernel_##SUFFIX(4, __VA_ARGS__); break;                              \
    case 5: sc_kernel_##SUFFIX(5, __VA_ARGS__); break;                              \
    case 6: sc_kernel_##SUFFIX(6, __VA_ARGS__); break;                              \
    case 7: sc_kernel_##SUFFIX(7, __VA_ARGS__); break;                              \
    case 8: sc_kernel_##SUFFIX(8, __VA_ARGS__); break;                              \
    case 9: sc_kernel_##SUFFIX(9, __VA_ARGS__); break;                              \
    case 10: sc_kernel_##SUFFIX(10, __VA_ARGS__); break;                            \
    default: sc_kernel_##SUFFIX(11, __VA_ARGS__); break;                            \
    }

SC_DEFINE_KERNEL(float, sc_vf, sc_vf_u, SC_NR_F, f)
SC_DEFINE_KERNEL(double, sc_vd, sc_vd_u, SC_NR_D, d)

/* ---------------------------------------------------------- a single row */

/* A batch of one (token-by-token generation) makes every product a vector times a
 * matrix: a BLAS gemv call then costs more in dispatch than in arithmetic, so these
 * run it directly, streaming the weights once.
 *   sc_rowdot:  c (n) (+)= a (k) @ W^T, W (n, k) with row stride ldw: a dot per row
 *   sc_rowaxpy: c (n) (+)= a (k) @ W,   W (k, n) with row stride ldw: c += a_kk W[kk] */
#define SC_DEFINE_ROW(T, V, VU, L, SUFFIX)                                          \
/* Sum of the L lanes of v: halve the vector until one lane is left (a tree of adds,  \
 * so consecutive rows' reductions overlap instead of forming one long chain). */     \
static inline T sc_hsum_##SUFFIX(V v)                                               \
{                                                                                   \
    T lanes[L];                                                                     \
    memcpy(lanes, &v, sizeof(V));                                                   \
    for (int w = L / 2; w > 0; w /= 2)                                              \
        for (int l = 0; l < w; l++) lanes[l] += lanes[l + w];                       \
    return lanes[0];                                                                \
}                                                                                   \
static inline void sc_rowdot_##SUFFIX(T *c, const T *a, size_t inc_a, const T *W,   \
                                      size_t ldw, size_t n, size_t k, int accumulate)\
{                                                                                   \
    for (size_t j = 0; j < n && inc_a != 1; j++) {  /* strided a: rare, plain loop */ \
        T s = 0;                                                                    \
        for (size_t kk = 0; kk < k; kk++) s += W[j * ldw + kk] * a[kk * inc_a];     \
        c[j] = accumulate ? c[j] + s : s;                                           \
    }                                                                               \
    if (inc_a != 1) return;                                                         \
    size_t kv = k - k % L;                         /* the part in whole vectors */  \
    size_t j = 0;                                                                   \
    for (; j + 4 <= n; j += 4) {                   /* four rows share each load of a */ \
        const T *w0 = W + j * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;    \
        V s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                   \
        for (size_t kk = 0; kk < kv; kk += L) {                                     \
            V av = *(const VU *)(a + kk);                                           \
            s0 += *(const VU *)(w0 + kk) * av;                                      \
            s1 += *(const VU *)(w1 + kk) * av;                                      \
            s2 += *(const VU *)(w2 + kk) * av;                                      \
            s3 += *(const VU *)(w3 + kk) * av;                                      \
        }                                                                           \
        T r[4] = {sc_hsum_##SUFFIX(s0), sc_hsum_##SUFFIX(s1), sc_hsum_##SUFFIX(s2),   \
                  sc_hsum_##SUFFIX(s3)};                                            \
        for (size_t kk = kv; kk < k; kk++) {                                        \
            r[0] += w0[kk] * a[kk]; r[1] += w1[kk] * a[kk];                         \
            r[2] += w2[kk] * a[kk]; r[3] += w3[kk] * a[kk];                         \
        }                                                                           \
        for (int q = 0; q < 4; q++) c[j + q] = accumulate ? c[j + q] + r[q] : r[q]; \
    }                                                                               \
    for (; j < n; j++) {                                                            \
        const T *w = W + j * ldw;                                                   \
        V s0 = {0};                                                                 \
        for (size_t kk = 0; kk < kv; kk += L)                                       \
            s0 += *(const VU *)(w + kk) * *(const VU *)(a + kk);                    \
        T r = sc_hsum_##SUFFIX(s0);                                                 \
        for (size_t kk = kv; kk < k; kk++) r += w[kk] * a[kk];                      \
        c[j] = accumulate ? c[j] + r : r;                                           \
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

SC_DEFINE_ROW(float, sc_vf, sc_vf_u, 16, f)
SC_DEFINE_ROW(double, sc_vd, sc_vd_u, 8, d)

#endif
