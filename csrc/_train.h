/* Element-wise passes of a training step (fast path): one row of softmax cross-entropy,
 * the Adam update, a sum of squares. Their NumPy references are in seqcore/dense.py
 * (softmax_cross_entropy_reference) and seqcore/optim.py (adam_update_reference).
 *
 * GCC vectorizes a loop only when it can reorder nothing: a running sum or maximum
 * (s += z[j]) stays scalar without -ffast-math. So the reductions keep SC_ACC
 * partial results, one per lane of a 16-wide block, which the compiler turns into
 * vector registers of this kernel path's width (4 lanes SSE2, 8 AVX2, 16 AVX-512)
 * and sums at the end. exp is _fastmath.h's polynomial, which vectorizes too.
 */
#ifndef SEQCORE_TRAIN_H
#define SEQCORE_TRAIN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_fastmath.h"
#include "_paths.h"     /* SC_VEC_BYTES of this kernel path */

#define SC_ACC 16   /* partial results of a reduction: one block of 16 values */

/* A running maximum does not vectorize either: GCC keeps `v > m ? v : m` as a scalar
 * compare-and-move per value (NaN rules). So the max pass is written on GCC vector
 * types of this path's width (SC_VEC_BYTES, _paths.h), the select as bit masks. */
typedef float sc_tf __attribute__((vector_size(SC_VEC_BYTES)));
typedef int32_t sc_ti __attribute__((vector_size(SC_VEC_BYTES)));
typedef double sc_td __attribute__((vector_size(SC_VEC_BYTES)));
typedef int64_t sc_tl __attribute__((vector_size(SC_VEC_BYTES)));

/* max of z (V, V >= 1) and whether z holds NaN or an infinity (*bad) */
#define SC_DEFINE_ROW_MAX(T, VT, IT, SUFFIX)                                          \
static inline T sc_row_max_##SUFFIX(const T *z, size_t V, int *bad)                   \
{                                                                                     \
    enum { W = SC_VEC_BYTES / sizeof(T) };                                            \
    VT mv, zero, acc, v;                                                              \
    size_t j = 0, l;                                                                  \
    for (l = 0; l < W; l++) { mv[l] = z[0]; zero[l] = 0; }                            \
    acc = zero;                                                                       \
    for (; j + W <= V; j += W) {                                                      \
        memcpy(&v, z + j, sizeof v);                                                  \
        IT gt = (IT)(v > mv);                                                         \
        mv = (VT)(((IT)v & gt) | ((IT)mv & ~gt));                                     \
        acc += v * zero;              /* NaN exactly where z is NaN or infinite */    \
    }                                                                                 \
    T m = mv[0], b = acc[0];                                                          \
    for (l = 1; l < W; l++) { m = mv[l] > m ? mv[l] : m; b += acc[l]; }               \
    for (; j < V; j++) { m = z[j] > m ? z[j] : m; b += z[j] * 0; }                    \
    *bad = b != 0;                                                                    \
    return m;                                                                         \
}

SC_DEFINE_ROW_MAX(float, sc_tf, sc_ti, f)
SC_DEFINE_ROW_MAX(double, sc_td, sc_tl, d)

/* One row of the cost: z (V) logits, target t, w the row's weight (mask / B).
 *   d[j] = w * softmax(z)[j] - w * [j == t]      (dC/dz of w * L)
 *   returns L = log sum_j exp(z[j]) - z[t] (double), or NAN when z holds NaN or an
 *   infinity (the caller then raises the same error as the reference's check).
 * Four passes over the row (max, exp, sum, scale), which stays in L1/L2. */
#define SC_DEFINE_XENT_ROW(T, EXP, SUFFIX)                                            \
static inline double sc_xent_row_##SUFFIX(T *restrict d, const T *restrict z,        \
                                         size_t V, int64_t t, T w)                   \
{                                                                                     \
    double sm[SC_ACC];                         /* the sum of exp, in double */        \
    size_t j, l, V16 = V - V % SC_ACC;                                                \
    int bad;                                                                          \
    T m = sc_row_max_##SUFFIX(z, V, &bad);                                            \
    if (bad)                                                                          \
        return NAN;                                                                   \
    /* e = exp(z - max) into d, then its sum */                                       \
    for (j = 0; j < V; j++)                                                           \
        d[j] = EXP(z[j] - m);                                                         \
    for (l = 0; l < SC_ACC; l++) sm[l] = 0;                                           \
    for (j = 0; j < V16; j += SC_ACC)                                                 \
        for (l = 0; l < SC_ACC; l++)                                                  \
            sm[l] += d[j + l];                                                        \
    double s = 0;                                                                     \
    for (l = 0; l < SC_ACC; l++) s += sm[l];                                          \
    for (j = V16; j < V; j++) s += d[j];                                              \
    /* softmax times the row's weight; minus the weight at the target */              \
    T scale = (T)(w / s);                                                             \
    for (j = 0; j < V; j++) d[j] *= scale;                                            \
    d[t] -= w;                                                                        \
    return log(s) + (double)m - (double)z[t];                                         \
}

SC_DEFINE_XENT_ROW(float, sc_expf, f)
SC_DEFINE_XENT_ROW(double, sc_exp, d)

/* Adam (optionally with decoupled weight decay) on n values, in one pass:
 *   p *= decay;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *   p -= alpha * m / (sqrt(v) + eps_hat)
 * (alpha and eps_hat hold the bias corrections; see seqcore/optim.py). */
#define SC_DEFINE_ADAM(T, SQRT, SUFFIX)                                               \
static inline void sc_adam_##SUFFIX(T *restrict p, T *restrict m, T *restrict v,     \
                                    const T *restrict g, size_t n, double beta1,      \
                                    double beta2, double alpha_, double eps_hat_,     \
                                    double decay_)                                    \
{                                                                                     \
    /* 1 - beta in double, then rounded: in float, 1 - 0.999f is 1.3e-5 off 0.001f */  \
    T b1 = (T)beta1, b2 = (T)beta2, c1 = (T)(1 - beta1), c2 = (T)(1 - beta2);          \
    T alpha = (T)alpha_, eps_hat = (T)eps_hat_, decay = (T)decay_;                    \
    for (size_t i = 0; i < n; i++) {                                                  \
        T gi = g[i];                                                                  \
        T mi = b1 * m[i] + c1 * gi;                                                   \
        T vi = b2 * v[i] + c2 * (gi * gi);                                            \
        m[i] = mi;                                                                    \
        v[i] = vi;                                                                    \
        p[i] = p[i] * decay - alpha * mi / (SQRT(vi) + eps_hat);                      \
    }                                                                                 \
}

SC_DEFINE_ADAM(float, sqrtf, f)
SC_DEFINE_ADAM(double, sqrt, d)

/* sum of x[i]^2 over n values, accumulated in double */
#define SC_DEFINE_SUMSQ(T, SUFFIX)                                                    \
static inline double sc_sumsq_##SUFFIX(const T *restrict x, size_t n)                \
{                                                                                     \
    double acc[SC_ACC];                                                               \
    size_t i = 0, l;                                                                  \
    for (l = 0; l < SC_ACC; l++) acc[l] = 0;                                          \
    for (; i + SC_ACC <= n; i += SC_ACC)                                              \
        for (l = 0; l < SC_ACC; l++) {                                                \
            double v = x[i + l];                                                      \
            acc[l] += v * v;                                                          \
        }                                                                             \
    double s = 0;                                                                     \
    for (l = 0; l < SC_ACC; l++) s += acc[l];                                         \
    for (; i < n; i++) s += (double)x[i] * x[i];                                      \
    return s;                                                                         \
}

SC_DEFINE_SUMSQ(float, f)
SC_DEFINE_SUMSQ(double, d)

#endif
