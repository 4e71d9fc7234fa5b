# Vanilla RNN cell, compiled fast path (the NumPy reference is seqcore/reference.py).
#
# Legend: T time steps, B batch, D input features, H hidden units.
# W = [W_aa | W_ax] is (H, H + D): columns 0:H multiply a<t-1>, columns H: multiply x<t>.
#
# Structure (same numbers as the reference, different shape of the work):
#   forward:  one GEMM projects the inputs of all T*B rows at once (bias folded in),
#             then per step one GEMM for the recurrent part and one activation pass.
#   backward: per step one fused element-wise pass (pre-activation gradient dz) and one
#             GEMM back to the previous state; after the loop, big GEMMs over all T*B
#             rows give dW, dx, and a column sum gives db.
import numpy as np

from libc.stdint cimport int64_t
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy

from _fastmath cimport tanh
from _packed cimport (region_begin, region_end, region_mark, a_slot, a_work_len,
                      barrier_done, barrier_end, barrier_init, meet,
                      gemm_panels, KC, num_panels, pack, packed_len, product,
                      product_work_len, row_dot, sc_barrier_t, sc_threads, step_product,
                      step_region_threads, step_threads, unit_split)

include "_load.pxi"
include "_scratch.pxi"


cdef void step_units(floating* a_next, const floating* a_prev, const floating* x,
                     const floating* W, const floating* b, Py_ssize_t u0, Py_ssize_t u1,
                     Py_ssize_t D, Py_ssize_t H, bint relu) noexcept nogil:
    """Units [u0, u1) of one step of a single sequence (T = B = 1):
    a_next[j] = g(W[j] @ [a_prev, x] + b[j]), straight from the rows of W (H, H+D)."""
    cdef Py_ssize_t j, n = u1 - u0
    cdef floating zero = 0, v
    cdef floating* z = a_next + u0
    if n <= 0:
        return
    row_dot(z, a_prev, H, x, D, W + u0 * (H + D), H + D, n, False)
    if relu:
        for j in range(n):
            v = z[j] + b[u0 + j]
            z[j] = v if v > zero else zero
    else:
        for j in range(n):
            z[j] = tanh(z[j] + b[u0 + j])


cdef void forward_one(floating* a, const floating* x, const floating* a0, const floating* W,
                      const floating* b, Py_ssize_t D, Py_ssize_t H, bint relu,
                      int threads) noexcept nogil:
    """rnn_forward for T = B = 1 (token-by-token generation): W read once, straight from
    its rows, the units split over the threads. a (2, H): [state in, state out]."""
    cdef Py_ssize_t q, nq = step_threads(threads, H, H + D, H)
    memcpy(a, a0, H * sizeof(floating))
    if nq <= 1:
        step_units(a + H, a, x, W, b, 0, H, D, H, relu)
        return
    region_begin(nq)
    for q in prange(nq, num_threads=nq, schedule="static"):
        step_units(a + H, a, x, W, b, unit_split(a, H, q, nq), unit_split(a, H, q + 1, nq),
                   D, H, relu)
        region_mark(q)
    region_end()


cdef void activate_rows(floating* a_t, const int64_t* lengths, Py_ssize_t t, Py_ssize_t B,
                        Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t H, bint relu) noexcept nogil:
    """Step t, rows [b0, b1): a<t+1> = g(z) in place; a_t (B, H) is a[t], its next B rows
    a[t+1], which hold z (the pre-activations) on entry."""
    cdef Py_ssize_t i, j
    cdef floating zero = 0
    cdef floating* z
    cdef const floating* a_prev
    for i in range(b0, b1):
        z = a_t + (B + i) * H
        a_prev = a_t + i * H
        if t >= lengths[i]:
            for j in range(H):              # inactive: the state is copied
                z[j] = a_prev[j]
        elif relu:
            for j in range(H):
                z[j] = z[j] if z[j] > zero else zero
        else:
            for j in range(H):
                z[j] = tanh(z[j])


cdef void forward_steps(floating* a, const floating* P, const int64_t* lengths,
                        floating* abuf, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, bint relu,
                        Py_ssize_t q, Py_ssize_t nt,
                        sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of all the forward steps, in one parallel region of nt threads
    (meet: the barrier, where the team may go solo, thread 0 alone; csrc/_load.h):
    per step its panels of a[t+1] (B, H) += a[t] @ W_aa^T (P packed), a barrier, its
    rows' activation, a barrier. a (T+1, B, H); abuf: see packed_product."""
    cdef Py_ssize_t t
    cdef size_t n_p = num_panels(P, H)
    for t in range(T):
        gemm_panels(a + (t + 1) * B * H, H, a + t * B * H, H, 1, P, B, H, H, q * n_p // nt,
                    (q + 1) * n_p // nt, True, a_slot(abuf, H, q))
        if meet(bar, &q, &nt):
            return
        activate_rows(a + t * B * H, lengths, t, B, q * B // nt, (q + 1) * B // nt, H, relu)
        if meet(bar, &q, &nt):
            return


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
    cdef Py_ssize_t t, i, j
    cdef floating* z                 # (H,) pre-activation, then state a<t+1>, one row
    cdef const floating* a_prev      # (H,) a<t>, one row
    cdef const floating* bp
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    cdef sc_barrier_t bar                # the steps' region's (csrc/_load.h)
    if T == 1 and B == 1:          # one step of one sequence (generation): no workspace
        with nogil:
            forward_one(&a[0, 0, 0], &x[0, 0, 0], &a0[0, 0], &W[0, 0], &b[0], D, H, relu,
                        threads)
        return

    dtype = np.float32 if floating is float else np.float64
    # rows of A packed in the long products (k >= 1024; see _packed_gemm.h)
    cdef size_t n_ab = a_work_len(<floating*>NULL, max(D, H), threads)
    cdef floating[::1] A_work = np.empty(max(n_ab, <size_t>1), dtype)
    cdef floating* Ab = &A_work[0] if n_ab else NULL
    # the input projection's packed weights (packed as they are multiplied)
    cdef floating[::1] work = np.empty(
        product_work_len(<floating*>NULL, H, D, True, threads), dtype)
    # W_aa^T packed once for the per-step products
    cdef floating[::1] P = np.empty(packed_len(<floating*>NULL, H, H), dtype)
    cdef floating* Pp = &P[0]
    # threads of the steps' one parallel region (or 1: step by step)
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, 1)

    with nogil:
        pack(Pp, &W[0, 0], H + D, True, H, H, threads)
        # a[1:] (T*B, H) = b + x (T*B, D) @ W_ax^T: the input part of every step.
        bp = &b[0]
        for i in range(T * B):
            z = &a[1, 0, 0] + i * H
            for j in range(H):
                z[j] = bp[j]
        product(&a[1, 0, 0], H, &x[0, 0, 0], D, 1, &W[0, H], H + D, True,
                T * B, H, D, True, threads, &work[0], Ab)

        for i in range(B):
            z = &a[0, i, 0]
            a_prev = &a0[i, 0]
            for j in range(H):
                z[j] = a_prev[j]

        if nt > 1:
            barrier_init(&bar, nt)
            with parallel(num_threads=nt):
                forward_steps(&a[0, 0, 0], Pp, &lengths[0], Ab, T, B, H, relu, threadid(), nt, &bar)
                barrier_end(&bar, threadid())
            barrier_done(&bar)
        else:
            for t in range(T):
                # a[t+1] (B, H) += a[t] (B, H) @ W_aa^T
                step_product(&a[t + 1, 0, 0], H, &a[t, 0, 0], H, Pp, &W[0, 0], H + D, True,
                             B, H, H, True, threads, Ab)
                activate_rows(&a[t, 0, 0], &lengths[0], t, B, 0, B, H, relu)


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


cdef void backward_steps(floating* dz, floating* da, floating* da_sq, const floating* dy,
                         const floating* a, const floating* P, const int64_t* lengths,
                         floating* abuf, Py_ssize_t t0, Py_ssize_t t1, Py_ssize_t B,
                         Py_ssize_t H, bint relu, Py_ssize_t q, Py_ssize_t nt,
                         sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of the backward steps t1-1 down to t0, as forward_steps: per
    step its rows of the gradient pass, a barrier, its panels of da (B, H) += dz[t] @
    W_aa (P packed), a barrier. dz holds the chunk's steps from t0; the other arrays
    all steps."""
    cdef Py_ssize_t t
    cdef size_t n_p = num_panels(P, H)
    cdef floating* dz_t
    for t in range(t1 - 1, t0 - 1, -1):
        dz_t = dz + (t - t0) * B * H
        gradient_rows(dz_t, da, da_sq + t * B, dy + t * B * H, a + (t + 1) * B * H,
                      lengths, t, q * B // nt, (q + 1) * B // nt, H, relu)
        if meet(bar, &q, &nt):
            return
        gemm_panels(da, H, dz_t, H, 1, P, B, H, H, q * n_p // nt, (q + 1) * n_p // nt, True,
                    a_slot(abuf, H, q))
        if meet(bar, &q, &nt):
            return


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
    cdef Py_ssize_t t, t0, t1, i, j, rows
    cdef floating* da                # (H,) dC/da<t+1> of one sequence, running (in da0)
    cdef const floating* dyr

    dtype = np.float32 if floating is float else np.float64
    # dz: dC/d(pre-activations) of the steps of one chunk (see _scratch.pxi)
    cdef floating[:, :, ::1] dz = dz_scratch(dz_work, T, B, H, dtype)
    cdef Py_ssize_t C = dz.shape[0]
    threads = sc_threads(threads)       # one while the cores are taken (_load.h)
    cdef sc_barrier_t bar                # the steps' region's (csrc/_load.h)
    # workspace of the products over a chunk's C*B rows (dW, dx)
    cdef size_t nwork = max(product_work_len(<floating*>NULL, D, C * B, False, threads),
                            product_work_len(<floating*>NULL, H, C * B, False, threads),
                            product_work_len(<floating*>NULL, D, H, False, threads))
    cdef floating[::1] work = np.empty(nwork, dtype)
    # rows of A packed in the long products (k >= 1024; see _packed_gemm.h)
    # rows of A packed for the per-step products (k up to H) and the chunked
    # weight-gradient products (k up to KC rows of dz^T)
    cdef size_t n_ab = a_work_len(<floating*>NULL, max(H, <Py_ssize_t>KC), threads)
    cdef floating[::1] A_work = np.empty(max(n_ab, <size_t>1), dtype)
    cdef floating* Ab = &A_work[0] if n_ab else NULL
    cdef bint packed = not (T == 1 and B == 1)                                         # W_aa packed
    cdef floating[::1] P = np.empty(packed_len(<floating*>NULL, H, H) if packed else 1, dtype)
    cdef floating* Pp = &P[0] if packed else NULL
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, 1)

    with nogil:
        if packed:
            pack(Pp, &W[0, 0], H + D, False, H, H, threads)
        # da0 carries dC/da<t+1> backwards through the loop and ends as dC/da<0>.
        for i in range(B):
            da = &da0[i, 0]
            dyr = &da_T[i, 0]
            for j in range(H):
                da[j] = dyr[j]

        # chunks of C steps [t0, t1), the last first
        t1 = T
        while t1 > 0:
            t0 = max(t1 - C, 0)
            rows = (t1 - t0) * B
            if nt > 1:
                barrier_init(&bar, nt)
                with parallel(num_threads=nt):
                    backward_steps(&dz[0, 0, 0], &da0[0, 0], &da_sq[0, 0], &dy[0, 0, 0],
                                   &a[0, 0, 0], Pp, &lengths[0], Ab, t0, t1, B, H, relu,
                                   threadid(), nt, &bar)
                    barrier_end(&bar, threadid())
                barrier_done(&bar)
                if bar.solo:            # the rest of the call on one thread
                    nt = threads = 1
            else:
                for t in range(t1 - 1, t0 - 1, -1):
                    gradient_rows(&dz[t - t0, 0, 0], &da0[0, 0], &da_sq[t, 0], &dy[t, 0, 0],
                                  &a[t + 1, 0, 0], &lengths[0], t, 0, B, H, relu)
                    # da0 (B, H) += dz[t] (B, H) @ W_aa: active rows were zeroed above,
                    # inactive rows have dz = 0, so they keep their gradient unchanged.
                    step_product(&da0[0, 0], H, &dz[t - t0, 0, 0], H, Pp, &W[0, 0], H + D,
                                 False, B, H, H, True, threads, Ab)

            # The chunk's rows of the parameter and input gradients.
            # dW_ax (H, D) += dz^T (H, rows) @ x[t0:t1] (rows, D)
            product(&dW[0, H], H + D, &dz[0, 0, 0], 1, H, &x[t0, 0, 0], D, False,
                    H, D, rows, True, threads, &work[0], Ab)
            # dW_aa (H, H) += dz^T (H, rows) @ a[t0:t1] (rows, H)
            product(&dW[0, 0], H + D, &dz[0, 0, 0], 1, H, &a[t0, 0, 0], H, False,
                    H, H, rows, True, threads, &work[0], Ab)
            # db (H,) += column sums of dz
            add_column_sums(&db[0], &dz[0, 0, 0], rows, H)
            # dx[t0:t1] (rows, D) = dz (rows, H) @ W_ax (H, D)
            product(&dx[t0, 0, 0], D, &dz[0, 0, 0], H, 1, &W[0, H], H + D, False,
                    rows, D, H, False, threads, &work[0], Ab)
            t1 = t0


# ------------------------------------------------------------ one token (generation)

cdef enum:
    NUM_STATES = 1              # a


cdef void step_layer(floating** ws, const floating* x, const floating* a0, const floating* unused,
                     const floating** prm, Py_ssize_t D, Py_ssize_t H, bint relu,
                     int threads) noexcept nogil:
    """One layer of Stepper.step: ws = (a,), prm = (W, b)."""
    forward_one(ws[0], x, a0, prm[0], prm[1], D, H, relu, threads)


include "_stepper.pxi"
