# GRU cell, compiled fast path (the NumPy reference is seqcore/reference.py).
#
# Legend: T time steps, B batch, D input features, H hidden units.
# W = [W_cc | W_cx] is (3H, H + D), row blocks (r, u, c): columns 0:H multiply the old
# state c<t-1>, columns H: multiply x<t>. b is (3H,), b_cc (H,) (reset_after only).
#
# Structure (same numbers as the reference, different shape of the work):
#   forward:  one GEMM projects the inputs of all T*B rows into `gates` (bias folded
#             in); per step, reset before: two GEMMs (r,u blocks, then the candidate
#             on gamma_r * c<t-1>), reset after: one GEMM into a (B, 3H) workspace;
#             each followed by a fused element-wise gate pass.
#   backward: per step a fused pass writes the pre-activation gradients dz and the
#             GEMM(s) carry dC/dc back one step; after the loop, big GEMMs over all
#             T*B rows give dW and dx, column sums give db and db_cc.
import numpy as np

from libc.stdint cimport int64_t
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy

from _fastmath cimport sigmoid, tanh
from _packed cimport (region_begin, region_end, region_mark, a_slot, a_work_len,
                      barrier_done, barrier_end, barrier_init, meet,
                      gemm_panels, KC, num_panels, pack, packed_len, product,
                      product_work_len, row_dot, sc_barrier_t, sc_threads, step_product,
                      step_region_threads, step_threads, unit_split)

include "_load.pxi"
include "_scratch.pxi"


# One step of a single sequence (T = B = 1, token-by-token generation) reads W once,
# straight from its rows, with the units split over the threads. Reset before, the
# candidate needs gamma_r * c<t-1> of every unit, so the step takes two parallel
# regions (gates, then state); reset after, one.

cdef void step_gates(floating* g, floating* hc, const floating* c_prev, const floating* x,
                     const floating* W, const floating* b, const floating* b_cc,
                     Py_ssize_t u0, Py_ssize_t u1, Py_ssize_t D, Py_ssize_t H,
                     bint reset_after) noexcept nogil:
    """Units [u0, u1): gamma_r, gamma_u into g (3H); hc = gamma_r * c<t-1> (reset
    before), or hc = W_cc c<t-1> + b_cc and the candidate's W_cx x<t> into g (reset
    after)."""
    cdef Py_ssize_t gate, row, j, n = u1 - u0, LDW = H + D
    if n <= 0:
        return
    for gate in range(2):
        row = gate * H + u0
        row_dot(g + row, c_prev, H, x, D, W + row * LDW, LDW, n, False)
        for j in range(row, row + n):
            g[j] = sigmoid(g[j] + b[j])
    if reset_after:
        row = 2 * H + u0
        row_dot(hc + u0, c_prev, H, x, 0, W + row * LDW, LDW, n, False)        # W_cc c<t-1>
        row_dot(g + row, x, D, x, 0, W + row * LDW + H, LDW, n, False)         # W_cx x<t>
        for j in range(u0, u1):
            hc[j] = hc[j] + b_cc[j]
    else:
        for j in range(u0, u1):
            hc[j] = g[j] * c_prev[j]


cdef void step_state(floating* c_next, floating* g, const floating* hc,
                     const floating* c_prev, const floating* x, const floating* W,
                     const floating* b, Py_ssize_t u0, Py_ssize_t u1, Py_ssize_t D,
                     Py_ssize_t H, bint reset_after) noexcept nogil:
    """Units [u0, u1), after step_gates (of every unit, reset before): c_tilde into g,
    then c<t> = gamma_u * c_tilde + (1 - gamma_u) * c<t-1>."""
    cdef Py_ssize_t j, n = u1 - u0, LDW = H + D, row = 2 * H + u0
    cdef floating one = 1
    if n <= 0:
        return
    if not reset_after:
        row_dot(g + row, hc, H, x, D, W + row * LDW, LDW, n, False)
        for j in range(u0, u1):
            g[2 * H + j] = tanh(g[2 * H + j] + b[2 * H + j])
    else:
        for j in range(u0, u1):
            g[2 * H + j] = tanh(g[2 * H + j] + b[2 * H + j] + g[j] * hc[j])
    for j in range(u0, u1):
        c_next[j] = g[H + j] * g[2 * H + j] + (one - g[H + j]) * c_prev[j]


cdef void forward_one(floating* c, floating* g, floating* hc, const floating* x,
                      const floating* c0, const floating* W, const floating* b,
                      const floating* b_cc, Py_ssize_t D, Py_ssize_t H, bint reset_after,
                      int threads) noexcept nogil:
    """gru_forward for T = B = 1. c (2, H): [state in, state out]; g (3H); hc (H)."""
    cdef Py_ssize_t q, nq = step_threads(threads, 3 * H, H + D, H)
    memcpy(c, c0, H * sizeof(floating))
    if nq <= 1:
        step_gates(g, hc, c, x, W, b, b_cc, 0, H, D, H, reset_after)
        step_state(c + H, g, hc, c, x, W, b, 0, H, D, H, reset_after)
    elif reset_after:
        region_begin(nq)
        for q in prange(nq, num_threads=nq, schedule="static"):
            step_gates(g, hc, c, x, W, b, b_cc, unit_split(c, H, q, nq),
                       unit_split(c, H, q + 1, nq), D, H, reset_after)
            step_state(c + H, g, hc, c, x, W, b, unit_split(c, H, q, nq),
                       unit_split(c, H, q + 1, nq), D, H, reset_after)
            region_mark(q)
        region_end()
    else:
        region_begin(nq)
        for q in prange(nq, num_threads=nq, schedule="static"):
            step_gates(g, hc, c, x, W, b, b_cc, unit_split(c, H, q, nq),
                       unit_split(c, H, q + 1, nq), D, H, reset_after)
            region_mark(q)
        region_end()
        region_begin(nq)
        for q in prange(nq, num_threads=nq, schedule="static"):
            step_state(c + H, g, hc, c, x, W, b, unit_split(c, H, q, nq),
                       unit_split(c, H, q + 1, nq), D, H, reset_after)
            region_mark(q)
        region_end()


cdef void reset_rows(floating* gates_t, floating* hc_t, const floating* c_t,
                     Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H) noexcept nogil:
    """Reset before, step t, rows [b0, b1): gamma_r, gamma_u = sigma(z_r, z_u) in place
    in gates_t (B, 3H), and hc_t (B, H) = gamma_r * c<t-1> (c_t: c[t], (B, H))."""
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
        for j in range(H):
            v = sigmoid(gamma_r[j])
            gamma_r[j] = v
            hcr[j] = v * cp[j]                  # gamma_r * c<t-1>
        for j in range(H):
            gamma_u[j] = sigmoid(gamma_u[j])


cdef void candidate_rows(floating* gates_t, floating* c_t, const int64_t* lengths,
                         Py_ssize_t t, Py_ssize_t B, Py_ssize_t b0, Py_ssize_t b1,
                         Py_ssize_t H) noexcept nogil:
    """Reset before, step t, rows [b0, b1): c_tilde = tanh(z_c) in place in gates_t
    (B, 3H), and the new state: c_t (B, H) is c[t], its next B rows c[t+1]."""
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
            for j in range(H):
                v = tanh(c_tilde[j])
                c_tilde[j] = v
                cn[j] = gamma_u[j] * v + (one - gamma_u[j]) * cp[j]
        else:
            for j in range(H):                  # inactive: state copied
                c_tilde[j] = tanh(c_tilde[j])
                cn[j] = cp[j]


cdef void after_rows(floating* gates_t, const floating* h, floating* hc_t, floating* c_t,
                     const floating* b_cc, const int64_t* lengths, Py_ssize_t t,
                     Py_ssize_t B, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H) noexcept nogil:
    """Reset after, step t, rows [b0, b1): the gates from gates_t (B, 3H, input parts)
    and h (B, 3H) = c<t-1> @ W_cc^T, in place in gates_t; hc_t (B, H) = W_cc c<t-1> +
    b_cc; the new state: c_t (B, H) is c[t], its next B rows c[t+1]."""
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
        for j in range(2 * H):                  # gamma_r, gamma_u
            gamma_r[j] = sigmoid(gamma_r[j] + hr[j])
        for j in range(H):
            v = hr[2 * H + j] + b_cc[j]         # W_cc c<t-1> + b_cc
            hcr[j] = v
            c_tilde[j] = tanh(c_tilde[j] + gamma_r[j] * v)
        if t < lengths[i]:
            for j in range(H):
                cn[j] = gamma_u[j] * c_tilde[j] + (one - gamma_u[j]) * cp[j]
        else:
            for j in range(H):                  # inactive: state copied
                cn[j] = cp[j]


cdef void forward_steps(floating* gates, floating* hc, floating* c, floating* h,
                        const floating* P1, const floating* P2, const floating* b_cc,
                        const int64_t* lengths, floating* abuf, Py_ssize_t T, Py_ssize_t B,
                        Py_ssize_t H, bint reset_after, Py_ssize_t q,
                        Py_ssize_t nt,
                        sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of all the forward steps, in one parallel region of nt threads
    (meet: the barrier, where the team may go solo, thread 0 alone; csrc/_load.h):
    its panels of each product, then its rows of each gate pass, with a barrier after
    every phase. gates (T, B, 3H); hc (T, B, H); c (T+1, B, H); h (B, 3H) (reset
    after); P1, P2 the packed recurrent weights (see gru_forward); abuf: see
    packed_product."""
    cdef Py_ssize_t t, G3 = 3 * H
    cdef size_t np1 = num_panels(P1, G3 if reset_after else 2 * H), np2 = num_panels(P1, H)
    cdef floating* g
    for t in range(T):
        g = gates + t * B * G3
        if not reset_after:
            # gates[t, :, 0:2H] += c<t> @ W_cc[0:2H]^T, then gamma_r, gamma_u, hc[t]
            gemm_panels(g, G3, c + t * B * H, H, 1, P1, B, 2 * H, H, q * np1 // nt,
                        (q + 1) * np1 // nt, True, a_slot(abuf, H, q))
            if meet(bar, &q, &nt):
                return
            reset_rows(g, hc + t * B * H, c + t * B * H, q * B // nt, (q + 1) * B // nt, H)
            if meet(bar, &q, &nt):
                return
            # gates[t, :, 2H:3H] += hc[t] @ W_cc[2H:3H]^T, then c_tilde, c<t+1>
            gemm_panels(g + 2 * H, G3, hc + t * B * H, H, 1, P2, B, H, H, q * np2 // nt,
                        (q + 1) * np2 // nt, True, a_slot(abuf, H, q))
            if meet(bar, &q, &nt):
                return
            candidate_rows(g, c + t * B * H, lengths, t, B, q * B // nt, (q + 1) * B // nt, H)
        else:
            # h = c<t> @ W_cc^T, then the gates and c<t+1>
            gemm_panels(h, G3, c + t * B * H, H, 1, P1, B, G3, H, q * np1 // nt,
                        (q + 1) * np1 // nt, False, a_slot(abuf, H, q))
            if meet(bar, &q, &nt):
                return
            after_rows(g, h, hc + t * B * H, c + t * B * H, b_cc, lengths, t, B, q * B // nt,
                       (q + 1) * B // nt, H)
        if meet(bar, &q, &nt):
            return


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
    cdef Py_ssize_t t, i, j
    cdef int G3 = <int>(3 * H), LDW = <int>(H + D)
    cdef floating* g                 # (3H,) one row of gates (input projection)
    cdef floating* cn                # (H,) c<t+1>, one row
    cdef const floating* cp          # (H,) c<t>, one row
    cdef const floating* bp

    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    cdef sc_barrier_t bar                # the steps' region's (csrc/_load.h)
    if T == 1 and B == 1:          # one step of one sequence (generation): no workspace
        with nogil:
            forward_one(&c[0, 0, 0], &gates[0, 0, 0], &hc[0, 0, 0], &x[0, 0, 0], &c0[0, 0],
                        &W[0, 0], &b[0], &b_cc[0], D, H, reset_after, threads)
        return
    dtype = np.float32 if floating is float else np.float64
    # rows of A packed in the long products (k >= 1024; see _packed_gemm.h)
    cdef size_t n_ab = a_work_len(<floating*>NULL, max(D, H), threads)
    cdef floating[::1] A_work = np.empty(max(n_ab, <size_t>1), dtype)
    cdef floating* Ab = &A_work[0] if n_ab else NULL
    # h = c<t-1> @ W_cc^T, the recurrent part of all three blocks (reset after only).
    cdef Py_ssize_t nh = B if reset_after else 0             # unused: stays empty
    cdef floating[:, ::1] h = np.empty((nh, 3 * H), dtype=dtype)
    # The recurrent weights packed once for the per-step products: reset before,
    # P1 = W[0:2H, :H]^T and P2 = W[2H:3H, :H]^T; reset after, P1 = W[:, :H]^T.
    # The input projection's packed weights go to `work` (packed as they are multiplied).
    cdef floating[::1] work = np.empty(
        product_work_len(<floating*>NULL, 3 * H, D, True, threads), dtype)
    cdef size_t n1 = 3 * H if reset_after else 2 * H
    cdef size_t len1 = packed_len(<floating*>NULL, n1, H)
    cdef size_t len2 = 0 if reset_after else packed_len(<floating*>NULL, H, H)
    cdef floating[::1] P = np.empty(len1 + len2, dtype=dtype)
    cdef floating* P1 = &P[0]
    cdef floating* P2 = &P[0] + len1 if not reset_after else NULL
    # threads of the steps' one parallel region (or 1: step by step)
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, 3)

    with nogil:
        pack(P1, &W[0, 0], LDW, True, n1, H, threads)
        if not reset_after:
            pack(P2, &W[2 * H, 0], LDW, True, H, H, threads)
        # gates (T*B, 3H) = b + x (T*B, D) @ W_x^T: the input part of every step.
        bp = &b[0]
        for i in range(T * B):
            g = &gates[0, 0, 0] + i * G3
            for j in range(3 * H):
                g[j] = bp[j]
        product(&gates[0, 0, 0], G3, &x[0, 0, 0], D, 1, &W[0, H], LDW, True,
                T * B, G3, D, True, threads, &work[0], Ab)

        for i in range(B):
            cn = &c[0, i, 0]
            cp = &c0[i, 0]
            for j in range(H):
                cn[j] = cp[j]

        if nt > 1:
            # one parallel region for all steps, a barrier after each phase: thread q
            # computes its panels of each product, then its rows of each gate pass
            barrier_init(&bar, nt)
            with parallel(num_threads=nt):
                forward_steps(&gates[0, 0, 0], &hc[0, 0, 0], &c[0, 0, 0], &h[0, 0] if reset_after
                              else NULL, P1, P2, &b_cc[0], &lengths[0], Ab, T, B, H,
                              reset_after, threadid(), nt, &bar)
                barrier_end(&bar, threadid())
            barrier_done(&bar)
        else:
            for t in range(T):
                if not reset_after:
                    # gates[t, :, 0:2H] (B, 2H) += c<t> (B, H) @ W_cc[0:2H]^T
                    step_product(&gates[t, 0, 0], G3, &c[t, 0, 0], H, P1, &W[0, 0], LDW,
                                 True, B, 2 * H, H, True, threads, Ab)
                    reset_rows(&gates[t, 0, 0], &hc[t, 0, 0], &c[t, 0, 0], 0, B, H)
                    # gates[t, :, 2H:3H] (B, H) += hc[t] (B, H) @ W_cc[2H:3H]^T
                    step_product(&gates[t, 0, 2 * H], G3, &hc[t, 0, 0], H, P2, &W[2 * H, 0],
                                 LDW, True, B, H, H, True, threads, Ab)
                    candidate_rows(&gates[t, 0, 0], &c[t, 0, 0], &lengths[0], t, B, 0, B, H)
                else:
                    # h (B, 3H) = c<t> (B, H) @ W_cc^T
                    step_product(&h[0, 0], G3, &c[t, 0, 0], H, P1, &W[0, 0], LDW, True,
                                 B, G3, H, False, threads, Ab)
                    after_rows(&gates[t, 0, 0], &h[0, 0], &hc[t, 0, 0], &c[t, 0, 0],
                               &b_cc[0], &lengths[0], t, B, 0, B, H)


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


cdef void backward_steps(floating* dz, floating* dh, floating* dz_hc, floating* drc,
                         floating* dc,
                         floating* da_sq, const floating* dy, const floating* gates,
                         const floating* c, const floating* hc, const floating* Q1,
                         const floating* Q2, const int64_t* lengths, floating* abuf,
                         Py_ssize_t t0, Py_ssize_t t1, Py_ssize_t B, Py_ssize_t H,
                         bint reset_after, Py_ssize_t q, Py_ssize_t nt,
                         sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of the backward steps t1-1 down to t0, as forward_steps: its
    rows of each gradient pass and its panels of each product, a barrier after every
    phase. dz (C, B, 3H) and, reset after, dz_hc (C, B, H) (see gradient_rows) hold
    the chunk's steps from t0, the other arrays all steps; reset after, dh (B, 3H);
    drc (B, H) (reset before); dc (B, H) running; Q1, Q2 the packed recurrent weights
    (see gru_backward)."""
    cdef Py_ssize_t t, G3 = 3 * H
    cdef size_t n_p = num_panels(Q1, H)
    cdef floating* dz_t
    for t in range(t1 - 1, t0 - 1, -1):
        dz_t = dz + (t - t0) * B * G3
        gradient_rows(dz_t, dh, dz_hc + (t - t0) * B * H if reset_after else NULL, dc,
                      da_sq + t * B, dy + t * B * H, gates + t * B * G3, c + t * B * H,
                      hc + t * B * H, lengths, t, q * B // nt, (q + 1) * B // nt, H, reset_after)
        if meet(bar, &q, &nt):
            return
        if not reset_after:
            # drc = dz_c @ W_cc[2H:3H], then dz_r and the path through gamma_r
            gemm_panels(drc, H, dz_t + 2 * H, G3, 1, Q1, B, H, H, q * n_p // nt,
                        (q + 1) * n_p // nt, False, a_slot(abuf, H, q))
            if meet(bar, &q, &nt):
                return
            reset_gradient_rows(dz_t, dc, drc, gates + t * B * G3, c + t * B * H, lengths, t,
                                q * B // nt, (q + 1) * B // nt, H)
            if meet(bar, &q, &nt):
                return
            # dc += [dz_r, dz_u] @ W_cc[0:2H]
            gemm_panels(dc, H, dz_t, G3, 1, Q2, B, H, 2 * H, q * n_p // nt,
                        (q + 1) * n_p // nt, True, a_slot(abuf, 2 * H, q))
        else:
            # dc += dh @ W_cc
            gemm_panels(dc, H, dh, G3, 1, Q1, B, H, G3, q * n_p // nt, (q + 1) * n_p // nt,
                        True, a_slot(abuf, G3, q))
        if meet(bar, &q, &nt):
            return


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
    cdef Py_ssize_t t, t0, t1, i, j, rows
    cdef int G3 = <int>(3 * H), LDW = <int>(H + D)
    cdef floating* dc                # (H,) dC/dc<T> of one sequence (into dc0)
    cdef const floating* dyr

    dtype = np.float32 if floating is float else np.float64
    # dz: gradients w.r.t. the gates' pre-activations, input parts [dz_r, dz_u, dz_c],
    # of the steps of one chunk (see _scratch.pxi)
    cdef floating[:, :, ::1] dz = dz_scratch(dz_work, T, B, 3 * H, dtype)
    cdef Py_ssize_t C = dz.shape[0]
    # Reset after only (unused workspaces stay empty): dh (B, 3H), the recurrent parts
    # [dz_r, dz_u, dz_c * gamma_r] of one step, and dz_hc (C, B, H), the last block of
    # the chunk's steps (the first two are dz's).
    cdef Py_ssize_t nh = B if reset_after else 0
    cdef floating[:, ::1] dh = np.empty((nh, 3 * H), dtype=dtype)
    cdef floating[:, :, ::1] dz_hc = np.empty((C if reset_after else 0, B, H), dtype=dtype)
    # drc: d(gamma_r * c<t-1>), what the candidate sends back (reset before only).
    cdef Py_ssize_t nr = 0 if reset_after else B
    cdef floating[:, ::1] drc = np.empty((nr, H), dtype=dtype)
    # W_cc packed for the per-step products: reset before, Q1 = W[2H:3H, :H] (for
    # d(gamma_r * c)) and Q2 = W[0:2H, :H]; reset after, Q1 = W[:, :H].
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    cdef sc_barrier_t bar                # the steps' region's (csrc/_load.h)
    # workspace of the products over a chunk's C*B rows (dW, dx)
    cdef size_t nwork = max(product_work_len(<floating*>NULL, D, C * B, False, threads),
                            product_work_len(<floating*>NULL, H, C * B, False, threads),
                            product_work_len(<floating*>NULL, D, 3 * H, False, threads))
    cdef floating[::1] work = np.empty(nwork, dtype)
    # rows of A packed in the long products (k >= 1024; see _packed_gemm.h)
    # rows of A packed for the per-step products (k up to 3H) and the chunked
    # weight-gradient products (k up to KC rows of dz^T)
    cdef size_t n_ab = a_work_len(<floating*>NULL, max(3 * H if reset_after else 2 * H,
                                                       <Py_ssize_t>KC), threads)
    cdef floating[::1] A_work = np.empty(max(n_ab, <size_t>1), dtype)
    cdef floating* Ab = &A_work[0] if n_ab else NULL
    cdef bint packed = not (T == 1 and B == 1)
    cdef size_t k1 = 3 * H if reset_after else H
    cdef size_t len1 = packed_len(<floating*>NULL, H, k1)
    cdef size_t len2 = 0 if reset_after else packed_len(<floating*>NULL, H, 2 * H)
    cdef floating[::1] Q = np.empty(len1 + len2 if packed else 1, dtype=dtype)
    cdef floating* Q1 = &Q[0] if packed else NULL
    cdef floating* Q2 = &Q[0] + len1 if packed and not reset_after else NULL
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, 3)

    with nogil:
        if packed:
            if reset_after:
                pack(Q1, &W[0, 0], LDW, False, H, k1, threads)
            else:
                pack(Q1, &W[2 * H, 0], LDW, False, H, H, threads)
                pack(Q2, &W[0, 0], LDW, False, H, 2 * H, threads)
        # dc0 carries dC/dc<t+1> backwards through the loop and ends as dC/dc<0>.
        for i in range(B):
            dc = &dc0[i, 0]
            dyr = &dc_T[i, 0]
            for j in range(H):
                dc[j] = dyr[j]

        # chunks of C steps [t0, t1), the last first
        t1 = T
        while t1 > 0:
            t0 = max(t1 - C, 0)
            rows = (t1 - t0) * B
            if nt > 1:
                barrier_init(&bar, nt)
                with parallel(num_threads=nt):
                    backward_steps(&dz[0, 0, 0], &dh[0, 0] if reset_after else NULL,
                                   &dz_hc[0, 0, 0] if reset_after else NULL,
                                   &drc[0, 0] if not reset_after else NULL, &dc0[0, 0],
                                   &da_sq[0, 0], &dy[0, 0, 0], &gates[0, 0, 0], &c[0, 0, 0],
                                   &hc[0, 0, 0], Q1, Q2, &lengths[0], Ab, t0, t1, B, H,
                                   reset_after, threadid(), nt, &bar)
                    barrier_end(&bar, threadid())
                barrier_done(&bar)
                if bar.solo:            # the rest of the call on one thread
                    nt = threads = 1
            else:
                for t in range(t1 - 1, t0 - 1, -1):
                    gradient_rows(&dz[t - t0, 0, 0], &dh[0, 0] if reset_after else NULL,
                                  &dz_hc[t - t0, 0, 0] if reset_after else NULL, &dc0[0, 0],
                                  &da_sq[t, 0], &dy[t, 0, 0], &gates[t, 0, 0], &c[t, 0, 0],
                                  &hc[t, 0, 0], &lengths[0], t, 0, B, H, reset_after)
                    if not reset_after:
                        # drc (B, H) = dz_c (B, H) @ W_cc[2H:3H] (H, H): d(gamma_r * c<t-1>)
                        step_product(&drc[0, 0], H, &dz[t - t0, 0, 2 * H], G3, Q1,
                                     &W[2 * H, 0], LDW, False, B, H, H, False, threads, Ab)
                        reset_gradient_rows(&dz[t - t0, 0, 0], &dc0[0, 0], &drc[0, 0],
                                            &gates[t, 0, 0], &c[t, 0, 0], &lengths[0], t,
                                            0, B, H)
                        # dc0 (B, H) += [dz_r, dz_u] (B, 2H) @ W_cc[0:2H] (2H, H)
                        step_product(&dc0[0, 0], H, &dz[t - t0, 0, 0], G3, Q2, &W[0, 0], LDW,
                                     False, B, H, 2 * H, True, threads, Ab)
                    else:
                        # dc0 (B, H) += dh (B, 3H) @ W_cc (3H, H)
                        step_product(&dc0[0, 0], H, &dh[0, 0], G3, Q1, &W[0, 0], LDW, False,
                                     B, H, G3, True, threads, Ab)

            # The chunk's rows of the parameter and input gradients.
            # dW_x (3H, D) += dz^T (3H, rows) @ x[t0:t1] (rows, D)
            product(&dW[0, H], LDW, &dz[0, 0, 0], 1, G3, &x[t0, 0, 0], D, False,
                    G3, D, rows, True, threads, &work[0], Ab)
            # dW_cc[0:2H] (2H, H) += [dz_r, dz_u]^T (2H, rows) @ c[t0:t1] (rows, H)
            product(&dW[0, 0], LDW, &dz[0, 0, 0], 1, G3, &c[t0, 0, 0], H, False,
                    2 * H, H, rows, True, threads, &work[0], Ab)
            if not reset_after:
                # dW_cc[2H:3H] (H, H) += dz_c^T (H, rows) @ hc[t0:t1] (rows, H)
                product(&dW[2 * H, 0], LDW, &dz[0, 0, 2 * H], 1, G3, &hc[t0, 0, 0], H, False,
                        H, H, rows, True, threads, &work[0], Ab)
            else:
                # dW_cc[2H:3H] (H, H) += dz_hc^T (H, rows) @ c[t0:t1] (rows, H)
                product(&dW[2 * H, 0], LDW, &dz_hc[0, 0, 0], 1, H, &c[t0, 0, 0], H, False,
                        H, H, rows, True, threads, &work[0], Ab)
                # db_cc (H,) += column sums of dz_hc
                add_column_sums(&db_cc[0], &dz_hc[0, 0, 0], rows, H)
            # db (3H,) += column sums of dz
            add_column_sums(&db[0], &dz[0, 0, 0], rows, G3)
            # dx[t0:t1] (rows, D) = dz (rows, 3H) @ W_x (3H, D): r, u and candidate all
            # contribute
            product(&dx[t0, 0, 0], D, &dz[0, 0, 0], G3, 1, &W[0, H], LDW, False,
                    rows, D, G3, False, threads, &work[0], Ab)
            t1 = t0


# ------------------------------------------------------------ one token (generation)

cdef enum:
    NUM_STATES = 1              # c


cdef void step_layer(floating** ws, const floating* x, const floating* c0, const floating* unused,
                     const floating** prm, Py_ssize_t D, Py_ssize_t H, bint reset_after,
                     int threads) noexcept nogil:
    """One layer of Stepper.step: ws = (c, gates, hc), prm = (W, b[, b_cc])."""
    forward_one(ws[0], ws[1], ws[2], x, c0, prm[0], prm[1], prm[2], D, H, reset_after, threads)


include "_stepper.pxi"
