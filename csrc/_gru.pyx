# GRU cell, compiled fast path (the NumPy reference is seqcore/reference.py).
#
# Legend: T time steps, B batch, D input features, H hidden units.
# W = [W_cc | W_cx] is (3H, H + D), row blocks (r, u, c): columns 0:H multiply the old
# state c<t-1>, columns H: multiply x<t>. b is (3H,), b_cc (H,) (reset_after only).
#
#   Γr = σ(W_r [c<t-1>, x<t>] + b_r),   Γu = σ(W_u [c<t-1>, x<t>] + b_u)
#   c̃  = tanh(W_c [Γr * c<t-1>, x<t>] + b_c)                          (reset before)
#   c̃  = tanh(W_cx x<t> + b_c + Γr * (W_cc c<t-1> + b_cc))             (reset after)
#   c<t> = Γu * c̃ + (1 - Γu) * c<t-1>
#
# The packing, the products, the steps' loops and their threads are the shared driver's
# (csrc/_driver.pxi): forward, W_cx x<t> + b for all T*B rows into `gates`; per step,
# reset before, two phases (gates[r, u] += c<t-1> @ W_cc[r, u]^T and Γr, Γu, hc = Γr *
# c<t-1>; then gates[c] += hc @ W_cc[c]^T and c̃, c<t>), reset after one (h = c<t-1> @
# W_cc^T, then the gates and c<t>). Backward mirrors them: per step the gradient passes
# and the products that carry dC/dc back one step; per chunk dW, dx, db and db_cc.
import numpy as np

from libc.stdint cimport int64_t
from cython cimport floating

from _fastmath cimport sigmoid, tanh

include "_driver.pxi"

cdef enum:
    GATES = CELL                # (T, B, 3H) [Γr, Γu, c̃]
    HC = CELL + 1               # (T, B, H) the candidate's view of c<t-1>: Γr * c<t-1>
                                # (reset before), W_cc c<t-1> + b_cc (reset after)
    H_ = CELL + 2               # (B, 3H) c<t-1> @ W_cc^T of a step (reset after)
    B_CC = CELL + 3             # (H,) b_cc
    DH = CELL + 4               # (B, 3H) [dz_r, dz_u, dz_c * Γr] of a step (reset after)
    DZ_HC = CELL + 5            # (C, B, H) dz_c * Γr of a chunk's steps (reset after)
    DRC = CELL + 6              # (B, H) d(Γr * c<t-1>) of a step (reset before)
    DB_CC = CELL + 7            # (H,) db_cc


# One step of a single sequence (T = B = 1, token-by-token generation) reads W once,
# straight from its rows, with the units split over the threads. Reset before, the
# candidate needs gamma_r * c<t-1> of every unit, so the step takes two parallel
# regions (gates, then state); reset after, one.

cdef void step_gates(floating* g, floating* hc, const floating* c_prev, const floating* x,
                     const floating* W, const signed char* Q, const floating* s,
                     const floating* b, const floating* b_cc,
                     Py_ssize_t u0, Py_ssize_t u1, Py_ssize_t D, Py_ssize_t H,
                     bint reset_after) noexcept nogil:
    """Units [u0, u1): gamma_r, gamma_u into g (3H); hc = gamma_r * c<t-1> (reset
    before), or hc = W_cc c<t-1> + b_cc and the candidate's W_cx x<t> into g (reset
    after). The rows are W's, or its int8 Q's with scales s when Q is not NULL."""
    cdef Py_ssize_t gate, row, j, n = u1 - u0, LDW = H + D
    if n <= 0:
        return
    for gate in range(2):
        row = gate * H + u0
        row_dot_w(g + row, c_prev, H, x, D, W, Q, s, row, 0, LDW, n, False)
        for j in range(row, row + n):
            g[j] = sigmoid(g[j] + b[j])
    if reset_after:
        row = 2 * H + u0
        row_dot_w(hc + u0, c_prev, H, x, 0, W, Q, s, row, 0, LDW, n, False)    # W_cc c<t-1>
        row_dot_w(g + row, x, D, x, 0, W, Q, s, row, H, LDW, n, False)         # W_cx x<t>
        for j in range(u0, u1):
            hc[j] = hc[j] + b_cc[j]
    else:
        for j in range(u0, u1):
            hc[j] = g[j] * c_prev[j]


cdef void step_state(floating* c_next, floating* g, const floating* hc,
                     const floating* c_prev, const floating* x, const floating* W,
                     const signed char* Q, const floating* s, const floating* b, Py_ssize_t u0, Py_ssize_t u1, Py_ssize_t D,
                     Py_ssize_t H, bint reset_after) noexcept nogil:
    """Units [u0, u1), after step_gates (of every unit, reset before): c_tilde into g,
    then c<t> = gamma_u * c_tilde + (1 - gamma_u) * c<t-1>."""
    cdef Py_ssize_t j, n = u1 - u0, LDW = H + D, row = 2 * H + u0
    cdef floating one = 1
    if n <= 0:
        return
    if not reset_after:
        row_dot_w(g + row, hc, H, x, D, W, Q, s, row, 0, LDW, n, False)
        for j in range(u0, u1):
            g[2 * H + j] = tanh(g[2 * H + j] + b[2 * H + j])
    else:
        for j in range(u0, u1):
            g[2 * H + j] = tanh(g[2 * H + j] + b[2 * H + j] + g[j] * hc[j])
    for j in range(u0, u1):
        c_next[j] = g[H + j] * g[2 * H + j] + (one - g[H + j]) * c_prev[j]


cdef void step_units(floating** v, const Recurrence* r, Py_ssize_t ph, Py_ssize_t u0,
                     Py_ssize_t u1) noexcept nogil:
    """One token's step, units [u0, u1): c (2, H) = v[STATE_IN], g (3H), hc (H).
    Phase 0: the gates (reset after, and the new state); phase 1: the new state."""
    cdef floating* c = v[STATE_IN]
    if ph == 0:
        step_gates(v[GATES], v[HC], c, v[X], v[W_], <signed char*>v[QW], v[QSCALE], v[BIAS],
                   v[B_CC], u0, u1, r.D, r.H, r.option)
    if ph == 1 or r.option:
        step_state(c + r.H, v[GATES], v[HC], c, v[X], v[W_], <signed char*>v[QW], v[QSCALE],
                   v[BIAS], u0, u1, r.D, r.H, r.option)


cdef void reset_rows(floating* gates_t, floating* hc_t, const floating* c_t,
                     Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0, Py_ssize_t u1,
                     Py_ssize_t H) noexcept nogil:
    """Reset before, step t, rows [b0, b1), units [u0, u1): gamma_r, gamma_u = sigma(z_r,
    z_u) in place in gates_t (B, 3H), and hc_t (B, H) = gamma_r * c<t-1> (c_t: c[t],
    (B, H))."""
    cdef Py_ssize_t i, j
    cdef floating v
    cdef floating* gamma_r
    cdef floating* gamma_u
    cdef floating* hcr
    cdef const floating* cp
    for i in range(b0, b1):
        gamma_r = gates_t + i * 3 * H
        gamma_u = gamma_r + H
        cp = c_t + i * H
        hcr = hc_t + i * H
        for j in range(u0, u1):
            v = sigmoid(gamma_r[j])
            gamma_r[j] = v
            hcr[j] = v * cp[j]                  # gamma_r * c<t-1>
        for j in range(u0, u1):
            gamma_u[j] = sigmoid(gamma_u[j])


cdef void candidate_rows(floating* gates_t, floating* c_t, const int64_t* lengths,
                         Py_ssize_t t, Py_ssize_t B, Py_ssize_t b0, Py_ssize_t b1,
                         Py_ssize_t u0, Py_ssize_t u1, Py_ssize_t H) noexcept nogil:
    """Reset before, step t, rows [b0, b1), units [u0, u1): c_tilde = tanh(z_c) in place
    in gates_t (B, 3H), and the new state: c_t (B, H) is c[t], its next B rows c[t+1]."""
    cdef Py_ssize_t i, j
    cdef floating v, one = 1
    cdef floating* gamma_u
    cdef floating* c_tilde
    cdef floating* cn
    cdef const floating* cp
    for i in range(b0, b1):
        gamma_u = gates_t + i * 3 * H + H
        c_tilde = gamma_u + H
        cp = c_t + i * H
        cn = c_t + (B + i) * H
        if t < lengths[i]:
            for j in range(u0, u1):
                v = tanh(c_tilde[j])
                c_tilde[j] = v
                cn[j] = gamma_u[j] * v + (one - gamma_u[j]) * cp[j]
        else:
            for j in range(u0, u1):             # inactive: state copied
                c_tilde[j] = tanh(c_tilde[j])
                cn[j] = cp[j]


cdef void after_rows(floating* gates_t, const floating* h, floating* hc_t, floating* c_t,
                     const floating* b_cc, const int64_t* lengths, Py_ssize_t t,
                     Py_ssize_t B, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0,
                     Py_ssize_t u1, Py_ssize_t H) noexcept nogil:
    """Reset after, step t, rows [b0, b1), units [u0, u1): the gates from gates_t (B, 3H,
    input parts) and h (B, 3H) = c<t-1> @ W_cc^T, in place in gates_t; hc_t (B, H) =
    W_cc c<t-1> + b_cc; the new state: c_t (B, H) is c[t], its next B rows c[t+1]."""
    cdef Py_ssize_t i, j
    cdef floating v, one = 1
    cdef floating* gamma_r
    cdef floating* gamma_u
    cdef floating* c_tilde
    cdef floating* hcr
    cdef floating* cn
    cdef const floating* hr
    cdef const floating* cp
    for i in range(b0, b1):
        gamma_r = gates_t + i * 3 * H
        gamma_u = gamma_r + H
        c_tilde = gamma_r + 2 * H
        hr = h + i * 3 * H
        cp = c_t + i * H
        cn = c_t + (B + i) * H
        hcr = hc_t + i * H
        for j in range(u0, u1):                 # gamma_r
            gamma_r[j] = sigmoid(gamma_r[j] + hr[j])
        for j in range(u0, u1):                 # gamma_u
            gamma_u[j] = sigmoid(gamma_u[j] + hr[H + j])
        for j in range(u0, u1):
            v = hr[2 * H + j] + b_cc[j]         # W_cc c<t-1> + b_cc
            hcr[j] = v
            c_tilde[j] = tanh(c_tilde[j] + gamma_r[j] * v)
        if t < lengths[i]:
            for j in range(u0, u1):
                cn[j] = gamma_u[j] * c_tilde[j] + (one - gamma_u[j]) * cp[j]
        else:
            for j in range(u0, u1):             # inactive: state copied
                cn[j] = cp[j]


cdef void forward_rows(floating** v, const Recurrence* r, int ph, Py_ssize_t t,
                       Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t u0, Py_ssize_t u1,
                       Py_ssize_t q) noexcept nogil:
    cdef Py_ssize_t BH = r.B * r.H
    cdef floating* g = v[GATES] + t * 3 * BH
    if r.option:                # reset after: h = c<t> @ W_cc^T, then the gates and c<t+1>
        after_rows(g, v[H_], v[HC] + t * BH, v[STATE] + t * BH, v[B_CC], r.lengths, t, r.B,
                   b0, b1, u0, u1, r.H)
    elif ph == 0:               # gamma_r, gamma_u, hc[t]
        reset_rows(g, v[HC] + t * BH, v[STATE] + t * BH, b0, b1, u0, u1, r.H)
    else:                       # c_tilde, c<t+1>
        candidate_rows(g, v[STATE] + t * BH, r.lengths, t, r.B, b0, b1, u0, u1, r.H)


def gru_forward(floating[:, :, ::1] c,          # (T+1, B, H) out: states, c[0] = c0
                floating[:, :, ::1] gates,      # (T, B, 3H) out: [gamma_r, gamma_u, c_tilde]
                floating[:, :, ::1] hc,         # (T, B, H) out: candidate's view of c<t-1>
                const floating[:, :, ::1] x,    # (T, B, D)
                const floating[:, ::1] c0,      # (B, H)
                const floating[:, ::1] W,       # (3H, H+D)
                const floating[::1] b,          # (3H,)
                const floating[::1] b_cc,       # (H,) used only when reset_after
                const int64_t[::1] lengths,     # (B,) 1 <= lengths[i] <= T
                bint reset_after,
                int threads):                   # the core's threads (seqcore.get_num_threads)
    """GRU forward through time; inactive steps keep the state (gates still computed)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = c0.shape[1]
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(T, B, D, H, 3, &lengths[0], reset_after, 1)
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    v[X], v[W_], v[BIAS] = <floating*>&x[0, 0, 0], <floating*>&W[0, 0], <floating*>&b[0]
    v[B_CC], v[STATE0] = <floating*>&b_cc[0], <floating*>&c0[0, 0]
    v[STATE] = v[STATE_IN] = &c[0, 0, 0]
    v[GATES] = v[PROJ] = &gates[0, 0, 0]
    v[HC] = &hc[0, 0, 0]
    v[QW] = v[QSCALE] = NULL       # the float weights
    if T == 1 and B == 1:          # one step of one sequence (generation): no workspace
        r.unit_phases = 1 if reset_after else 2
        with nogil:
            one_token(v, &r, threads)
        return
    dtype = np.float32 if floating is float else np.float64
    # h = c<t-1> @ W_cc^T, the recurrent part of all three blocks (reset after only).
    cdef floating[:, ::1] h = np.empty((B if reset_after else 0, 3 * H), dtype=dtype)
    v[H_] = &h[0, 0] if reset_after else NULL
    if not reset_after:
        # gates[t, :, 0:2H] (B, 2H) += c<t> (B, H) @ W_cc[0:2H]^T
        add_product(&r, step_product_of(GATES, 0, 3 * B * H, 3 * H, STATE, 0, B * H, H,
                                        2 * H, H, 0, True))
        # gates[t, :, 2H:3H] (B, H) += hc[t] (B, H) @ W_cc[2H:3H]^T
        add_product(&r, step_product_of(GATES, 2 * H, 3 * B * H, 3 * H, HC, 0, B * H, H,
                                        H, H, 2 * H, True))
    else:
        # h (B, 3H) = c<t> (B, H) @ W_cc^T
        add_product(&r, step_product_of(H_, 0, 0, 3 * H, STATE, 0, B * H, H, 3 * H, H, 0,
                                        False))
    forward(v, &r, threads)


cdef void gradient_rows(floating* dz_t, floating* dh, floating* dhc_t, floating* dc,
                        floating* da_sq_t, const floating* dy_t, const floating* gates_t,
                        const floating* c_t, const floating* hc_t, const int64_t* lengths,
                        Py_ssize_t t, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H,
                        bint reset_after) noexcept nogil:
    """Step t (reversed), rows [b0, b1), at step t: dz_t (B, 3H) = dC/dz, the input
    parts [dz_r, dz_u, dz_c] (reset before: dz_r comes later, from reset_gradient_rows);
    reset after, dh (B, 3H) the recurrent parts [dz_r, dz_u, dz_c * gamma_r], whose
    last block also goes to dhc_t (B, H) (the first two equal dz_t's). dc (B, H): the
    running dC/dc<t+1> in, its direct path to c<t> out; da_sq_t (B,) =
    ||dC/dc<t+1>||^2. dy_t (B, H); gates_t (B, 3H); c_t = c[t], hc_t = hc[t] (B, H)."""
    cdef Py_ssize_t i, j, G3 = 3 * H
    cdef floating zero = 0, one = 1, sq
    cdef floating* dzr                   # (3H,) one row of dz
    cdef floating* dzu
    cdef floating* dzc
    cdef floating* dhr                   # (3H,) one row of dh (reset after)
    cdef floating* dhc
    cdef floating* dhc_r                 # (H,) one row of dhc_t
    cdef floating* dcr                   # (H,) one row of dc
    cdef const floating* dyr
    cdef const floating* gamma_r
    cdef const floating* gamma_u
    cdef const floating* c_tilde
    cdef const floating* cp
    cdef const floating* hcr
    for i in range(b0, b1):
        dzr = dz_t + i * G3
        if t >= lengths[i]:
            # Inactive: the state was copied, so dC/dc passes through; dy ignored.
            da_sq_t[i] = zero
            for j in range(G3):
                dzr[j] = zero
            if reset_after:
                dhr = dh + i * G3
                dhc_r = dhc_t + i * H
                for j in range(G3):
                    dhr[j] = zero
                for j in range(H):
                    dhc_r[j] = zero
            continue
        dcr = dc + i * H
        dyr = dy_t + i * H
        gamma_r = gates_t + i * G3
        gamma_u = gamma_r + H
        c_tilde = gamma_r + 2 * H
        dzu = dzr + H
        dzc = dzr + 2 * H
        cp = c_t + i * H
        for j in range(H):
            dcr[j] = dcr[j] + dyr[j]            # output at t and all later steps
        sq = zero
        for j in range(H):
            sq = sq + dcr[j] * dcr[j]
        da_sq_t[i] = sq
        # c<t> = gamma_u * c_tilde + (1 - gamma_u) * c<t-1>
        # (Short loops: one fused loop needs more runtime alias checks than gcc allows
        # and would not be vectorized.)
        for j in range(H):                      # backprop through tanh (candidate)
            dzc[j] = dcr[j] * gamma_u[j] * (one - c_tilde[j] * c_tilde[j])
        for j in range(H):                      # backprop through sigma (update)
            dzu[j] = dcr[j] * (c_tilde[j] - cp[j]) * gamma_u[j] * (one - gamma_u[j])
        if reset_after:
            # z_c = W_cx x + b_c + gamma_r * hc,   hc = W_cc c<t-1> + b_cc
            hcr = hc_t + i * H
            dhr = dh + i * G3
            dhc = dhr + 2 * H
            dhc_r = dhc_t + i * H
            for j in range(H):                  # d gamma_r = dz_c * hc; through sigma
                dzr[j] = dzc[j] * hcr[j] * gamma_r[j] * (one - gamma_r[j])
            for j in range(2 * H):              # r, u: recurrent part = input part
                dhr[j] = dzr[j]
            for j in range(H):                  # d(W_cc c<t-1> + b_cc)
                dhc[j] = dzc[j] * gamma_r[j]
                dhc_r[j] = dhc[j]
        for j in range(H):                      # direct path to c<t-1>
            dcr[j] = dcr[j] * (one - gamma_u[j])


cdef void reset_gradient_rows(floating* dz_t, floating* dc, const floating* drc,
                              const floating* gates_t, const floating* c_t,
                              const int64_t* lengths, Py_ssize_t t, Py_ssize_t b0,
                              Py_ssize_t b1, Py_ssize_t H) noexcept nogil:
    """Reset before, step t, active rows of [b0, b1): drc (B, H) = d(gamma_r * c<t-1>)
    gives dz_r (in dz_t (B, 3H)) and adds its path to c<t-1> into dc (B, H)."""
    cdef Py_ssize_t i, j
    cdef floating d, one = 1
    cdef floating* dzr
    cdef floating* dcr
    cdef const floating* drr
    cdef const floating* gamma_r
    cdef const floating* cp
    for i in range(b0, b1):
        if t >= lengths[i]:
            continue
        dcr = dc + i * H
        dzr = dz_t + i * 3 * H
        drr = drc + i * H
        gamma_r = gates_t + i * 3 * H
        cp = c_t + i * H
        for j in range(H):
            d = drr[j]
            dzr[j] = d * cp[j] * gamma_r[j] * (one - gamma_r[j])  # through sigma
            dcr[j] = dcr[j] + d * gamma_r[j]


cdef void backward_rows(floating** v, const Recurrence* r, int ph, Py_ssize_t t,
                        Py_ssize_t t0, Py_ssize_t b0, Py_ssize_t b1,
                        Py_ssize_t q) noexcept nogil:
    cdef Py_ssize_t BH = r.B * r.H
    cdef floating* dz_t = v[DZ] + (t - t0) * 3 * BH
    if ph == 0:
        gradient_rows(dz_t, v[DH], v[DZ_HC] + (t - t0) * BH if r.option else NULL,
                      v[STATE_IN], v[DA_SQ] + t * r.B, v[DY] + t * BH, v[GATES] + t * 3 * BH,
                      v[STATE] + t * BH, v[HC] + t * BH, r.lengths, t, b0, b1, r.H,
                      r.option)
    else:                       # reset before: dz_r and the path through gamma_r
        reset_gradient_rows(dz_t, v[STATE_IN], v[DRC], v[GATES] + t * 3 * BH,
                            v[STATE] + t * BH, r.lengths, t, b0, b1, r.H)


cdef void backward_chunk(floating** v, const Recurrence* r, Py_ssize_t t0,
                         Py_ssize_t t1) noexcept nogil:
    """Reset after: db_cc (H,) += column sums of dz_hc."""
    if r.option:
        add_column_sums(v[DB_CC], v[DZ_HC], (t1 - t0) * r.B, r.H)


def gru_backward(floating[:, :, ::1] dx,        # (T, B, D) out
                 floating[:, ::1] dc0,          # (B, H) out: dC/dc<0>
                 floating[:, ::1] dW,           # (3H, H+D) accumulate
                 floating[::1] db,              # (3H,) accumulate
                 floating[::1] db_cc,           # (H,) accumulate (reset_after only)
                 floating[:, ::1] da_sq,        # (T, B) out: ||dC/dc<t+1>||^2
                 const floating[:, :, ::1] dy,  # (T, B, H)
                 const floating[:, ::1] dc_T,   # (B, H) dC/dc<T>
                 const floating[:, :, ::1] x,   # (T, B, D)
                 const floating[:, :, ::1] c,   # (T+1, B, H) states from gru_forward
                 const floating[:, :, ::1] gates,  # (T, B, 3H) from gru_forward
                 const floating[:, :, ::1] hc,  # (T, B, H) from gru_forward
                 const floating[:, ::1] W,      # (3H, H+D)
                 const int64_t[::1] lengths,    # (B,)
                 bint reset_after,
                 int threads,                   # the core's threads
                 floating[:, :, ::1] dz_work=None):  # (C, B, 3H) scratch, or None
    """Backpropagation through time for gru_forward."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = c.shape[2]
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(T, B, D, H, 3, &lengths[0], reset_after, 1)
    dtype = np.float32 if floating is float else np.float64
    # dz: gradients w.r.t. the gates' pre-activations, input parts [dz_r, dz_u, dz_c],
    # of the steps of one chunk (see _scratch.pxi)
    cdef floating[:, :, ::1] dz = dz_scratch(dz_work, T, B, 3 * H, dtype)
    cdef Py_ssize_t C = dz.shape[0]
    # Reset after only (unused workspaces stay empty): dh (B, 3H), the recurrent parts
    # [dz_r, dz_u, dz_c * gamma_r] of one step, and dz_hc (C, B, H), the last block of
    # the chunk's steps (the first two are dz's).
    cdef floating[:, ::1] dh = np.empty((B if reset_after else 0, 3 * H), dtype=dtype)
    cdef floating[:, :, ::1] dz_hc = np.empty((C if reset_after else 0, B, H), dtype=dtype)
    # drc: d(gamma_r * c<t-1>), what the candidate sends back (reset before only).
    cdef floating[:, ::1] drc = np.empty((0 if reset_after else B, H), dtype=dtype)
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    v[X], v[W_], v[STATE] = <floating*>&x[0, 0, 0], <floating*>&W[0, 0], <floating*>&c[0, 0, 0]
    v[DX], v[DW], v[DB], v[DZ] = &dx[0, 0, 0], &dW[0, 0], &db[0], &dz[0, 0, 0]
    v[DY], v[DA_SQ], v[DB_CC] = <floating*>&dy[0, 0, 0], &da_sq[0, 0], &db_cc[0]
    v[GATES], v[HC] = <floating*>&gates[0, 0, 0], <floating*>&hc[0, 0, 0]
    v[DH] = &dh[0, 0] if reset_after else NULL
    v[DZ_HC] = &dz_hc[0, 0, 0] if reset_after else NULL
    v[DRC] = &drc[0, 0] if not reset_after else NULL
    # dc0 carries dC/dc<t+1> backwards through the loop and ends as dC/dc<0>.
    v[STATE0], v[STATE_IN] = <floating*>&dc_T[0, 0], &dc0[0, 0]
    if not reset_after:
        # drc (B, H) = dz_c (B, H) @ W_cc[2H:3H] (H, H): d(gamma_r * c<t-1>)
        add_product(&r, step_product_of(DRC, 0, 0, H, DZ, 2 * H, 3 * B * H, 3 * H, H, H,
                                        2 * H, False))
        # dc (B, H) += [dz_r, dz_u] (B, 2H) @ W_cc[0:2H] (2H, H)
        add_product(&r, step_product_of(STATE_IN, 0, 0, H, DZ, 0, 3 * B * H, 3 * H, H,
                                        2 * H, 0, True))
        # dW_cc[2H:3H] (H, H) += dz_c^T (H, rows) @ hc[t0:t1] (rows, H)
        add_weight_grad(&r, weight_grad_of(DZ, 2 * H, 3 * H, HC, 2 * H, H))
    else:
        # dc (B, H) += dh (B, 3H) @ W_cc (3H, H)
        add_product(&r, step_product_of(STATE_IN, 0, 0, H, DH, 0, 0, 3 * H, H, 3 * H, 0,
                                        True))
        # dW_cc[2H:3H] (H, H) += dz_hc^T (H, rows) @ c[t0:t1] (rows, H)
        add_weight_grad(&r, weight_grad_of(DZ_HC, 0, H, STATE, 2 * H, H))
    # dW_cc[0:2H] (2H, H) += [dz_r, dz_u]^T (2H, rows) @ c[t0:t1] (rows, H)
    add_weight_grad(&r, weight_grad_of(DZ, 0, 3 * H, STATE, 0, 2 * H))
    backward(v, &r, C, step_region_threads(threads, T, B, H, 3), threads)


# ------------------------------------------------------------ one token (generation)

cdef enum:
    NUM_STATES = 1              # c


cdef void step_layer(floating** ws, const floating* x, const floating* c0, const floating* unused,
                     const floating** prm, Py_ssize_t D, Py_ssize_t H, bint reset_after,
                     int threads) noexcept nogil:
    """One layer of Stepper.step: ws = (c, gates, hc), prm = (W, b, b_cc or NULL, Q,
    scale)."""
    cdef floating* v[MAX_SLOTS]
    cdef Recurrence r = recurrence(1, 1, D, H, 3, NULL, reset_after, 1)
    r.unit_phases = 1 if reset_after else 2
    v[X], v[W_], v[BIAS], v[B_CC] = (<floating*>x, <floating*>prm[0], <floating*>prm[1],
                                     <floating*>prm[2])
    v[QW], v[QSCALE] = <floating*>prm[3], <floating*>prm[4]
    v[STATE0], v[STATE_IN], v[GATES], v[HC] = <floating*>c0, ws[0], ws[1], ws[2]
    one_token(v, &r, threads)


include "_stepper.pxi"
