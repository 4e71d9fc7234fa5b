/* int8 x int8 products of one row: a quantized layer's step of one token.
 *
 *   sc_rowdot2_q8: c (n) (+)= s (n) * (Q[:, :k1] @ a1 + Q[:, k1:k1+k2] @ a2)
 *
 * Q (n, k) int8 with row stride ldq and one scale s per row (seqcore.quantize). Each
 * of the two vectors a1 (a<t-1>) and a2 (x<t>) is quantized on the way in, with its
 * own scale (seqcore.reference.quant.quantize_vector):
 *
 *   s_a = max_k |a[k]| / 127,   aq[k] = rint(a[k] * (127 / max|a|))   in [-127, 127]
 *
 * and the products are sums of int8 times int8 in int32 (int64 past 2048 columns),
 * exact:
 *
 *   c[j] = s[j] * (s_a1 * (Q[j, :k1] . a1q) + s_a2 * (Q[j, k1:] . a2q))
 *
 * The weights then stream at one byte each (float32's take four), and the sums keep up
 * with them. Per path (sc_q8_dots):
 *
 *   avx512   vpmaddubsw + vpmaddwd, 64 bytes a step. vpmaddubsw multiplies unsigned
 *            by signed bytes and adds pairs into int16 with saturation: it gets |aq|
 *            (0..127) and the weights with aq's sign moved onto them (-q where aq < 0;
 *            q is in [-127, 127], so -q is an int8), and a pair sums to at most
 *            2 * 127 * 127 = 32258 < 32767: no saturation.
 *   avx2     the same, 32 bytes a step, the sign moved by vpsignb.
 *   generic  SSE2 has no vpmaddubsw: aq is kept as int16, each weight q goes into
 *            the high byte of an int16 (256 q, one unpack with zeros, no shift) and
 *            pmaddwd multiplies, 16 bytes a step. A lane then holds 256 times its sum:
 *            at most 4 products of 256 * 127 * 127 a step, 128 steps (SC_Q8_COLS =
 *            2048 columns): 2,114,060,288 < 2^31. The lanes are shifted back before
 *            they are added. Sign-extending by unpack and shift took 470 us over
 *            4096 x 2048 rows (bench/q8_rows.c).
 *
 * VNNI's vpdpbusd does the three instructions of a step in one, but the step is bound
 * by the weights' bytes from L2 or memory: its bare sums ran 2-19% faster than this
 * kernel (bench/q8_rows.c; 2-8% at 2-8 MB), so the avx512 path stays on AVX512BW.
 * At 8 MB the avx512 and avx2 kernels take within 2% of a plain read of the weights
 * (the bench's first line); prefetching rows ahead or reading 8 at a time moved them
 * by -2% to +2%.
 *
 * The vectors are quantized into stack buffers (no allocation). When both have at most
 * SC_Q8_COLS values (H and D up to 2048), each is quantized once a call
 * and the rows are read 4 at a time, each from start to end: an LSTM step at H = 1024
 * took 8-13% less than when each group of 256 rows re-quantized them and read the
 * rows' a<t-1> columns, then their x<t> columns. Longer vectors are quantized
 * SC_Q8_COLS columns at a time, each chunk multiplied by SC_Q8_ROWS_AT_ONCE rows before
 * the next (the quantization then costs 1/256 of the products).
 */
#ifndef SEQCORE_Q8_H
#define SEQCORE_Q8_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "_paths.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#define SC_Q8_COLS 2048          /* columns of a vector quantized at a time; the
                                    generic sums' int32 lanes hold 2048 (see the top) */
#define SC_Q8_ROWS_AT_ONCE 256   /* rows multiplied by one chunk before the next */
#define SC_Q8_MAX 127

#if defined(SC_PATH_AVX512) || defined(SC_PATH_AVX2)
typedef int8_t sc_q8_t;          /* a quantized activation, as the kernel reads it */
#else
typedef int16_t sc_q8_t;
#endif

/* ------------------------------------------------ quantizing the activations */

#define SC_DEFINE_Q8_ACT(T, SUFFIX, RINT)                                           \
/* max_k |a[k]| (NaN ignored) */                                                    \
static inline T sc_q8_amax_##SUFFIX(const T *a, size_t k)                           \
{                                                                                   \
    T m = 0;                                                                        \
    for (size_t i = 0; i < k; i++) {                                                \
        T v = a[i] < 0 ? -a[i] : a[i];                                              \
        m = v > m ? v : m;                                                          \
    }                                                                               \
    return m;                                                                       \
}                                                                                   \
/* aq[i] = rint(a[i] * inv) clamped to [-127, 127] (NaN to 127) */                  \
static inline void sc_q8_act_##SUFFIX(sc_q8_t *aq, const T *a, size_t k, T inv)     \
{                                                                                   \
    for (size_t i = 0; i < k; i++) {                                                \
        T v = a[i] * inv;                                                           \
        v = v < SC_Q8_MAX ? v : SC_Q8_MAX;                                          \
        v = v > -SC_Q8_MAX ? v : -SC_Q8_MAX;                                        \
        aq[i] = (sc_q8_t)RINT(v);                                                   \
    }                                                                               \
}

SC_DEFINE_Q8_ACT(float, f, nearbyintf)
SC_DEFINE_Q8_ACT(double, d, nearbyint)

/* ---------------------------------------------- int8 x int8 dots, per path */

/* d[j] += Q[j, :k] . aq for rows j in [0, n): four rows share each load of aq. */
#if defined(SC_PATH_AVX512)

static inline __m512i sc_q8_step(__m512i acc, __m512i ua, __mmask64 neg, __m512i q)
{
    q = _mm512_mask_sub_epi8(q, neg, _mm512_setzero_si512(), q);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(ua, q),
                                                   _mm512_set1_epi16(1)));
}

static inline void sc_q8_dots(int32_t *d, const sc_q8_t *aq, const int8_t *Q, size_t ldq,
                              size_t n, size_t k)
{
    size_t j = 0;
    for (; j < n; j += 4) {
        size_t rows = n - j < 4 ? n - j : 4;
        const int8_t *q = Q + j * ldq;
        __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t kk = 0; kk < k; kk += 64) {
            __mmask64 m = k - kk >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (k - kk)) - 1);
            __m512i a = _mm512_maskz_loadu_epi8(m, aq + kk);
            __m512i ua = _mm512_abs_epi8(a);
            __mmask64 neg = _mm512_movepi8_mask(a);
            s0 = sc_q8_step(s0, ua, neg, _mm512_maskz_loadu_epi8(m, q + kk));
            if (rows > 1) s1 = sc_q8_step(s1, ua, neg, _mm512_maskz_loadu_epi8(m, q + ldq + kk));
            if (rows > 2) s2 = sc_q8_step(s2, ua, neg, _mm512_maskz_loadu_epi8(m, q + 2 * ldq + kk));
            if (rows > 3) s3 = sc_q8_step(s3, ua, neg, _mm512_maskz_loadu_epi8(m, q + 3 * ldq + kk));
        }
        d[j] += _mm512_reduce_add_epi32(s0);
        if (rows > 1) d[j + 1] += _mm512_reduce_add_epi32(s1);
        if (rows > 2) d[j + 2] += _mm512_reduce_add_epi32(s2);
        if (rows > 3) d[j + 3] += _mm512_reduce_add_epi32(s3);
    }
}

#elif defined(SC_PATH_AVX2)

static inline __m256i sc_q8_step(__m256i acc, __m256i ua, __m256i a, const int8_t *q)
{
    __m256i w = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q), a);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ua, w),
                                                   _mm256_set1_epi16(1)));
}

static inline int32_t sc_q8_hsum(__m256i s)
{
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return _mm_cvtsi128_si32(h);
}

static inline void sc_q8_dots(int32_t *d, const sc_q8_t *aq, const int8_t *Q, size_t ldq,
                              size_t n, size_t k)
{
    size_t kv = k - k % 32;
    for (size_t j = 0; j < n; j += 4) {
        size_t rows = n - j < 4 ? n - j : 4;
        const int8_t *q = Q + j * ldq;
        __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256(), _mm256_setzero_si256()};
        if (rows == 4) {
            for (size_t kk = 0; kk < kv; kk += 32) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aq + kk));
                __m256i ua = _mm256_abs_epi8(a);
                s[0] = sc_q8_step(s[0], ua, a, q + kk);
                s[1] = sc_q8_step(s[1], ua, a, q + ldq + kk);
                s[2] = sc_q8_step(s[2], ua, a, q + 2 * ldq + kk);
                s[3] = sc_q8_step(s[3], ua, a, q + 3 * ldq + kk);
            }
        } else {
            for (size_t kk = 0; kk < kv; kk += 32) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(aq + kk));
                __m256i ua = _mm256_abs_epi8(a);
                for (size_t r = 0; r < rows; r++)
                    s[r] = sc_q8_step(s[r], ua, a, q + r * ldq + kk);
            }
        }
        for (size_t r = 0; r < rows; r++) {
            int32_t t = sc_q8_hsum(s[r]);
            for (size_t kk = kv; kk < k; kk++) t += (int32_t)q[r * ldq + kk] * aq[kk];
            d[j + r] += t;
        }
    }
}

#else   /* generic: SSE2 where the compiler has it, else plain C */

static inline void sc_q8_dots(int32_t *d, const sc_q8_t *aq, const int8_t *Q, size_t ldq,
                              size_t n, size_t k)
{
    size_t kv = 0;
#if defined(__SSE2__)
    kv = k - k % 16;
#endif
    for (size_t j = 0; j < n; j += 4) {
        size_t rows = n - j < 4 ? n - j : 4;
        const int8_t *q = Q + j * ldq;
        int32_t t[4] = {0, 0, 0, 0};
#if defined(__SSE2__)
        const __m128i zero = _mm_setzero_si128();
        __m128i s[4] = {zero, zero, zero, zero};
        for (size_t kk = 0; kk < kv; kk += 16) {
            __m128i a0 = _mm_loadu_si128((const __m128i *)(aq + kk));
            __m128i a1 = _mm_loadu_si128((const __m128i *)(aq + kk + 8));
            for (size_t r = 0; r < rows; r++) {
                __m128i w = _mm_loadu_si128((const __m128i *)(q + r * ldq + kk));
                __m128i w0 = _mm_unpacklo_epi8(zero, w);       /* 256 q as int16, exact */
                __m128i w1 = _mm_unpackhi_epi8(zero, w);
                s[r] = _mm_add_epi32(s[r], _mm_add_epi32(_mm_madd_epi16(w0, a0),
                                                         _mm_madd_epi16(w1, a1)));
            }
        }
        for (size_t r = 0; r < rows; r++) {
            int32_t v[4];     /* each lane a multiple of 256: the shift is exact */
            _mm_storeu_si128((__m128i *)v, _mm_srai_epi32(s[r], 8));
            t[r] = v[0] + v[1] + v[2] + v[3];
        }
#endif
        for (size_t r = 0; r < rows; r++) {
            for (size_t kk = kv; kk < k; kk++) t[r] += (int32_t)q[r * ldq + kk] * aq[kk];
            d[j + r] += t[r];
        }
    }
}

#endif

/* ------------------------------------------------------------- the row product */

/* d (n) = Q (n, k) . quantized a, the columns SC_Q8_COLS at a time (see the top).
 * A chunk's sums fit int32 (|sum| <= 2048 * 127 * 127 < 2^25); the whole row's go
 * to int64, so that no length of a overflows them. */
#define SC_DEFINE_Q8_PART(T, SUFFIX)                                                \
static inline void sc_q8_part_##SUFFIX(int64_t *d, const T *a, size_t k, T inv,     \
                                       const int8_t *Q, size_t ldq, size_t n)       \
{                                                                                   \
    sc_q8_t aq[SC_Q8_COLS];                                                         \
    int32_t e[SC_Q8_ROWS_AT_ONCE];                                                  \
    for (size_t j = 0; j < n; j++) d[j] = 0;                                        \
    for (size_t c0 = 0; c0 < k; c0 += SC_Q8_COLS) {                                 \
        size_t w = k - c0 < SC_Q8_COLS ? k - c0 : SC_Q8_COLS;                       \
        sc_q8_act_##SUFFIX(aq, a + c0, w, inv);                                     \
        for (size_t j = 0; j < n; j++) e[j] = 0;                                    \
        sc_q8_dots(e, aq, Q + c0, ldq, n, w);                                       \
        for (size_t j = 0; j < n; j++) d[j] += e[j];                                \
    }                                                                               \
}

#define SC_DEFINE_ROW_Q8(T, SUFFIX)                                                 \
SC_DEFINE_Q8_PART(T, SUFFIX)                                                        \
static inline void sc_rowdot2_q8_##SUFFIX(T *c, const T *a1, size_t k1, const T *a2, \
                                          size_t k2, const int8_t *Q, const T *scale, \
                                          size_t ldq, size_t n, int accumulate)     \
{                                                                                   \
    int64_t d1[SC_Q8_ROWS_AT_ONCE], d2[SC_Q8_ROWS_AT_ONCE];                         \
    T m1 = sc_q8_amax_##SUFFIX(a1, k1), m2 = sc_q8_amax_##SUFFIX(a2, k2);           \
    T inv1 = m1 > 0 ? SC_Q8_MAX / m1 : 0, inv2 = m2 > 0 ? SC_Q8_MAX / m2 : 0;       \
    T s1 = m1 / SC_Q8_MAX, s2 = m2 / SC_Q8_MAX;                                     \
    if (k1 <= SC_Q8_COLS && k2 <= SC_Q8_COLS) {    /* both quantized once, and each  \
                                 block of 4 rows read from start to end in one go */ \
        sc_q8_t q1[SC_Q8_COLS], q2[SC_Q8_COLS];                                     \
        sc_q8_act_##SUFFIX(q1, a1, k1, inv1);                                       \
        sc_q8_act_##SUFFIX(q2, a2, k2, inv2);                                       \
        for (size_t j0 = 0; j0 < n; j0 += 4) {                                      \
            size_t rows = n - j0 < 4 ? n - j0 : 4;                                  \
            const int8_t *q = Q + j0 * ldq;                                         \
            int32_t e1[4] = {0, 0, 0, 0}, e2[4] = {0, 0, 0, 0};                     \
            sc_q8_dots(e1, q1, q, ldq, rows, k1);                                   \
            sc_q8_dots(e2, q2, q + k1, ldq, rows, k2);                              \
            for (size_t j = 0; j < rows; j++) {                                     \
                T r = scale[j0 + j] * ((T)e1[j] * s1 + (T)e2[j] * s2);              \
                c[j0 + j] = accumulate ? c[j0 + j] + r : r;                         \
            }                                                                       \
        }                                                                           \
        return;                                                                     \
    }                                                                               \
    for (size_t j0 = 0; j0 < n; j0 += SC_Q8_ROWS_AT_ONCE) {                         \
        size_t rows = n - j0 < SC_Q8_ROWS_AT_ONCE ? n - j0 : SC_Q8_ROWS_AT_ONCE;    \
        const int8_t *q = Q + j0 * ldq;                                             \
        sc_q8_part_##SUFFIX(d1, a1, k1, inv1, q, ldq, rows);                        \
        sc_q8_part_##SUFFIX(d2, a2, k2, inv2, q + k1, ldq, rows);                   \
        for (size_t j = 0; j < rows; j++) {                                         \
            T r = scale[j0 + j] * ((T)d1[j] * s1 + (T)d2[j] * s2);                  \
            c[j0 + j] = accumulate ? c[j0 + j] + r : r;                             \
        }                                                                           \
    }                                                                               \
}

SC_DEFINE_ROW_Q8(float, f)
SC_DEFINE_ROW_Q8(double, d)

#endif
