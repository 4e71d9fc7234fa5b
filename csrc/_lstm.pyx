# LSTM kernels, compiled fast path (the oracle is seqcore/reference.py: lstm_forward/lstm_backward).
#
# Legend: T time steps, B batch, D input features, H hidden units; the 4H gate
# axis holds the row blocks (u, f, c, o) of W and b.
#
#   Γu = σ(W_u [a<t-1>, x<t>] + b_u + p_u * c<t-1>)    Γf likewise with f
#   c̃  = tanh(W_c [a<t-1>, x<t>] + b_c)
#   c<t> = Γu * c̃ + Γf * c<t-1>
#   Γo = σ(W_o [a<t-1>, x<t>] + b_o + p_o * c<t>),    a<t> = Γo * tanh(c<t>)
#
# The packing, the products, the steps' loops and their threads are the shared driver's
# (csrc/_driver.pxi): forward, W[:, H:] x<t> for all T*B rows into `gates`, then per
# step gates[t] += a[t] @ W[:, :H]^T and one fused pass that adds b, applies the gate
# nonlinearities in place and writes c[t+1], a[t+1]; backward, per step one fused pass
# giving dz[t] = dC/d(pre-activations) and da += dz[t] @ W[:, :H], then per chunk dW,
# db, dx and here dp. Inactive steps (t >= lengths[b]) copy the state forward, have
# gates = 0 and dz = 0.
cimport cython
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memset

import numpy as np

from _fastmath cimport sigmoid, tanh

include "_driver.pxi"

cdef enum:
    C_ = CELL                   # (T+1, B, H) c, the memory cells
    GATES = CELL + 1            # (T, B, 4H) [Γu, Γf, c̃, Γo]
    PEEP = CELL + 2             # (3, H) p, or NULL without peepholes (backward: zeros)
    TOT = CELL + 3              # (nt, 2, H) each thread's total da, dc of a row
    DC_SQ = CELL + 4            # (T, B) ||dC/dc<t+1>||^2
    DP = CELL + 5               # (3, H) dp


# The element-wise passes read and write 6-10 rows at once; without `restrict` gcc
# would need more run-time overlap checks than it allows and leave them scalar.
# Cython cannot spell `restrict`, so the pointer types carry it in their C names,
# and the helpers over them infer their scalar locals (float or double) from the
# loaded values. They must then never receive overlapping rows.
cdef extern from *:
    ctypedef float* float_r "float * __restrict__"
    ctypedef double* double_r "double * __restrict__"

ctypedef fused real_r:
    float_r
    double_r


cdef inline floating one_like(floating x) noexcept nogil:
    """1 in the type of x (a Cython literal 1 next to a float becomes the double 1.0)."""
    return 1


cdef inline floating sum_sq(const floating* v, Py_ssize_t n) noexcept nogil:
    """sum(v * v) with 4 independent accumulators (a plain FP reduction is neither
    vectorized nor pipelined without -ffast-math)."""
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t j = 0
    while j + 4 <= n:
        s0 += v[j] * v[j]
        s1 += v[j + 1] * v[j + 1]
        s2 += v[j + 2] * v[j + 2]
        s3 += v[j + 3] * v[j + 3]
        j += 4
    while j < n:
        s0 += v[j] * v[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


@cython.infer_types(True)
cdef inline void forward_cell(real_r g, real_r c_next, real_r c_prev, real_r b, real_r p,
                              bint peep, Py_ssize_t j, Py_ssize_t H) noexcept nogil:
    """Unit j's Γu, Γf, c̃ (into g) and c<t> (into c_next); p is read only when peep (a
    constant where this is inlined, so the loops stay branch-free and vectorized)."""
    gamma_u = sigmoid(g[j] + b[j] + (p[j] * c_prev[j] if peep else 0))
    gamma_f = sigmoid(g[H + j] + b[H + j] + (p[H + j] * c_prev[j] if peep else 0))
    c_tilde = tanh(g[2 * H + j] + b[2 * H + j])
    g[j] = gamma_u
    g[H + j] = gamma_f
    g[2 * H + j] = c_tilde
    c_next[j] = gamma_u * c_tilde + gamma_f * c_prev[j]


@cython.infer_types(True)
cdef inline void forward_out(real_r g, real_r a_next, real_r c_t, real_r b, real_r p,
                             bint peep, Py_ssize_t j, Py_ssize_t H) noexcept nogil:
    """Unit j's Γo (into g) and a<t> (into a_next), from c_t = c<t>."""
    gamma_o = sigmoid(g[3 * H + j] + b[3 * H + j] + (p[2 * H + j] * c_t[j] if peep else 0))
    g[3 * H + j] = gamma_o
    a_next[j] = gamma_o * tanh(c_t[j])


cdef void forward_step(real_r g, real_r c_next, real_r a_next, real_r c_prev,
                       real_r b, real_r p, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """Gate pass of units [0, n) of one active (step, sequence); the gate blocks are H
    apart. g (4 blocks): the pre-activations without bias in, [gamma_u, gamma_f,
    c_tilde, gamma_o] out; b (4 blocks); p (3 blocks) or NULL without peepholes;
    c_prev = c<t-1>; out c_next, a_next = c<t>, a<t>.

    Two loops, c<t> first, then Γo and a<t>: one loop over all of a unit keeps more
    vectors live than there are registers, and spills. The small LSTM's gate passes
    (64 steps x 32 rows x 128 units, one thread, this loop in a C harness) took 0.81
    -> 0.59 ms on avx512, 1.21 -> 0.93 on avx2, 3.3 -> 2.5 on generic."""
    cdef Py_ssize_t j
    if p != NULL:
        for j in range(n):
            forward_cell(g, c_next, c_prev, b, p, True, j, H)
        for j in range(n):
            forward_out(g, a_next, c_next, b, p, True, j, H)
    else:
        for j in range(n):
            forward_cell(g, c_next, c_prev, b, p, False, j, H)
        for j in range(n):
            forward_out(g, a_next, c_next, b, p, False, j, H)


cdef void units_step(floating* g, floating* c_next, floating* a_next, const floating* c_prev,
                     const floating* a_prev, const floating* x, const floating* W,
                     const signed char* Q, const floating* s,
                     const floating* b, const floating* p, Py_ssize_t u0, Py_ssize_t u1,
                     Py_ssize_t D, Py_ssize_t H) noexcept nogil:
    """Units [u0, u1) of one step of a single sequence (T = B = 1): the four gate rows
    of each unit, W[gate, :] @ [a<t-1>, x<t>], then their gate pass. Arguments as in
    forward_step; a_prev (H), x (D); W (4H, H+D), or its int8 Q and scales s when Q
    is not NULL (row_dot_w)."""
    cdef Py_ssize_t gate, row, n = u1 - u0
    if n <= 0:
        return
    for gate in range(4):
        row = gate * H + u0
        row_dot_w(g + row, a_prev, H, x, D, W, Q, s, row, 0, H + D, n, False)
    forward_step(g + u0, c_next + u0, a_next + u0, <floating*>c_prev + u0, <floating*>b + u0,
                 <floating*>p + u0 if p != NULL else NULL, n, H)


cdef void step_units(floating** v, const Recurrence* r, Py_ssize_t ph, Py_ssize_t u0,
                     Py_ssize_t u1) noexcept nogil:
    """One token's step, units [u0, u1): a, c (2, H) = v[STATE_IN], v[STATE_IN + 1];
    g (4H) = v[GATES]."""
    cdef floating* a = v[STATE_IN]
    cdef floating* c = v[STATE_IN + 1]
    units_step(v[GATES], c + r.H, a + r.H, c, a, v[X], v[W_], <signed char*>v[QW],
               v[QSCALE], v[BIAS], v[PEEP], u0, u1, r.D, r.H)


@cython.infer_types(True)
cdef void backward_step(real_r dz, real_r da, real_r dc, real_r da_tot, real_r dc_tot,
                        real_r dy, real_r g, real_r c_prev, real_r c_t, real_r p,
                        Py_ssize_t H) noexcept nogil:
    """Chain rule through one active (step, sequence); vectors of H units except
    dz, g (4H) and p (3H). In: da, dc = dC/da<t>, dC/dc<t> from later steps, dy the
    output's; g the gates; p the peepholes (zeros without). Out: dz (4H) = dC/dz<t>,
    w.r.t. the gates' pre-activations; dc = dC/dc<t-1> through the cell and
    peepholes; da = 0 (the GEMM then adds dz @ W[:, :H]); da_tot, dc_tot = the
    total dC/da<t>, dC/dc<t> (for da_sq, dc_sq)."""
    cdef Py_ssize_t j
    one = one_like(g[0])
    for j in range(H):
        gamma_u = g[j]
        gamma_f = g[H + j]
        c_tilde = g[2 * H + j]
        gamma_o = g[3 * H + j]
        da_j = da[j] + dy[j]
        tanh_c = tanh(c_t[j])
        # a<t> = gamma_o * tanh(c<t>); every local is assigned once, or Cython's
        # type inference may widen it to double in the float version
        dz_o = da_j * tanh_c * gamma_o * (one - gamma_o)             # backprop through sigma
        dc_j = (dc[j] + da_j * gamma_o * (one - tanh_c * tanh_c)     # backprop through tanh
                + dz_o * p[2 * H + j])                               # c<t> peeks into gamma_o
        # c<t> = gamma_u * c_tilde + gamma_f * c<t-1>
        dz_u = dc_j * c_tilde * gamma_u * (one - gamma_u)
        dz_f = dc_j * c_prev[j] * gamma_f * (one - gamma_f)
        dz[j] = dz_u
        dz[H + j] = dz_f
        dz[2 * H + j] = dc_j * gamma_u * (one - c_tilde * c_tilde)
        dz[3 * H + j] = dz_o
        dc[j] = dc_j * gamma_f + dz_u * p[j] + dz_f * p[H + j]       # c<t-1> also peeks into u, f
        da[j] = 0
        da_tot[j] = da_j
        dc_tot[j] = dc_j


cdef void gate_rows(floating* g, floating* c_t, floating* a_t, floating* b, floating* p,
                    const int64_t* lengths, Py_ssize_t t, Py_ssize_t B, Py_ssize_t b0,
                    Py_ssize_t b1, Py_ssize_t u0, Py_ssize_t u1, Py_ssize_t H) noexcept nogil:
    """The gate pass of step t for sequences [b0, b1), units [u0, u1) (see forward_step).
    g (B, 4H): gates[t]; c_t, a_t (B, H): c[t], a[t], whose next B rows are c[t+1],
    a[t+1]."""
    cdef Py_ssize_t bi, k, G = 4 * H, n = u1 - u0
    cdef floating* c_next = c_t + B * H
    cdef floating* a_next = a_t + B * H
    for bi in range(b0, b1):
        if t < lengths[bi]:
            forward_step(g + bi * G + u0, c_next + bi * H + u0, a_next + bi * H + u0,
                         c_t + bi * H + u0, b + u0, p + u0 if p != NULL else NULL, n, H)
        else:                                        # inactive: the state is copied
            for k in range(4):
                memset(g + bi * G + k * H + u0, 0, n * sizeof(floating))
            memcpy(c_next + bi * H + u0, c_t + bi * H + u0, n * sizeof(floating))
            memcpy(a_next + bi * H + u0, a_t + bi * H + u0, n * sizeof(floating))


cdef void forward_rows(floating** v, const Recurrence* r, int ph, Py_ssize_t t,
                       Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0, Py_ssize_t u1,
                       Py_ssize_t q) noexcept nogil:
    cdef Py_ssize_t BH = r.B * r.H
    gate_rows(v[GATES] + t * 4 * BH, v[C_] + t * BH, v[STATE] + t * BH, v[BIAS], v[PEEP],
              r.lengths, t, r.B, b0, b1, u0, u1, r.H)


cdef void gradient_rows(floating* dz, floating* da, floating* dc, floating* tot,
                        floating* da_sq, floating* dc_sq, const floating* dy,
                        const floating* g, const floating* c_t, floating* p,
                        const int64_t* lengths, Py_ssize_t t, Py_ssize_t B, Py_ssize_t b0,
                        Py_ssize_t b1, Py_ssize_t H) noexcept nogil:
    """The gate pass of step t's backward for sequences [b0, b1) (see backward_step).
    At step t: dz, g (B, 4H); dy (B, H); da_sq, dc_sq (B,). da, dc (B, H): the running
    gradients; tot (2, H): scratch of the calling thread; c_t (B, H): c[t], whose next
    B rows are c[t+1]."""
    cdef Py_ssize_t bi, G = 4 * H
    for bi in range(b0, b1):
        if t < lengths[bi]:
            backward_step(dz + bi * G, da + bi * H, dc + bi * H, tot, tot + H,
                          <floating*>dy + bi * H, <floating*>g + bi * G,
                          <floating*>c_t + bi * H, <floating*>c_t + (B + bi) * H, p, H)
            da_sq[bi] = sum_sq(tot, H)
            dc_sq[bi] = sum_sq(tot + H, H)
        else:                                        # inactive: da, dc pass through
            memset(dz + bi * G, 0, G * sizeof(floating))
            da_sq[bi] = 0
            dc_sq[bi] = 0


cdef void backward_rows(floating** v, const Recurrence* r, int ph, Py_ssize_t t,
                        Py_ssize_t t0, Py_ssize_t b0, Py_ssize_t b1,
                        Py_ssize_t q) noexcept nogil:
    cdef Py_ssize_t BH = r.B * r.H
    gradient_rows(v[DZ] + (t - t0) * 4 * BH, v[STATE_IN], v[STATE_IN + 1],
                  v[TOT] + q * 2 * r.H, v[DA_SQ] + t * r.B, v[DC_SQ] + t * r.B,
                  v[DY] + t * BH, v[GATES] + t * 4 * BH, v[C_] + t * BH, v[PEEP], r.lengths,
                  t, r.B, b0, b1, r.H)


cdef inline void accumulate_prod(real_r out, real_r u, real_r v, Py_ssize_t n) noexcept nogil:
    """out (n) += u (n) * v (n)"""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] += u[j] * v[j]


cdef void backward_chunk(floating** v, const Recurrence* r, Py_ssize_t t0,
                         Py_ssize_t t1) noexcept nogil:
    """With peepholes, dp[0] += sum dz_u * c<t-1>, dp[1] += sum dz_f * c<t-1>,
    dp[2] += sum dz_o * c<t> over the chunk's rows."""
    cdef Py_ssize_t i, H = r.H, G = 4 * r.H
    cdef floating* dz_r
    cdef floating* c_r
    cdef floating* dp = v[DP]
    if not r.option:
        return
    for i in range((t1 - t0) * r.B):
        dz_r = v[DZ] + i * G
        c_r = v[C_] + (t0 * r.B + i) * H            # c<t-1>; c<t> is B rows later
        accumulate_prod(dp, dz_r, c_r, H)
        accumulate_prod(dp + H, dz_r + H, c_r, H)
        accumulate_prod(dp + 2 * H, dz_r + 3 * H, c_r + r.B * H, H)


def lstm_forward(floating[:, :, ::1] a,              # (T+1, B, H) out: states
                 floating[:, :, ::1] c,              # (T+1, B, H) out: memory cells
                 floating[:, :, ::1] gates,          # (T, B, 4H) out: [gamma_u, gamma_f, c_tilde, gamma_o]
                 const floating[:, :, ::1] x,        # (T, B, D)
                 const floating[:, ::1] a0,          # (B, H)
                 const floating[:, ::1] c0,          # (B, H)
                 const floating[:, ::1] W,           # (4H, H+D) = [W_aa | W_ax]
                 const floating[::1] b,              # (4H,)
                 const floating[:, ::1] p,           # (3, H) = [p_u; p_f; p_o]
                 const int64_t[::1] lengths,         # (B,)
                 bint peephole,
                 int threads):                       # the core's threads (seqcore.get_num_threads)
    """LSTM forward through time; see seqcore.reference.lstm_forward."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = a0.shape[1]
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(T, B, D, H, 4, &lengths[0], peephole, 2)
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    v[X], v[W_], v[BIAS] = <floating*>&x[0, 0, 0], <floating*>&W[0, 0], <floating*>&b[0]
    v[PEEP] = <floating*>&p[0, 0] if peephole else NULL   # NULL: no peepholes
    v[STATE0], v[STATE0 + 1] = <floating*>&a0[0, 0], <floating*>&c0[0, 0]
    v[STATE] = v[STATE_IN] = &a[0, 0, 0]
    v[C_] = v[STATE_IN + 1] = &c[0, 0, 0]
    v[GATES] = v[PROJ] = &gates[0, 0, 0]
    v[QW] = v[QSCALE] = NULL       # the float weights
    if T == 1 and B == 1:          # one step of one sequence (generation): no workspace
        with nogil:
            one_token(v, &r, threads)
        return
    r.fold_bias = False            # the gate pass adds b
    # gates[t] (B, 4H) += a[t] (B, H) @ W[:, :H]^T
    add_product(&r, step_product_of(GATES, 0, 4 * B * H, 4 * H, STATE, 0, B * H, H, 4 * H,
                                    H, 0, True))
    forward(v, &r, threads)


def lstm_backward(floating[:, :, ::1] dx,            # (T, B, D) out
                  floating[:, ::1] da0,              # (B, H) out
                  floating[:, ::1] dc0,              # (B, H) out
                  floating[:, ::1] dW,               # (4H, H+D) accumulate
                  floating[::1] db,                  # (4H,) accumulate
                  floating[:, ::1] dp,               # (3, H) accumulate, only when peephole
                  floating[:, ::1] da_sq,            # (T, B) out: ||dC/da<t+1>||^2
                  floating[:, ::1] dc_sq,            # (T, B) out: ||dC/dc<t+1>||^2
                  const floating[:, :, ::1] dy,      # (T, B, H)
                  const floating[:, ::1] da_T,       # (B, H)
                  const floating[:, ::1] dc_T,       # (B, H)
                  const floating[:, :, ::1] x,       # (T, B, D)
                  const floating[:, :, ::1] a,       # (T+1, B, H)
                  const floating[:, :, ::1] c,       # (T+1, B, H)
                  const floating[:, :, ::1] gates,   # (T, B, 4H)
                  const floating[:, ::1] W,          # (4H, H+D)
                  const floating[:, ::1] p,          # (3, H)
                  const int64_t[::1] lengths,        # (B,)
                  bint peephole,
                  int threads,                       # the core's threads
                  floating[:, :, ::1] dz_work=None):  # (C, B, 4H) scratch, or None
    """Backpropagation through time for lstm_forward; see seqcore.reference.lstm_backward."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = a.shape[2]
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(T, B, D, H, 4, &lengths[0], peephole, 2)
    dtype = np.float32 if floating is float else np.float64
    # dz: dC/d(pre-activations) of the steps of one chunk (see _scratch.pxi)
    cdef floating[:, :, ::1] dz = dz_scratch(dz_work, T, B, 4 * H, dtype)
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    # threads of the steps' one parallel region (or 1: step by step; always for a
    # single step of a single row, whose weights are not packed)
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, 4)
    cdef floating[:, :, ::1] tot = np.empty((nt, 2, H), dtype=dtype)  # total da, dc of a row
    cdef floating[:, ::1] p_zero = np.zeros((3, H), dtype=dtype)     # p without peepholes
    v[X], v[W_], v[STATE] = <floating*>&x[0, 0, 0], <floating*>&W[0, 0], <floating*>&a[0, 0, 0]
    v[DX], v[DW], v[DB], v[DZ] = &dx[0, 0, 0], &dW[0, 0], &db[0], &dz[0, 0, 0]
    v[DY], v[DA_SQ], v[DC_SQ] = <floating*>&dy[0, 0, 0], &da_sq[0, 0], &dc_sq[0, 0]
    v[C_], v[GATES] = <floating*>&c[0, 0, 0], <floating*>&gates[0, 0, 0]
    v[PEEP] = <floating*>&p[0, 0] if peephole else &p_zero[0, 0]
    v[TOT], v[DP] = &tot[0, 0, 0], &dp[0, 0]
    # da0, dc0 double as the running gradients w.r.t. the state
    v[STATE0], v[STATE0 + 1] = <floating*>&da_T[0, 0], <floating*>&dc_T[0, 0]
    v[STATE_IN], v[STATE_IN + 1] = &da0[0, 0], &dc0[0, 0]
    # da (B, H) += dz[t] (B, 4H) @ W[:, :H]; active rows were zeroed, inactive rows have
    # dz = 0 and keep their da
    add_product(&r, step_product_of(STATE_IN, 0, 0, H, DZ, 0, 4 * B * H, 4 * H, H, 4 * H,
                                    0, True))
    # dW[:, :H] (4H, H) += dz^T (4H, rows) @ a[t0:t1] (rows, H)
    add_weight_grad(&r, weight_grad_of(DZ, 0, 4 * H, STATE, 0, 4 * H))
    backward(v, &r, dz.shape[0], nt, threads)


# ------------------------------------------------------------ one token (generation)

cdef enum:
    NUM_STATES = 2              # (a, c)


cdef void step_layer(floating** ws, const floating* x, const floating* a0, const floating* c0,
                     const floating** prm, Py_ssize_t D, Py_ssize_t H, bint peephole,
                     int threads) noexcept nogil:
    """One layer of Stepper.step: ws = (a, c, gates), prm = (W, b, p or NULL, Q, scale)."""
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(1, 1, D, H, 4, NULL, peephole, 2)
    v[X], v[W_], v[BIAS] = <floating*>x, <floating*>prm[0], <floating*>prm[1]
    v[PEEP] = <floating*>prm[2] if peephole else NULL
    v[QW], v[QSCALE] = <floating*>prm[3], <floating*>prm[4]
    v[STATE0], v[STATE0 + 1] = <floating*>a0, <floating*>c0
    v[STATE_IN], v[STATE_IN + 1], v[GATES] = ws[0], ws[1], ws[2]
    one_token(v, &r, threads)


include "_stepper.pxi"
