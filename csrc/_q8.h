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

/* max_k |a[k]|, NaN ignored. The vector loops keep a running maximum per lane,
 * max(|v|, m): the max instructions return their second operand when either is NaN,
 * so a NaN leaves m as it was, as the scalar v > m ? v : m does. (GCC does not
 * vectorize the scalar loop: a max reduction that must keep NaN's order. It took
 * 1.5 us over 1,024 floats on avx512, the vector loop 0.07.) */
#if defined(SC_PATH_AVX512)
#define SC_DEFINE_Q8_AMAX(T, SUFFIX, VT, W, SFX, MASK)                              \
static inline T sc_q8_amax_##SUFFIX(const T *a, size_t k)                           \
{                                                                                   \
    VT m = _mm512_setzero_##SFX();                                                  \
    size_t i = 0;                                                                   \
    for (; i + W <= k; i += W)                                                      \
        m = _mm512_max_##SFX(_mm512_abs_##SFX(_mm512_loadu_##SFX(a + i)), m);      \
    if (i < k)                          /* the last k - i < W, the rest read as 0 */ \
        m = _mm512_max_##SFX(_mm512_abs_##SFX(_mm512_maskz_loadu_##SFX(             \
                (MASK)((1u << (k - i)) - 1), a + i)), m);                           \
    return _mm512_reduce_max_##SFX(m);                                              \
}
SC_DEFINE_Q8_AMAX(float, f, __m512, 16, ps, __mmask16)
SC_DEFINE_Q8_AMAX(double, d, __m512d, 8, pd, __mmask8)
#elif defined(SC_PATH_AVX2) || defined(__SSE2__)
#if defined(SC_PATH_AVX2)
#define SC_Q8_V(op) _mm256_##op
#define SC_Q8_VF __m256
#define SC_Q8_VD __m256d
#define SC_Q8_WF 8
#else
#define SC_Q8_V(op) _mm_##op
#define SC_Q8_VF __m128
#define SC_Q8_VD __m128d
#define SC_Q8_WF 4
#endif
#define SC_DEFINE_Q8_AMAX(T, SUFFIX, VT, W, SFX)                                    \
static inline T sc_q8_amax_##SUFFIX(const T *a, size_t k)                           \
{                                                                                   \
    VT m = SC_Q8_V(setzero_##SFX)(), sign = SC_Q8_V(set1_##SFX)((T)-0.0);           \
    size_t i = 0;                                                                   \
    for (; i + W <= k; i += W)                                                      \
        m = SC_Q8_V(max_##SFX)(SC_Q8_V(andnot_##SFX)(sign, SC_Q8_V(loadu_##SFX)(a + i)), \
                               m);                                                  \
    T lanes[W], r = 0;                                                              \
    SC_Q8_V(storeu_##SFX)(lanes, m);                                                \
    for (size_t l = 0; l < W; l++) r = lanes[l] > r ? lanes[l] : r;                 \
    for (; i < k; i++) {                                                            \
        T v = a[i] < 0 ? -a[i] : a[i];                                              \
        r = v > r ? v : r;                                                          \
    }                                                                               \
    return r;                                                                       \
}
SC_DEFINE_Q8_AMAX(float, f, SC_Q8_VF, SC_Q8_WF, ps)
SC_DEFINE_Q8_AMAX(double, d, SC_Q8_VD, SC_Q8_WF / 2, pd)
#else                                   /* plain C */
#define SC_DEFINE_Q8_AMAX(T, SUFFIX)                                                \
static inline T sc_q8_amax_##SUFFIX(const T *a, size_t k)                           \
{                                                                                   \
    T m = 0;                                                                        \
    for (size_t i = 0; i < k; i++) {                                                \
        T v = a[i] < 0 ? -a[i] : a[i];                                              \
        m = v > m ? v : m;                                                          \
    }                                                                               \
    return m;                                                                       \
}
SC_DEFINE_Q8_AMAX(float, f)
SC_DEFINE_Q8_AMAX(double, d)
#endif

/* aq[i] = rint(a[i] * inv) clamped to [-127, 127] (NaN to 127). GCC vectorizes the
 * scalar loop where the path has a vector rint (SSE4.1's roundps and up); on SSE2
 * it called nearbyintf once a value (1.2 us over 1,024), so the float loop is
 * written out there: minps returns its second operand, 127, for NaN, and cvtps2dq
 * rounds in the current mode, as nearbyintf does. */
#define SC_DEFINE_Q8_ACT(T, SUFFIX, RINT)                                           \
static inline void sc_q8_act_##SUFFIX(sc_q8_t *aq, const T *a, size_t k, T inv)     \
{                                                                                   \
    for (size_t i = 0; i < k; i++) {                                                \
        T v = a[i] * inv;                                                           \
        v = v < SC_Q8_MAX ? v : SC_Q8_MAX;                                          \
        v = v > -SC_Q8_MAX ? v : -SC_Q8_MAX;                                        \
        aq[i] = (sc_q8_t)RINT(v);                                                   \
    }                                                                               \
}

#if defined(__SSE2__) && !defined(__SSE4_1__)
SC_DEFINE_Q8_ACT(float, f_tail, nearbyintf)
static inline void sc_q8_act_f(sc_q8_t *aq, const float *a, size_t k, float inv)
{
    const __m128 vinv = _mm_set1_ps(inv), hi = _mm_set1_ps(SC_Q8_MAX), lo = _mm_set1_ps(-SC_Q8_MAX);
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m128 v0 = _mm_max_ps(_mm_min_ps(_mm_mul_ps(_mm_loadu_ps(a + i), vinv), hi), lo);
        __m128 v1 = _mm_max_ps(_mm_min_ps(_mm_mul_ps(_mm_loadu_ps(a + i + 4), vinv), hi), lo);
        _mm_storeu_si128((__m128i *)(aq + i),
                         _mm_packs_epi32(_mm_cvtps_epi32(v0), _mm_cvtps_epi32(v1)));
    }
    sc_q8_act_f_tail(aq + i, a + i, k - i, inv);
}
#else
SC_DEFINE_Q8_ACT(float, f, nearbyintf)
#endif
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

/* s[r] += rows r < `rows` of q (ldq apart) times aq, over 64 columns, those outside
 * the mask m read as zeros */
static inline void sc_q8_step4(__m512i *s, const sc_q8_t *aq, const int8_t *q, size_t ldq,
                               size_t rows, __mmask64 m)
{
    __m512i a = _mm512_maskz_loadu_epi8(m, aq);
    __m512i ua = _mm512_abs_epi8(a);
    __mmask64 neg = _mm512_movepi8_mask(a);
    for (size_t r = 0; r < rows; r++)
        s[r] = sc_q8_step(s[r], ua, neg, _mm512_maskz_loadu_epi8(m, q + r * ldq));
}

/* the sums of s[0..3]'s 16 lanes each, as 4 int32 lanes: 7 instructions for four
 * rows where one reduction each took 6 (a quarter of a row's time at 512 columns) */
static inline __m128i sc_q8_hsum4(const __m512i *s)
{
    __m256i t[4];
    for (int r = 0; r < 4; r++)
        t[r] = _mm256_add_epi32(_mm512_castsi512_si256(s[r]), _mm512_extracti64x4_epi64(s[r], 1));
    __m256i v = _mm256_hadd_epi32(_mm256_hadd_epi32(t[0], t[1]), _mm256_hadd_epi32(t[2], t[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

static inline void sc_q8_dots(int32_t *d, const sc_q8_t *aq, const int8_t *Q, size_t ldq,
                              size_t n, size_t k)
{
    const size_t kv = k - k % 64;
    const __mmask64 all = ~(__mmask64)0, tail = ((__mmask64)1 << (k - kv)) - 1;
    for (size_t j = 0; j < n; j += 4) {
        size_t rows = n - j < 4 ? n - j : 4;
        const int8_t *q = Q + j * ldq;
        __m512i s[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                        _mm512_setzero_si512(), _mm512_setzero_si512()};
        if (rows == 4)                  /* (the loop with 4 rows known: unrolled) */
            for (size_t kk = 0; kk < kv; kk += 64)
                sc_q8_step4(s, aq + kk, q + kk, ldq, 4, all);
        else
            for (size_t kk = 0; kk < kv; kk += 64)
                sc_q8_step4(s, aq + kk, q + kk, ldq, rows, all);
        if (kv < k)
            sc_q8_step4(s, aq + kv, q + kv, ldq, rows, tail);
        int32_t t[4];
        _mm_storeu_si128((__m128i *)t, sc_q8_hsum4(s));
        for (size_t r = 0; r < rows; r++)
            d[j + r] += t[r];
    }
}

#elif defined(SC_PATH_AVX2)

static inline __m256i sc_q8_step(__m256i acc, __m256i ua, __m256i a, const int8_t *q)
{
    __m256i w = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q), a);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ua, w),
                                                   _mm256_set1_epi16(1)));
}

/* the sums of s[0..3]'s 8 lanes each, as 4 int32 lanes */
static inline __m128i sc_q8_hsum4(const __m256i *s)
{
    __m256i v = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
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
        int32_t t[4];
        _mm_storeu_si128((__m128i *)t, sc_q8_hsum4(s));
        for (size_t r = 0; r < rows; r++) {
            for (size_t kk = kv; kk < k; kk++) t[r] += (int32_t)q[r * ldq + kk] * aq[kk];
            d[j + r] += t[r];
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
        /* each lane a multiple of 256: shifted back (exactly) before any two are
           added, which could pass 2^31; then the four rows' lanes transposed and
           added, row r's sum in lane r */
        for (size_t r = 0; r < 4; r++)
            s[r] = _mm_srai_epi32(s[r], 8);
        __m128i t01 = _mm_add_epi32(_mm_unpacklo_epi32(s[0], s[1]), _mm_unpackhi_epi32(s[0], s[1]));
        __m128i t23 = _mm_add_epi32(_mm_unpacklo_epi32(s[2], s[3]), _mm_unpackhi_epi32(s[2], s[3]));
        _mm_storeu_si128((__m128i *)t, _mm_add_epi32(_mm_unpacklo_epi64(t01, t23),
                                                     _mm_unpackhi_epi64(t01, t23)));
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
    _Alignas(64) sc_q8_t aq[SC_Q8_COLS];                                            \
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
        _Alignas(64) sc_q8_t q1[SC_Q8_COLS];                                        \
        _Alignas(64) sc_q8_t q2[SC_Q8_COLS];                                        \
        sc_q8_act_##SUFFIX(q1, a1, k1, inv1);                                       \
        sc_q8_act_##SUFFIX(q2, a2, k2, inv2);                                       \
        for (size_t j0 = 0; j0 < n; j0 += 4) {                                      \
            size_t rows = n - j0 < 4 ? n - j0 : 4;                                  \
            const int8_t *q = Q + j0 * ldq;                                         \
            int32_t e1[4] = {0, 0, 0, 0}, e2[4] = {0, 0, 0, 0};                     \
            sc_q8_dots(e1, q1, q, ldq, rows, k1);                                   \
            if (k2) sc_q8_dots(e2, q2, q + k1, ldq, rows, k2);                           \
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
