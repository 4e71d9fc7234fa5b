# Vanilla RNN cell, compiled fast path (the NumPy reference is seqcore/reference.py).
#
# Legend: T time steps, B batch, D input features, H hidden units.
# W = [W_aa | W_ax] is (H, H + D): columns 0:H multiply a<t-1>, columns H: multiply x<t>.
#
#   a<t> = g(W [a<t-1>, x<t>] + b),   g = tanh or relu
#
# The packing, the products, the steps' loops and their threads are the shared driver's
# (csrc/_driver.pxi): forward, W_ax x<t> + b for all T*B rows at once, then per step
# a[t+1] += a[t] @ W_aa^T and the activation pass; backward, per step the pass that
# gives dz = dC/d(pre-activation) and da += dz @ W_aa, then dW, dx, db per chunk.
import numpy as np

from libc.stdint cimport int64_t
from cython cimport floating

from _fastmath cimport tanh

include "_driver.pxi"


cdef void units_step(floating* a_next, const floating* a_prev, const floating* x,
                     const floating* W, const signed char* Q, const floating* s,
                     const floating* b, Py_ssize_t u0, Py_ssize_t u1,
                     Py_ssize_t D, Py_ssize_t H, bint relu) noexcept nogil:
    """Units [u0, u1) of one step of a single sequence (T = B = 1):
    a_next[j] = g(W[j] @ [a_prev, x] + b[j]), straight from the rows of W (H, H+D), or
    of its int8 Q and scales s when Q is not NULL (row_dot_w)."""
    cdef Py_ssize_t j, n = u1 - u0
    cdef floating zero = 0, v
    cdef floating* z = a_next + u0
    if n <= 0:
        return
    row_dot_w(z, a_prev, H, x, D, W, Q, s, u0, 0, H + D, n, False)
    if relu:
        for j in range(n):
            v = z[j] + b[u0 + j]
            z[j] = v if v > zero else zero
    else:
        for j in range(n):
            z[j] = tanh(z[j] + b[u0 + j])


cdef void step_units(floating** v, const Recurrence* r, Py_ssize_t ph, Py_ssize_t u0,
                     Py_ssize_t u1) noexcept nogil:
    """One token's step, units [u0, u1): a (2, H) = v[STATE_IN]."""
    units_step(v[STATE_IN] + r.H, v[STATE_IN], v[X], v[W_], <signed char*>v[QW], v[QSCALE],
               v[BIAS], u0, u1, r.D, r.H, r.option)


cdef void activate_rows(floating* a_t, const int64_t* lengths, Py_ssize_t t, Py_ssize_t B,
                        Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0, Py_ssize_t u1,
                        Py_ssize_t H, bint relu) noexcept nogil:
    """Step t, rows [b0, b1), units [u0, u1): a<t+1> = g(z) in place; a_t (B, H) is a[t],
    its next B rows a[t+1], which hold z (the pre-activations) on entry."""
    cdef Py_ssize_t i, j
    cdef floating zero = 0
    cdef floating* z
    cdef const floating* a_prev
    for i in range(b0, b1):
        z = a_t + (B + i) * H
        a_prev = a_t + i * H
        if t >= lengths[i]:
            for j in range(u0, u1):         # inactive: the state is copied
                z[j] = a_prev[j]
        elif relu:
            for j in range(u0, u1):
                z[j] = z[j] if z[j] > zero else zero
        else:
            for j in range(u0, u1):
                z[j] = tanh(z[j])


cdef void forward_rows(floating** v, const Recurrence* r, int ph, Py_ssize_t t,
                       Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0, Py_ssize_t u1,
                       Py_ssize_t q) noexcept nogil:
    activate_rows(v[STATE] + t * r.B * r.H, r.lengths, t, r.B, b0, b1, u0, u1, r.H,
                  r.option)


def rnn_forward(floating[:, :, ::1] a,          # (T+1, B, H) out: states, a[0] = a0
                const floating[:, :, ::1] x,    # (T, B, D)
                const floating[:, ::1] a0,      # (B, H)
                const floating[:, ::1] W,       # (H, H+D)
                const floating[::1] b,          # (H,)
                const int64_t[::1] lengths,     # (B,) 1 <= lengths[i] <= T
                bint relu,
                int threads):                   # the core's threads (seqcore.get_num_threads)
    """a<t> = g(W [a<t-1>, x<t>] + b), g = tanh (or relu); inactive steps keep the state."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = a0.shape[1]
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(T, B, D, H, 1, &lengths[0], relu, 1)
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    v[X], v[W_], v[BIAS] = <floating*>&x[0, 0, 0], <floating*>&W[0, 0], <floating*>&b[0]
    v[STATE0] = <floating*>&a0[0, 0]
    v[STATE] = v[STATE_IN] = &a[0, 0, 0]
    v[QW] = v[QSCALE] = NULL       # the float weights
    if T == 1 and B == 1:          # one step of one sequence (generation): no workspace
        with nogil:
            one_token(v, &r, threads)
        return
    v[PROJ] = &a[1, 0, 0]          # a[1:] = W_ax x<t> + b, then the steps add
    # a[t+1] (B, H) += a[t] (B, H) @ W_aa^T
    add_product(&r, step_product_of(STATE, B * H, B * H, H, STATE, 0, B * H, H, H, H, 0,
                                    True))
    forward(v, &r, threads)


cdef void gradient_rows(floating* dz_t, floating* da, floating* da_sq_t, const floating* dy_t,
                        const floating* a_next, const int64_t* lengths, Py_ssize_t t,
                        Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H, bint relu) noexcept nogil:
    """Step t (reversed), rows [b0, b1): dz_t (B, H) = dC/dz<t>, da_sq_t (B,) =
    ||dC/da<t+1>||^2, and da (B, H), the running dC/da<t+1>, consumed (zeroed: the
    product then adds dz_t @ W_aa); dy_t (B, H); a_next (B, H) = a[t+1]."""
    cdef Py_ssize_t i, j
    cdef floating zero = 0, one = 1, sq
    cdef floating* dzr
    cdef floating* dar
    cdef const floating* dyr
    cdef const floating* ar
    for i in range(b0, b1):
        dzr = dz_t + i * H
        if t >= lengths[i]:
            # Inactive: the state was copied, so dC/da passes through; dy ignored.
            da_sq_t[i] = zero
            for j in range(H):
                dzr[j] = zero
            continue
        dar = da + i * H
        dyr = dy_t + i * H
        ar = a_next + i * H
        for j in range(H):
            dar[j] = dar[j] + dyr[j]            # output at t and all later steps
        sq = zero
        for j in range(H):
            sq = sq + dar[j] * dar[j]
        da_sq_t[i] = sq
        if relu:
            for j in range(H):                  # backprop through relu
                dzr[j] = dar[j] if ar[j] > zero else zero
                dar[j] = zero                   # consumed; the product refills it
        else:
            for j in range(H):                  # backprop through tanh
                dzr[j] = dar[j] * (one - ar[j] * ar[j])
                dar[j] = zero


cdef void backward_rows(floating** v, const Recurrence* r, int ph, Py_ssize_t t,
                        Py_ssize_t t0, Py_ssize_t b0, Py_ssize_t b1,
                        Py_ssize_t q) noexcept nogil:
    cdef Py_ssize_t BH = r.B * r.H
    gradient_rows(v[DZ] + (t - t0) * BH, v[STATE_IN], v[DA_SQ] + t * r.B, v[DY] + t * BH,
                  v[STATE] + (t + 1) * BH, r.lengths, t, b0, b1, r.H, r.option)


cdef void backward_chunk(floating** v, const Recurrence* r, Py_ssize_t t0,
                         Py_ssize_t t1) noexcept nogil:
    """(The RNN has no gradients beyond W's and b's.)"""
    pass


def rnn_backward(floating[:, :, ::1] dx,        # (T, B, D) out
                 floating[:, ::1] da0,          # (B, H) out: dC/da<0>
                 floating[:, ::1] dW,           # (H, H+D) accumulate
                 floating[::1] db,              # (H,) accumulate
                 floating[:, ::1] da_sq,        # (T, B) out: ||dC/da<t+1>||^2
                 const floating[:, :, ::1] dy,  # (T, B, H)
                 const floating[:, ::1] da_T,   # (B, H) dC/da<T>
                 const floating[:, :, ::1] x,   # (T, B, D)
                 const floating[:, :, ::1] a,   # (T+1, B, H) states from rnn_forward
                 const floating[:, ::1] W,      # (H, H+D)
                 const int64_t[::1] lengths,    # (B,)
                 bint relu,
                 int threads,                   # the core's threads
                 floating[:, :, ::1] dz_work=None):  # (C, B, H) scratch, or None
    """Backpropagation through time for rnn_forward."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = a.shape[2]
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(T, B, D, H, 1, &lengths[0], relu, 1)
    dtype = np.float32 if floating is float else np.float64
    # dz: dC/d(pre-activations) of the steps of one chunk (see _scratch.pxi)
    cdef floating[:, :, ::1] dz = dz_scratch(dz_work, T, B, H, dtype)
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    v[X], v[W_], v[STATE] = <floating*>&x[0, 0, 0], <floating*>&W[0, 0], <floating*>&a[0, 0, 0]
    v[DX], v[DW], v[DB], v[DZ] = &dx[0, 0, 0], &dW[0, 0], &db[0], &dz[0, 0, 0]
    v[DY], v[DA_SQ] = <floating*>&dy[0, 0, 0], &da_sq[0, 0]
    # da0 carries dC/da<t+1> backwards through the loop and ends as dC/da<0>.
    v[STATE0], v[STATE_IN] = <floating*>&da_T[0, 0], &da0[0, 0]
    # da (B, H) += dz[t] (B, H) @ W_aa: active rows were zeroed by the gradient pass,
    # inactive rows have dz = 0, so they keep their gradient unchanged.
    add_product(&r, step_product_of(STATE_IN, 0, 0, H, DZ, 0, B * H, H, H, H, 0, True))
    # dW_aa (H, H) += dz^T (H, rows) @ a[t0:t1] (rows, H)
    add_weight_grad(&r, weight_grad_of(DZ, 0, H, STATE, 0, H))
    backward(v, &r, dz.shape[0], step_region_threads(threads, T, B, H, 1), threads)


# ------------------------------------------------------------ one token (generation)

cdef enum:
    NUM_STATES = 1              # a


cdef void step_layer(floating** ws, const floating* x, const floating* a0, const floating* unused,
                     const floating** prm, Py_ssize_t D, Py_ssize_t H, bint relu,
                     int threads) noexcept nogil:
    """One layer of Stepper.step: ws = (a,), prm = (W, b, -, Q, scale)."""
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(1, 1, D, H, 1, NULL, relu, 1)
    v[X], v[W_], v[BIAS] = <floating*>x, <floating*>prm[0], <floating*>prm[1]
    v[QW], v[QSCALE] = <floating*>prm[3], <floating*>prm[4]
    v[STATE0], v[STATE_IN] = <floating*>a0, ws[0]
    one_token(v, &r, threads)


include "_stepper.pxi"
