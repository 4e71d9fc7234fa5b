# LSTM kernels, compiled fast path (the oracle is seqcore/reference.py: lstm_forward/lstm_backward).
#
# Legend: T time steps, B batch, D input features, H hidden units; the 4H gate
# axis holds the row blocks (u, f, c, o) of W and b.
#
# Same math and signatures as the reference, different structure:
# * forward: one GEMM projects the inputs of all T*B rows through W[:, H:] into
#   `gates`; each step then adds a[t] @ W[:, :H]^T (one GEMM) and runs one fused
#   element-wise pass that adds the bias, applies the gate nonlinearities in place
#   and writes c[t+1], a[t+1];
# * backward: each step (reversed) runs one fused element-wise pass producing
#   dz[t] = dC/d(pre-activations) into a (T, B, 4H) workspace, then one GEMM
#   carries da back through W[:, :H]; after the loop, dW, db, dp and dx come from
#   a few big GEMMs / sweeps over all T*B rows of dz.
# Inactive steps (t >= lengths[b]) copy the state forward, have gates = 0 and dz = 0.
cimport cython
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from cython.parallel cimport parallel, prange, threadid

import numpy as np

from _fastmath cimport sigmoid, tanh
from _packed cimport (region_begin, region_end, region_mark, a_slot, a_work_len,
                      barrier_done, barrier_end, barrier_init, meet,
                      gemm_panels, KC, num_panels, pack, packed_len, product,
                      product_work_len, row_dot, sc_barrier_t, sc_threads, step_product,
                      step_region_threads, step_threads, unit_split)

include "_load.pxi"
include "_scratch.pxi"

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
cdef inline void forward_unit(real_r g, real_r c_next, real_r a_next, real_r c_prev,
                              real_r b, real_r p, bint peep, Py_ssize_t j,
                              Py_ssize_t H) noexcept nogil:
    """Unit j of forward_step; p is read only when peep (a constant where this is
    inlined, so the loops stay branch-free and vectorized)."""
    gamma_u = sigmoid(g[j] + b[j] + (p[j] * c_prev[j] if peep else 0))
    gamma_f = sigmoid(g[H + j] + b[H + j] + (p[H + j] * c_prev[j] if peep else 0))
    c_tilde = tanh(g[2 * H + j] + b[2 * H + j])
    c_t = gamma_u * c_tilde + gamma_f * c_prev[j]
    gamma_o = sigmoid(g[3 * H + j] + b[3 * H + j] + (p[2 * H + j] * c_t if peep else 0))
    g[j] = gamma_u
    g[H + j] = gamma_f
    g[2 * H + j] = c_tilde
    g[3 * H + j] = gamma_o
    c_next[j] = c_t
    a_next[j] = gamma_o * tanh(c_t)


cdef void forward_step(real_r g, real_r c_next, real_r a_next, real_r c_prev,
                       real_r b, real_r p, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """Gate pass of units [0, n) of one active (step, sequence); the gate blocks are H
    apart. g (4 blocks): the pre-activations without bias in, [gamma_u, gamma_f,
    c_tilde, gamma_o] out; b (4 blocks); p (3 blocks) or NULL without peepholes;
    c_prev = c<t-1>; out c_next, a_next = c<t>, a<t>."""
    cdef Py_ssize_t j
    if p != NULL:
        for j in range(n):
            forward_unit(g, c_next, a_next, c_prev, b, p, True, j, H)
    else:
        for j in range(n):
            forward_unit(g, c_next, a_next, c_prev, b, p, False, j, H)


cdef void step_units(floating* g, floating* c_next, floating* a_next, const floating* c_prev,
                     const floating* a_prev, const floating* x, const floating* W,
                     const floating* b, const floating* p, Py_ssize_t u0, Py_ssize_t u1,
                     Py_ssize_t D, Py_ssize_t H) noexcept nogil:
    """Units [u0, u1) of one step of a single sequence (T = B = 1): the four gate rows
    of each unit, W[gate, :] @ [a<t-1>, x<t>], then their gate pass. Arguments as in
    forward_step; a_prev (H), x (D); W (4H, H+D)."""
    cdef Py_ssize_t gate, row, n = u1 - u0
    if n <= 0:
        return
    for gate in range(4):
        row = gate * H + u0
        row_dot(g + row, a_prev, H, x, D, W + row * (H + D), H + D, n, False)
    forward_step(g + u0, c_next + u0, a_next + u0, <floating*>c_prev + u0, <floating*>b + u0,
                 <floating*>p + u0 if p != NULL else NULL, n, H)


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


cdef void forward_rows(floating* g, floating* c_t, floating* a_t, floating* b, floating* p,
                       const int64_t* lengths, Py_ssize_t t, Py_ssize_t B, Py_ssize_t b0,
                       Py_ssize_t b1, Py_ssize_t H) noexcept nogil:
    """The gate pass of step t for sequences [b0, b1) (see forward_step). g (B, 4H):
    gates[t]; c_t, a_t (B, H): c[t], a[t], whose next B rows are c[t+1], a[t+1]."""
    cdef Py_ssize_t bi, G = 4 * H
    cdef floating* c_next = c_t + B * H
    cdef floating* a_next = a_t + B * H
    for bi in range(b0, b1):
        if t < lengths[bi]:
            forward_step(g + bi * G, c_next + bi * H, a_next + bi * H, c_t + bi * H, b, p, H, H)
        else:                                        # inactive: the state is copied
            memset(g + bi * G, 0, G * sizeof(floating))
            memcpy(c_next + bi * H, c_t + bi * H, H * sizeof(floating))
            memcpy(a_next + bi * H, a_t + bi * H, H * sizeof(floating))


cdef void backward_rows(floating* dz, floating* da, floating* dc, floating* tot,
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


cdef void forward_steps(floating* gates, floating* c, floating* a, const floating* P,
                        floating* b, floating* p, const int64_t* lengths, floating* abuf,
                        Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t q,
                        Py_ssize_t nt,
                        sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of all the forward steps, in one parallel region of nt threads
    (meet: the barrier, where the team may go solo, thread 0 alone; csrc/_load.h):
    per step its panels of gates[t] (B, 4H) += a[t] @ W[:, :H]^T (P packed), a
    barrier, its rows of the gate pass, a barrier. gates (T, B, 4H); c, a (T+1, B, H);
    abuf: see packed_product."""
    cdef Py_ssize_t t, G = 4 * H
    cdef size_t n_p = num_panels(P, G)
    for t in range(T):
        gemm_panels(gates + t * B * G, G, a + t * B * H, H, 1, P, B, G, H, q * n_p // nt,
                    (q + 1) * n_p // nt, True, a_slot(abuf, H, q))
        if meet(bar, &q, &nt):
            return
        forward_rows(gates + t * B * G, c + t * B * H, a + t * B * H, b, p, lengths, t, B,
                     q * B // nt, (q + 1) * B // nt, H)
        if meet(bar, &q, &nt):
            return


cdef void backward_steps(floating* dz, floating* da, floating* dc, floating* tot,
                         floating* da_sq, floating* dc_sq, const floating* dy,
                         const floating* gates, const floating* c, floating* p,
                         const floating* P, const int64_t* lengths, floating* abuf,
                         Py_ssize_t t0, Py_ssize_t t1, Py_ssize_t B, Py_ssize_t H,
                         Py_ssize_t q, Py_ssize_t nt,
                         sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of the backward steps t1-1 down to t0, as forward_steps: per
    step its rows of the gate pass (tot: (nt, 2, H) scratch), a barrier, its panels of
    da (B, H) += dz[t] (B, 4H) @ W[:, :H] (P packed), a barrier. dz holds the chunk's
    steps from t0; the other arrays all steps."""
    cdef Py_ssize_t t, G = 4 * H
    cdef size_t n_p = num_panels(P, H)
    cdef floating* dz_t
    for t in range(t1 - 1, t0 - 1, -1):
        dz_t = dz + (t - t0) * B * G
        backward_rows(dz_t, da, dc, tot + q * 2 * H, da_sq + t * B, dc_sq + t * B,
                      dy + t * B * H, gates + t * B * G, c + t * B * H, p, lengths, t, B,
                      q * B // nt, (q + 1) * B // nt, H)
        if meet(bar, &q, &nt):
            return
        gemm_panels(da, H, dz_t, G, 1, P, B, H, G, q * n_p // nt, (q + 1) * n_p // nt, True,
                    a_slot(abuf, G, q))
        if meet(bar, &q, &nt):
            return


cdef inline void accumulate_prod(real_r out, real_r u, real_r v, Py_ssize_t n) noexcept nogil:
    """out (n) += u (n) * v (n)"""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] += u[j] * v[j]


cdef void forward_one(floating* a, floating* c, floating* g, const floating* x,
                      const floating* a0, const floating* c0, const floating* W,
                      const floating* b, const floating* p, Py_ssize_t D, Py_ssize_t H,
                      int threads) noexcept nogil:
    """lstm_forward for T = B = 1 (token-by-token generation): W is read once, straight
    from its rows, and the threads split the units, each computing its units' gate rows
    and then their gate pass, so one parallel region makes the whole step.
    a, c (2, H): [state in, state out]; g (4H)."""
    cdef Py_ssize_t q, nq = step_threads(threads, 4 * H, H + D, H)
    memcpy(a, a0, H * sizeof(floating))
    memcpy(c, c0, H * sizeof(floating))
    if nq <= 1:
        step_units(g, c + H, a + H, c, a, x, W, b, p, 0, H, D, H)
        return
    region_begin(nq)
    for q in prange(nq, num_threads=nq, schedule="static"):
        step_units(g, c + H, a + H, c, a, x, W, b, p, unit_split(a, H, q, nq),
                   unit_split(a, H, q + 1, nq), D, H)
        region_mark(q)
    region_end()


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
    cdef Py_ssize_t G = 4 * H, HD = H + D
    cdef Py_ssize_t t
    cdef floating* p_used = <floating*>&p[0, 0] if peephole else NULL   # NULL: no peepholes
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    cdef sc_barrier_t bar                # the steps' region's (csrc/_load.h)
    if T == 1 and B == 1:          # one step of one sequence (generation): no workspace
        with nogil:
            forward_one(&a[0, 0, 0], &c[0, 0, 0], &gates[0, 0, 0], &x[0, 0, 0], &a0[0, 0],
                        &c0[0, 0], &W[0, 0], &b[0], p_used, D, H, threads)
        return
    dtype = np.float32 if floating is float else np.float64
    # rows of A packed in the long products (k >= 1024; see _packed_gemm.h)
    cdef size_t n_ab = a_work_len(<floating*>NULL, max(D, H), threads)
    cdef floating[::1] A_work = np.empty(max(n_ab, <size_t>1), dtype)
    cdef floating* Ab = &A_work[0] if n_ab else NULL
    # the input projection's packed weights (packed as they are multiplied)
    cdef floating[::1] work = np.empty(
        product_work_len(<floating*>NULL, 4 * H, D, True, threads), dtype)
    # threads of the steps' one parallel region (or 1: step by step)
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, 4)
    # W[:, :H]^T packed once for the per-step products
    cdef floating[::1] P = np.empty(packed_len(<floating*>NULL, G, H), dtype)
    cdef floating* Pp = &P[0]
    with nogil:
        pack(Pp, &W[0, 0], HD, True, G, H, threads)
        memcpy(&a[0, 0, 0], &a0[0, 0], B * H * sizeof(floating))
        memcpy(&c[0, 0, 0], &c0[0, 0], B * H * sizeof(floating))
        # gates (T*B, 4H) = x (T*B, D) @ W[:, H:]^T, all steps at once
        product(&gates[0, 0, 0], G, &x[0, 0, 0], D, 1, &W[0, 0] + H, HD, True,
                T * B, G, D, False, threads, &work[0], Ab)
        if nt > 1:
            # one parallel region for all steps, two barriers per step instead of two
            # regions (small forward 2.52 -> 2.43 ms, medium 108 -> 106 ms): thread q
            # computes its panels of gates[t], then its rows' gate pass
            barrier_init(&bar, nt)
            with parallel(num_threads=nt):
                forward_steps(&gates[0, 0, 0], &c[0, 0, 0], &a[0, 0, 0], Pp, <floating*>&b[0],
                              p_used, &lengths[0], Ab, T, B, H, threadid(), nt, &bar)
                barrier_end(&bar, threadid())
            barrier_done(&bar)
        else:
            for t in range(T):
                # gates[t] (B, 4H) += a[t] (B, H) @ W[:, :H]^T, then the gate pass
                step_product(&gates[t, 0, 0], G, &a[t, 0, 0], H, Pp, &W[0, 0], HD, True,
                             B, G, H, True, threads, Ab)
                forward_rows(&gates[t, 0, 0], &c[t, 0, 0], &a[t, 0, 0], <floating*>&b[0],
                             p_used, &lengths[0], t, B, 0, B, H)


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
    cdef Py_ssize_t G = 4 * H, HD = H + D
    cdef Py_ssize_t t, t0, t1, r, rows
    cdef floating* da                                # (B, H): dC/da<t+1>, then da<t>
    cdef floating* dc                                # (B, H): dC/dc<t+1>, then dc<t>
    cdef floating* dz_r
    cdef floating* c_r
    dtype = np.float32 if floating is float else np.float64
    # dz: dC/d(pre-activations) of the steps of one chunk (see _scratch.pxi)
    cdef floating[:, :, ::1] dz = dz_scratch(dz_work, T, B, G, dtype)
    cdef Py_ssize_t C = dz.shape[0]
    # threads of the steps' one parallel region (or 1: step by step; always for a
    # single step of a single row, whose Pp is NULL)
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    cdef sc_barrier_t bar                # the steps' region's (csrc/_load.h)
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, 4)
    cdef floating[:, :, ::1] tot = np.empty((nt, 2, H), dtype=dtype)  # total da, dc of a row
    cdef floating[:, ::1] p_zero = np.zeros((3, H), dtype=dtype)     # p without peepholes
    cdef floating* p_used = <floating*>&p[0, 0] if peephole else &p_zero[0, 0]
    # workspace of the products over a chunk's C*B rows (dW, dx)
    cdef size_t nwork = max(product_work_len(<floating*>NULL, D, C * B, False, threads),
                            product_work_len(<floating*>NULL, H, C * B, False, threads),
                            product_work_len(<floating*>NULL, D, 4 * H, False, threads))
    cdef floating[::1] work = np.empty(nwork, dtype)
    # rows of A packed in the long products (k >= 1024; see _packed_gemm.h)
    # rows of A packed for the per-step products (k up to 4H) and the chunked
    # weight-gradient products (k up to KC rows of dz^T)
    cdef size_t n_ab = a_work_len(<floating*>NULL, max(4 * H, <Py_ssize_t>KC), threads)
    cdef floating[::1] A_work = np.empty(max(n_ab, <size_t>1), dtype)
    cdef floating* Ab = &A_work[0] if n_ab else NULL
    # W[:, :H] packed for the per-step products
    cdef bint packed = not (T == 1 and B == 1)
    cdef floating[::1] P = np.empty(packed_len(<floating*>NULL, H, G) if packed else 1, dtype)
    cdef floating* Pp = &P[0] if packed else NULL
    with nogil:
        if packed:
            pack(Pp, &W[0, 0], HD, False, H, G, threads)
        # da0, dc0 double as the running gradients w.r.t. the state
        da = &da0[0, 0]
        dc = &dc0[0, 0]
        memcpy(da, &da_T[0, 0], B * H * sizeof(floating))
        memcpy(dc, &dc_T[0, 0], B * H * sizeof(floating))
        # chunks of C steps [t0, t1), the last first
        t1 = T
        while t1 > 0:
            t0 = max(t1 - C, 0)
            rows = (t1 - t0) * B
            if nt > 1:
                # one parallel region for the chunk's steps, as in forward: thread q
                # runs its rows' gate pass, then its panels of the product
                barrier_init(&bar, nt)
                with parallel(num_threads=nt):
                    backward_steps(&dz[0, 0, 0], da, dc, &tot[0, 0, 0], &da_sq[0, 0],
                                   &dc_sq[0, 0], &dy[0, 0, 0], &gates[0, 0, 0], &c[0, 0, 0],
                                   p_used, Pp, &lengths[0], Ab, t0, t1, B, H, threadid(), nt, &bar)
                    barrier_end(&bar, threadid())
                barrier_done(&bar)
                if bar.solo:            # the rest of the call on one thread
                    nt = threads = 1
            else:
                for t in range(t1 - 1, t0 - 1, -1):
                    backward_rows(&dz[t - t0, 0, 0], da, dc, &tot[0, 0, 0], &da_sq[t, 0],
                                  &dc_sq[t, 0], &dy[t, 0, 0], &gates[t, 0, 0], &c[t, 0, 0],
                                  p_used, &lengths[0], t, B, 0, B, H)
                    # da (B, H) += dz[t] (B, 4H) @ W[:, :H]; active rows were zeroed,
                    # inactive rows have dz = 0 and keep their da
                    step_product(da, H, &dz[t - t0, 0, 0], G, Pp, &W[0, 0], HD, False,
                                 B, H, G, True, threads, Ab)
            # The chunk's rows of the parameter and input gradients.
            # dW[:, H:] (4H, D) += dz^T (4H, rows) @ x[t0:t1] (rows, D)
            product(&dW[0, 0] + H, HD, &dz[0, 0, 0], 1, G, &x[t0, 0, 0], D, False,
                    G, D, rows, True, threads, &work[0], Ab)
            # dW[:, :H] (4H, H) += dz^T (4H, rows) @ a[t0:t1] (rows, H)
            product(&dW[0, 0], HD, &dz[0, 0, 0], 1, G, &a[t0, 0, 0], H, False,
                    G, H, rows, True, threads, &work[0], Ab)
            # dx[t0:t1] (rows, D) = dz (rows, 4H) @ W[:, H:] (4H, D)
            product(&dx[t0, 0, 0], D, &dz[0, 0, 0], G, 1, &W[0, 0] + H, HD, False,
                    rows, D, G, False, threads, &work[0], Ab)
            # db += column sums of dz
            add_column_sums(&db[0], &dz[0, 0, 0], rows, G)
            if peephole:
                # dp[0] += sum dz_u * c<t-1>, dp[1] += sum dz_f * c<t-1>,
                # dp[2] += sum dz_o * c<t>
                for r in range(rows):
                    dz_r = &dz[0, 0, 0] + r * G
                    c_r = <floating*>&c[t0, 0, 0] + r * H      # c<t-1>; c<t> is B rows later
                    accumulate_prod(&dp[0, 0], dz_r, c_r, H)
                    accumulate_prod(&dp[1, 0], dz_r + H, c_r, H)
                    accumulate_prod(&dp[2, 0], dz_r + 3 * H, c_r + B * H, H)
            t1 = t0


# ------------------------------------------------------------ one token (generation)

cdef enum:
    NUM_STATES = 2              # (a, c)


cdef void step_layer(floating** ws, const floating* x, const floating* a0, const floating* c0,
                     const floating** prm, Py_ssize_t D, Py_ssize_t H, bint peephole,
                     int threads) noexcept nogil:
    """One layer of Stepper.step: ws = (a, c, gates), prm = (W, b[, p])."""
    forward_one(ws[0], ws[1], ws[2], x, a0, c0, prm[0], prm[1], prm[2] if peephole else NULL,
                D, H, threads)


include "_stepper.pxi"
