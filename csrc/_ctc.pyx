# CTC loss and its gradient, compiled fast path (the NumPy twin, with the math, is
# seqcore/reference/ctc.py: the same name, the same arguments). Built once per kernel
# path, as the cells are.
#
# Legend: T steps, B batch, C classes (the blank included), L a target's length,
# S = 2L + 1 its extended sequence (blank, l_1, blank, ..., l_L, blank).
#
# The examples are independent: the threads take them in turn (prange over b), each
# with a workspace of its own for the log-softmax rows and alpha and beta, in double
# whatever the logits' dtype. seqcore.nn.losses.ctc_loss checks every argument first.
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, isinf
from libc.stdint cimport int64_t

import numpy as np

from _packed cimport sc_threads

cdef extern from *:
    void prefetch "__builtin_prefetch" (const void* p) noexcept nogil

cdef extern from "_ctc.h" nogil:
    int sc_ctc_log_softmax(double* z, double* prob, int64_t T, int64_t C)
    void sc_ctc_emissions(double* em, const double* lp, const int64_t* ext,
                          int64_t T, int64_t S, int64_t C)
    double sc_ctc_alpha_beta(double* alpha, double* beta, const double* em,
                             const double* skip, double* tmp, int64_t T, int64_t S)
    void sc_ctc_gradient(double* prob, double* share, const double* alpha, const double* beta,
                         const double* em, const int64_t* ext, int64_t T, int64_t S,
                         int64_t C, double log_p, double scale)

include "_load.pxi"


cdef void one_example(floating[:, :, ::1] dlogits, double[::1] losses,
                      const floating[:, :, ::1] logits, const int64_t[::1] targets,
                      int64_t start, int64_t L, int64_t Tb, Py_ssize_t b, int64_t blank,
                      double scale, bint zero_infinity, double* work,
                      int64_t* ext, double* skip) noexcept nogil:
    """Example b: its loss into losses[b], scale * its gradient into dlogits[:Tb, b]."""
    cdef int64_t C = logits.shape[2], S = 2 * L + 1, t, s, k
    cdef double* lp = work                        # (Tb, C) log-softmax rows
    cdef double* prob = lp + Tb * C               # (Tb, C) softmax rows, then the gradient
    cdef double* alpha = prob + Tb * C            # (Tb, S)
    cdef double* beta = alpha + Tb * S            # (Tb, S)
    cdef double* em = beta + Tb * S               # (Tb, S) each state's emission
    cdef double* share = em + Tb * S              # (2S,) the recursions' rows, then
                                                  # the states' shares of one step
    cdef double log_p
    for s in range(S):                            # l', and where a path may skip a blank
        ext[s] = targets[start + s // 2] if s % 2 else blank
        skip[s] = 0.0 if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] else -INFINITY
    for t in range(Tb):                           # rows B * C apart: fetched ahead
        if t + 2 < Tb:
            prefetch(&logits[t + 2, b, 0])
            prefetch(&logits[t + 2, b, C - 1])
        for k in range(C):
            lp[t * C + k] = logits[t, b, k]
    if sc_ctc_log_softmax(lp, prob, Tb, C):
        losses[b] = INFINITY + (-INFINITY)        # NaN: a row holds NaN or infinity
        return
    sc_ctc_emissions(em, lp, ext, Tb, S, C)
    log_p = sc_ctc_alpha_beta(alpha, beta, em, skip, share, Tb, S)
    if isinf(log_p):                              # no alignment reads the target
        losses[b] = 0.0 if zero_infinity else INFINITY
        for t in range(Tb):
            for k in range(C):
                dlogits[t, b, k] = 0.0 if zero_infinity else INFINITY + (-INFINITY)
        return
    losses[b] = -log_p
    sc_ctc_gradient(prob, share, alpha, beta, em, ext, Tb, S, C, log_p, scale)
    for t in range(Tb):
        for k in range(C):
            dlogits[t, b, k] = <floating>prob[t * C + k]


def ctc_work_len(Py_ssize_t T, Py_ssize_t C, Py_ssize_t S):
    """Doubles of one thread's workspace: log-softmax and softmax rows (T, C), alpha,
    beta and the emissions (T, S), two rows (S,) for the recursions and the gradient."""
    return 2 * T * C + 3 * T * S + 2 * S


def ctc_loss(floating[:, :, ::1] dlogits,          # (T, B, C) out
             double[::1] losses,                   # (B,) out
             const floating[:, :, ::1] logits,     # (T, B, C)
             const int64_t[::1] targets,           # (N,) labels, one example after another
             const int64_t[::1] target_starts,     # (B,)
             const int64_t[::1] target_lengths,    # (B,)
             const int64_t[::1] input_lengths,     # (B,) each in [1, T]
             int64_t blank,
             const double[::1] scale,              # (B,) each example's gradient weight
             bint zero_infinity,
             int threads):
    """The loss of every example, and the gradient of sum_b scale[b] * loss[b]; see
    seqcore.reference.ctc.ctc_loss. A row of logits with NaN or infinity gives that
    example a NaN loss (the caller refuses it)."""
    cdef Py_ssize_t T = logits.shape[0], B = logits.shape[1], C = logits.shape[2]
    cdef Py_ssize_t b, q, Lmax = 0
    for b in range(B):
        if target_lengths[b] > Lmax:
            Lmax = target_lengths[b]
    cdef Py_ssize_t S = 2 * Lmax + 1
    cdef Py_ssize_t nq = sc_threads(threads)
    if nq > B:
        nq = B
    if nq < 1:
        nq = 1
    cdef Py_ssize_t per = ctc_work_len(T, C, S)
    cdef double[::1] work = np.empty(nq * per, np.float64)
    cdef int64_t[::1] ext = np.empty(nq * S, np.int64)
    cdef double[::1] skip = np.empty(nq * S, np.float64)
    dlogits[...] = 0
    with nogil:
        if nq > 1:
            for b in prange(B, num_threads=nq, schedule="dynamic"):
                q = threadid()
                one_example(dlogits, losses, logits, targets, target_starts[b],
                            target_lengths[b], input_lengths[b], b, blank, scale[b],
                            zero_infinity, &work[q * per], &ext[q * S], &skip[q * S])
        else:
            for b in range(B):
                one_example(dlogits, losses, logits, targets, target_starts[b],
                            target_lengths[b], input_lengths[b], b, blank, scale[b],
                            zero_infinity, &work[0], &ext[0], &skip[0])
