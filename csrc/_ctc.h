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
 * on the step before only, so the loop over s is one vector pass, with sc_exp and
 * sc_log (_fastmath.h). A state no path reaches holds -inf exactly. The arrays are
 * restrict: no two overlap, which the loops need to vectorize.
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

/* log(exp(a) + exp(b) + exp(c)), -inf exactly when all three are -inf. Branch-free,
 * so that a loop over states vectorizes: the sum is in [1, 3] (its largest term is
 * exp(0)), where sc_log is exact to a couple of ulp. */
static inline double sc_lse3(double a, double b, double c)
{
    double m = a > b ? a : b;
    m = m > c ? m : c;
    double none = m == -INFINITY;
    double base = none ? 0.0 : m;
    double r = base + sc_log(sc_exp(a - base) + sc_exp(b - base) + sc_exp(c - base));
    return none ? -INFINITY : r;
}

/* The log-softmax of each of the T rows of z (T, C), in place; returns 0, or 1 when
 * a row holds a NaN or an infinity (then its max or its sum is not finite). */
static inline int sc_ctc_log_softmax(double* z, int64_t T, int64_t C)
{
    int64_t t, k;
    for (t = 0; t < T; t++) {
        double* row = z + t * C;
        double m = row[0], sum = 0.0;
        for (k = 1; k < C; k++)
            m = row[k] > m ? row[k] : m;
        for (k = 0; k < C; k++)
            sum += sc_exp(row[k] - m);
        if (!isfinite(m) || !isfinite(sum))
            return 1;
        double lse = m + log(sum);
        for (k = 0; k < C; k++)
            row[k] -= lse;
    }
    return 0;
}

/* The gradient of the example's loss with respect to its logits, times scale, into
 * lp's place: scale * (softmax - posterior), the posterior of class k at step t being
 * the sum over the states s that emit it of exp(alpha + beta - lp - log p). */
static inline void sc_ctc_gradient(double* restrict lp, double* restrict share,
                                   const double* restrict alpha,
                                   const double* restrict beta,
                                   const int64_t* restrict ext, int64_t T, int64_t S,
                                   int64_t C, double log_p, double scale)
{
    int64_t t, s, k, lo, hi;
    for (t = 0; t < T; t++) {
        double* row = lp + t * C;
        const double* a = alpha + t * S;
        const double* b = beta + t * S;
        /* share: each state's part, taken before the row is overwritten; outside the
         * window alpha or beta is -inf and the part 0 (where log p is finite) */
        sc_ctc_window(t, T, S, &lo, &hi);
        if (!isfinite(log_p)) {
            lo = 0;
            hi = S;
        }
        for (s = lo; s < hi; s++)
            share[s] = scale * sc_exp(a[s] + b[s] - row[ext[s]] - log_p);
        for (k = 0; k < C; k++)
            row[k] = scale * sc_exp(row[k]);
        for (s = lo; s < hi; s++)
            row[ext[s]] -= share[s];
    }
}

/* alpha and beta (T, S) of one example from its log-softmax rows lp (T, C); returns
 * log p(l | x), -inf when no path reads l. */
static inline double sc_ctc_alpha_beta(double* restrict alpha, double* restrict beta,
                                       const double* restrict lp,
                                       const int64_t* restrict ext,
                                       const double* restrict skip,
                                       int64_t T, int64_t S, int64_t C)
{
    int64_t t, s, lo, hi;
    for (s = 0; s < S; s++)
        alpha[s] = -INFINITY;
    alpha[0] = lp[ext[0]];
    if (S > 1)
        alpha[1] = lp[ext[1]];
    for (t = 1; t < T; t++) {
        const double* prev = alpha + (t - 1) * S;
        double* cur = alpha + t * S;
        const double* row = lp + t * C;
        sc_ctc_window(t, T, S, &lo, &hi);
        for (s = 0; s < lo; s++)
            cur[s] = -INFINITY;
        for (s = hi > lo ? hi : lo; s < S; s++)
            cur[s] = -INFINITY;
        if (lo == 0 && hi > 0)
            cur[0] = prev[0] + row[ext[0]];
        if (lo <= 1 && hi > 1)
            cur[1] = sc_lse3(prev[1], prev[0], -INFINITY) + row[ext[1]];
        for (s = lo > 2 ? lo : 2; s < hi; s++)
            cur[s] = sc_lse3(prev[s], prev[s - 1], prev[s - 2] + skip[s]) + row[ext[s]];
    }
    double* last = beta + (T - 1) * S;
    for (s = 0; s < S; s++)
        last[s] = -INFINITY;
    last[S - 1] = lp[(T - 1) * C + ext[S - 1]];
    if (S > 1)
        last[S - 2] = lp[(T - 1) * C + ext[S - 2]];
    for (t = T - 2; t >= 0; t--) {
        const double* next = beta + (t + 1) * S;
        double* cur = beta + t * S;
        const double* row = lp + t * C;
        sc_ctc_window(t, T, S, &lo, &hi);
        for (s = 0; s < lo; s++)
            cur[s] = -INFINITY;
        for (s = hi > lo ? hi : lo; s < S; s++)
            cur[s] = -INFINITY;
        if (hi == S && lo < S)
            cur[S - 1] = next[S - 1] + row[ext[S - 1]];
        if (S > 1 && hi >= S - 1 && lo <= S - 2)
            cur[S - 2] = sc_lse3(next[S - 2], next[S - 1], -INFINITY) + row[ext[S - 2]];
        for (s = (hi < S - 2 ? hi : S - 2) - 1; s >= lo; s--)
            cur[s] = sc_lse3(next[s], next[s + 1], next[s + 2] + skip[s + 2]) + row[ext[s]];
    }
    const double* end = alpha + (T - 1) * S;
    return S > 1 ? sc_lse3(end[S - 1], end[S - 2], -INFINITY) : end[0];
}

#endif
