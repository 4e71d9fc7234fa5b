/* CTC's forward-backward recursion for one example, in log space (fast path; the
 * NumPy twin is seqcore/reference/ctc.py, which states the math).
 *
 * Legend: T the example's steps, C classes, S = 2L + 1 the extended label sequence
 * l' = (blank, l_1, blank, ..., l_L, blank).
 *
 *   alpha[t, s] = logsumexp(alpha[t-1, s], alpha[t-1, s-1], alpha[t-1, s-2]*) + lp[t, l'_s]
 *   beta[t, s]  = logsumexp(beta[t+1, s], beta[t+1, s+1], beta[t+1, s+2]*) + lp[t, l'_s]
 *
 (* only where l'_s is a label unlike l'_{s-2}: skip[s] is 0 there and -inf elsewhere,
 * added to the term, so that no branch breaks the loop). Every step's states depend
 * on the step before only, so the loop over s runs as vector passes
 * (sc_ctc_lse_states), with sc_exp_neg and sc_log (_fastmath.h): a blank's state,
 * never skipped, sums two terms, a label's three. A state no path reaches holds -inf
 * exactly. The arrays are restrict: no two overlap, which the loops need to
 * vectorize. The emissions em[t, s] = lp[t, l'_s] are gathered once into a (T, S) array of their own
 * (sc_ctc_emissions), so that those loops read only contiguous memory: the x86-64
 * baseline has no gather instruction, and without it no loop that reads lp[t, ext[s]]
 * vectorizes.
 *
 * At step t only the states [lo(t), hi(t)) lie on a path from the start to the end
 * (sc_ctc_window): a path gains at most two states a step, so s <= 2t + 1, and must
 * still reach S - 2 in T - 1 - t steps, so s >= S - 2(T - t). The recursions compute
 * those and set the others to -inf; a state in the window reads only states in the
 * window of the step before (after), so its value is the same as without it, and a
 * state outside has alpha or beta -inf, so its share of the gradient is 0 either way.
 * At T 200 with targets of 40 labels this leaves out a fifth of the states.
 */
#ifndef SEQCORE_CTC_H
#define SEQCORE_CTC_H
#include <math.h>
#include <stdint.h>
#include "_fastmath.h"

/* The window of states at step t (see above): [*lo, *hi), empty when none. */
static inline void sc_ctc_window(int64_t t, int64_t T, int64_t S, int64_t* lo, int64_t* hi)
{
    int64_t a = S - 2 * (T - t), b = 2 * t + 2;
    *lo = a > 0 ? a : 0;
    *hi = b < S ? b : S;
}

/* logsumexp(a, b, c) = m + log(1 + exp(mid - m) + exp(low - m)), m the largest of
 * the three and mid, low the others, in two halves: sc_lse3_sum gives m and the sum
 * in [1, 3] (where sc_log is exact to a couple of ulp), sc_lse3_end the result, -inf
 * exactly when all three are -inf. Branch-free (min, max and selects), so that loops
 * over states vectorize. */
static inline double sc_lse3_sum(double a, double b, double c, double* m)
{
    double low = a < b ? a : b, high = a > b ? a : b;
    double top = high > c ? high : c;
    double mid = high < c ? high : c;
    mid = mid > low ? mid : low;
    low = low < c ? low : c;
    double base = top == -INFINITY ? 0.0 : top;
    *m = top;
    return 1.0 + (sc_exp_neg(mid - base) + sc_exp_neg(low - base));
}

/* The same for two terms (the third -inf): logsumexp(a, b) = m + log(1 + exp(low - m)). */
static inline double sc_lse2_sum(double a, double b, double* m)
{
    double top = a > b ? a : b, low = a > b ? b : a;
    double base = top == -INFINITY ? 0.0 : top;
    *m = top;
    return 1.0 + sc_exp_neg(low - base);
}

static inline double sc_lse3_end(double m, double sum)
{
    double r = m + sc_log(sum);
    return m == -INFINITY ? -INFINITY : r;
}

static inline double sc_lse3(double a, double b, double c)
{
    double m, sum = sc_lse3_sum(a, b, c, &m);
    return sc_lse3_end(m, sum);
}

/* Every other state of a step: out[2i] = sc_lse3(x0[2i], x1[2i], x2[2i] + skip[2i])
 * + em[2i] for i < n (the labels' states, whose third term may exist), in two passes
 * over the row: the sums into sum (and the largest terms into top), then the logs.
 * Each pass is a short chain of dependent operations per element, so the CPU keeps
 * several elements in flight; in one fused pass each element waits on its exps,
 * then its log (1.6x slower at S 81 on the generic path). */
static inline void sc_ctc_lse3_row(double* restrict out, const double* x0, const double* x1,
                                   const double* x2, const double* restrict skip,
                                   const double* restrict em, double* restrict top,
                                   double* restrict sum, int64_t n)
{
    int64_t i;
    for (i = 0; i < n; i++)
        sum[i] = sc_lse3_sum(x0[2 * i], x1[2 * i], x2[2 * i] + skip[2 * i], &top[i]);
    for (i = 0; i < n; i++)
        out[2 * i] = sc_lse3_end(top[i], sum[i]) + em[2 * i];
}

/* The blanks' states: out[2i] = sc_lse3(x0[2i], x1[2i], -inf) + em[2i] (a blank is
 * never skipped), with one exp where sc_lse3 takes two. */
static inline void sc_ctc_lse2_row(double* restrict out, const double* x0, const double* x1,
                                   const double* restrict em, double* restrict top,
                                   double* restrict sum, int64_t n)
{
    int64_t i;
    for (i = 0; i < n; i++)
        sum[i] = sc_lse2_sum(x0[2 * i], x1[2 * i], &top[i]);
    for (i = 0; i < n; i++)
        out[2 * i] = sc_lse3_end(top[i], sum[i]) + em[2 * i];
}

/* The states [a, b) of a step by their kind: blank states (even s) sc_ctc_lse2_row,
 * label states (odd s) sc_ctc_lse3_row. State s reads src (the step before or after)
 * at s, s + d1 and s + d2 (alpha: -1, -2; beta: 1, 2), and the skip of the state it
 * would skip to, s for alpha and s + 2 for beta (ds 0 or 2). */
static inline void sc_ctc_lse_states(double* restrict cur, const double* src,
                                     const double* restrict skip, const double* restrict row,
                                     double* restrict tmp, int64_t S, int64_t a, int64_t b,
                                     int64_t d1, int64_t d2, int64_t ds)
{
    int64_t e = a + (a & 1), o = a + !(a & 1);     /* the first even and odd states */
    if (b > e)
        sc_ctc_lse2_row(cur + e, src + e, src + e + d1, row + e, tmp, tmp + S,
                        (b - e + 1) / 2);
    if (b > o)
        sc_ctc_lse3_row(cur + o, src + o, src + o + d1, src + o + d2, skip + o + ds,
                        row + o, tmp, tmp + S, (b - o + 1) / 2);
}

/* The log-softmax of each of the T rows of z (T, C), in place, and the softmax into
 * prob (T, C), for the gradient; returns 0, or 1 when a row holds a NaN or an
 * infinity (then its max or its sum is not finite). */
static inline int sc_ctc_log_softmax(double* restrict z, double* restrict prob, int64_t T,
                                     int64_t C)
{
    int64_t t, k;
    for (t = 0; t < T; t++) {
        double* row = z + t * C;
        double* p = prob + t * C;
        /* the largest entry: four chains of compares (one waited on each in turn) */
        double m4[4] = {row[0], row[0], row[0], row[0]}, m, sum = 0.0;
        for (k = 0; k + 4 <= C; k += 4)
            for (int i = 0; i < 4; i++)
                m4[i] = row[k + i] > m4[i] ? row[k + i] : m4[i];
        for (; k < C; k++)
            m4[0] = row[k] > m4[0] ? row[k] : m4[0];
        m = m4[0] > m4[1] ? m4[0] : m4[1];
        m = m > m4[2] ? m : m4[2];
        m = m > m4[3] ? m : m4[3];
        for (k = 0; k < C; k++) {
            p[k] = sc_exp_neg(row[k] - m);
            sum += p[k];
        }
        if (!isfinite(m) || !isfinite(sum))
            return 1;
        double lse = m + log(sum), inv = 1.0 / sum;
        for (k = 0; k < C; k++) {
            row[k] -= lse;
            p[k] *= inv;
        }
    }
    return 0;
}

/* The gradient of the example's loss with respect to its logits, times scale, into
 * prob, which holds the softmax (T, C): scale * (softmax - posterior), the posterior
 * of class k at step t being the sum over the states s that emit it of
 * exp(alpha + beta - em - log p). */
static inline void sc_ctc_gradient(double* restrict prob, double* restrict share,
                                   const double* restrict alpha,
                                   const double* restrict beta,
                                   const double* restrict em,
                                   const int64_t* restrict ext, int64_t T, int64_t S,
                                   int64_t C, double log_p, double scale)
{
    int64_t t, s, k, lo, hi;
    for (t = 0; t < T; t++) {
        double* row = prob + t * C;
        const double* a = alpha + t * S;
        const double* b = beta + t * S;
        const double* e = em + t * S;
        /* outside the window alpha or beta is -inf and the share 0 (where log p is
         * finite) */
        sc_ctc_window(t, T, S, &lo, &hi);
        if (!isfinite(log_p)) {
            lo = 0;
            hi = S;
        }
        for (s = lo; s < hi; s++)
            share[s] = scale * sc_exp_neg(a[s] + b[s] - e[s] - log_p);
        for (k = 0; k < C; k++)
            row[k] *= scale;
        for (s = lo; s < hi; s++)
            row[ext[s]] -= share[s];
    }
}

/* em[t, s] = lp[t, l'_s]: each state's emission (T, S), from the log-softmax rows
 * lp (T, C). */
static inline void sc_ctc_emissions(double* restrict em, const double* restrict lp,
                                    const int64_t* restrict ext, int64_t T, int64_t S,
                                    int64_t C)
{
    int64_t t, s;
    for (t = 0; t < T; t++)
        for (s = 0; s < S; s++)
            em[t * S + s] = lp[t * C + ext[s]];
}

/* alpha and beta (T, S) of one example from its emissions em (T, S), with tmp (2S,)
 * for sc_ctc_lse_states; returns log p(l | x), -inf when no path reads l. */
static inline double sc_ctc_alpha_beta(double* restrict alpha, double* restrict beta,
                                       const double* restrict em,
                                       const double* restrict skip, double* restrict tmp,
                                       int64_t T, int64_t S)
{
    int64_t t, s, lo, hi;
    for (s = 0; s < S; s++)
        alpha[s] = -INFINITY;
    alpha[0] = em[0];
    if (S > 1)
        alpha[1] = em[1];
    for (t = 1; t < T; t++) {
        const double* prev = alpha + (t - 1) * S;
        double* cur = alpha + t * S;
        const double* row = em + t * S;
        sc_ctc_window(t, T, S, &lo, &hi);
        for (s = 0; s < lo; s++)
            cur[s] = -INFINITY;
        for (s = hi > lo ? hi : lo; s < S; s++)
            cur[s] = -INFINITY;
        if (lo == 0 && hi > 0)
            cur[0] = prev[0] + row[0];
        if (lo <= 1 && hi > 1)
            cur[1] = sc_lse3(prev[1], prev[0], -INFINITY) + row[1];
        sc_ctc_lse_states(cur, prev, skip, row, tmp, S, lo > 2 ? lo : 2, hi, -1, -2, 0);
    }
    double* last = beta + (T - 1) * S;
    for (s = 0; s < S; s++)
        last[s] = -INFINITY;
    last[S - 1] = em[(T - 1) * S + S - 1];
    if (S > 1)
        last[S - 2] = em[(T - 1) * S + S - 2];
    for (t = T - 2; t >= 0; t--) {
        const double* next = beta + (t + 1) * S;
        double* cur = beta + t * S;
        const double* row = em + t * S;
        sc_ctc_window(t, T, S, &lo, &hi);
        for (s = 0; s < lo; s++)
            cur[s] = -INFINITY;
        for (s = hi > lo ? hi : lo; s < S; s++)
            cur[s] = -INFINITY;
        if (hi == S && lo < S)
            cur[S - 1] = next[S - 1] + row[S - 1];
        if (S > 1 && hi >= S - 1 && lo <= S - 2)
            cur[S - 2] = sc_lse3(next[S - 2], next[S - 1], -INFINITY) + row[S - 2];
        sc_ctc_lse_states(cur, next, skip, row, tmp, S, lo, hi < S - 2 ? hi : S - 2, 1, 2, 2);
    }
    const double* end = alpha + (T - 1) * S;
    return S > 1 ? sc_lse3(end[S - 1], end[S - 2], -INFINITY) : end[0];
}

#endif
