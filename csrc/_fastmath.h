/* Branch-free exp, sigmoid and tanh (fast path) that gcc can vectorize.
 *
 * libm's expf/tanhf are scalar calls the compiler cannot vectorize, and in an RNN
 * the element-wise gate pass calls them B*G*H times per step. These versions use
 * only +, *, selects and integer bit moves, so a plain loop over them compiles to
 * SIMD code. Accuracy: a few ulp in float, ~1e-15 relative in double (checked by
 * tests/kernels/test_fastmath.py against numpy over the whole range).
 *
 * exp(x) = 2^n * e^r with n = round(x / ln 2) and r = x - n ln 2, |r| <= ln2 / 2;
 * e^r by its Taylor polynomial (degree 7 in float, 13 in double), 2^n built
 * directly in the exponent bits.
 */
#ifndef SEQCORE_FASTMATH_H
#define SEQCORE_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float sc_bits_to_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline int32_t sc_float_to_bits(float f) { int32_t i; memcpy(&i, &f, 4); return i; }
static inline double sc_bits_to_double(int64_t i) { double d; memcpy(&d, &i, 8); return d; }
static inline int64_t sc_double_to_bits(double d) { int64_t i; memcpy(&i, &d, 8); return i; }

static inline float sc_expf(float x)
{
    /* Clamp so 2^n stays a normal number; exp(-87) ~ 1.6e-38 is 0 for our uses. */
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f;                 /* 1.5 * 2^23: rounds to integer */
    float kf = x * 1.44269504088896341f + magic;
    int32_t n = sc_float_to_bits(kf) - sc_float_to_bits(magic);
    kf -= magic;
    float r = x - kf * 0.693359375f;                 /* Cody-Waite: ln2 in two parts */
    r = r - kf * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * sc_bits_to_float((n + 127) << 23);
}

/* exp(x) for x in [-708, 709], unclamped: sc_exp and sc_exp_neg clamp first. */
static inline double sc_exp_in_range(double x)
{
    const double magic = 6755399441055744.0;         /* 1.5 * 2^52 */
    double kd = x * 1.4426950408889634074 + magic;
    int64_t n = sc_double_to_bits(kd) - sc_double_to_bits(magic);
    kd -= magic;
    double r = x - kd * 6.93147180369123816490e-01;
    r = r - kd * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;                   /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return p * sc_bits_to_double((n + 1023) << 52);
}

static inline double sc_exp(double x)
{
    x = x < -708.0 ? -708.0 : x;
    return sc_exp_in_range(x > 709.0 ? 709.0 : x);
}

/* exp(x) for x <= 0 (a term of a logsumexp less the largest, a log-probability): one
 * clamp fewer than sc_exp, 7% of CTC's recursion on the generic path. Slightly
 * positive x (rounding) is fine; x past 709 would overflow. */
static inline double sc_exp_neg(double x)
{
    return sc_exp_in_range(x < -708.0 ? -708.0 : x);
}

static inline float sc_sigmoidf(float x) { return 1.0f / (1.0f + sc_expf(-x)); }
static inline double sc_sigmoid(double x) { return 1.0 / (1.0 + sc_exp(-x)); }

/* tanh: (1 - e^-2|x|) / (1 + e^-2|x|) loses relative accuracy near 0 to
 * cancellation, so below |x| = 0.1 its odd Taylor series is used instead. */
static inline float sc_tanhf(float x)
{
    float ax = x < 0.0f ? -x : x;
    float e = sc_expf(-2.0f * ax);
    float big = (1.0f - e) / (1.0f + e);
    float x2 = x * x;
    float small = 62.0f / 2835.0f;
    small = small * x2 - 17.0f / 315.0f;
    small = small * x2 + 2.0f / 15.0f;
    small = small * x2 - 1.0f / 3.0f;
    small = (small * x2) * ax + ax;
    float t = ax < 0.1f ? small : big;
    return x < 0.0f ? -t : t;
}

static inline double sc_tanh(double x)
{
    double ax = x < 0.0 ? -x : x;
    double e = sc_exp(-2.0 * ax);
    double big = (1.0 - e) / (1.0 + e);
    double x2 = x * x;
    double small = 21844.0 / 6081075.0;
    small = small * x2 - 1382.0 / 155925.0;
    small = small * x2 + 62.0 / 2835.0;
    small = small * x2 - 17.0 / 315.0;
    small = small * x2 + 2.0 / 15.0;
    small = small * x2 - 1.0 / 3.0;
    small = (small * x2) * ax + ax;
    double t = ax < 0.1 ? small : big;
    return x < 0.0 ? -t : t;
}

/* log(x) for a positive normal double x, branch-free and vectorizable, within a
 * couple of ulp: x = 2^e m with m in [sqrt(1/2), sqrt(2)), and
 * log(m) = 2 atanh(u) = 2 (u + u^3/3 + u^5/5 + ...), u = (m - 1) / (m + 1), |u| < 0.172,
 * whose terms past u^23 are below 2^-60. ln 2 in two parts keeps e ln 2 exact. */
static inline double sc_log(double x)
{
    uint64_t bits = (uint64_t)sc_double_to_bits(x);
    int64_t e = (int64_t)((bits >> 52) & 0x7ff) - 1023;
    double m = sc_bits_to_double((int64_t)((bits & 0xfffffffffffffULL) | 0x3ff0000000000000ULL));
    /* e as a double without an int64 -> double conversion, which AVX2 lacks: the
     * bits of 1.5 * 2^52 + e, minus 1.5 * 2^52 */
    double ed = sc_bits_to_double(e + 0x4338000000000000LL) - 6755399441055744.0;
    /* m in [1, 2) -> [sqrt(1/2), sqrt(2)); big is a double, 0 or 1, as a 0/1 int64
     * from a compare of doubles has no SSE2 instruction and would keep the loop scalar */
    double big = m > 1.4142135623730951 ? 1.0 : 0.0;
    m = m * (1.0 - 0.5 * big);
    ed += big;
    double u = (m - 1.0) / (m + 1.0);
    double u2 = u * u;
    double p = 1.0 / 23.0;
    p = p * u2 + 1.0 / 21.0;
    p = p * u2 + 1.0 / 19.0;
    p = p * u2 + 1.0 / 17.0;
    p = p * u2 + 1.0 / 15.0;
    p = p * u2 + 1.0 / 13.0;
    p = p * u2 + 1.0 / 11.0;
    p = p * u2 + 1.0 / 9.0;
    p = p * u2 + 1.0 / 7.0;
    p = p * u2 + 1.0 / 5.0;
    p = p * u2 + 1.0 / 3.0;
    return ed * 6.93147180369123816490e-01 + (2.0 * u * u2 * p
           + (ed * 1.90821492927058770002e-10 + 2.0 * u));
}

#endif
