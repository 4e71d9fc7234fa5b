# The recurrent driver, compiled fast path: the part of every cell's kernels that is
# not gate math (included by csrc/_rnn.pyx, _gru.pyx and _lstm.pyx).
#
# Legend: T time steps, B batch, D input features, H hidden units, G gate blocks (RNN
# 1, GRU 3, LSTM 4). W = [W_aa | W_ax] is (G*H, H + D): columns 0:H multiply the state
# a<t-1> (the GRU's c<t-1>), columns H: multiply x<t>.
#
# What the driver does, once for all cells:
#   forward:  packs the recurrent weights once; projects the inputs, W_ax x<t> (+ b),
#             of all T*B rows in one product, or (inputs_by_step) each step its own
#             rows just before its recurrent product; then runs the steps, each a
#             sequence of phases "product, then gate pass": in one parallel region of nt
#             threads with a barrier after each half-phase (thread q: its panels of
#             the product, its rows of the gate pass), or, where the units split
#             evenly into panels, with each thread taking its own units through the
#             product and the gate pass and a barrier after each phase (by_units), or,
#             for short steps of many rows, with each thread taking its own sequences
#             through all the steps and no barrier (by_sequences); or step by step on
#             one.
#   backward: runs the steps from the last in chunks of C steps (_scratch.pxi), each
#             step a sequence of phases "gradient pass, then product" (the product
#             carries dC/da back through W_aa), split over the threads as forward's;
#             after each chunk, the weight-gradient
#             products dW_ax += dz^T x, dW_aa += dz^T a, dx = dz W_ax and db.
#   one token (T = B = 1, generation): the units split over the threads, each
#             thread reading its units' rows of W (no packing), one region a phase.
#
# What a cell supplies (cdef functions of these names, fused on `floating`; v holds
# the call's arrays by slot, the driver's slots below, then the cell's own):
#   forward_rows(v, r, ph, t, b0, b1, u0, u1, q)  the gate pass of forward phase ph
#                                              at step t, rows [b0, b1), units [u0, u1),
#                                              on thread q;
#   backward_rows(v, r, ph, t, t0, b0, b1, q)  the gradient pass of backward phase ph
#                                              (dz of the chunk that starts at t0);
#   backward_chunk(v, r, t0, t1)               the cell's own gradients of a chunk of
#                                              rows (the peepholes' dp, the GRU's db_cc);
#   step_units(v, r, ph, u0, u1)               phase ph of one token's step, units
#                                              [u0, u1) (W's rows, read directly).
# and describes in a Recurrence the products of its steps: one a step for the RNN and
# the LSTM, W_aa a<t-1> (GRU reset after: W_cc c<t-1>); two for the notes' GRU (reset
# before), whose candidate multiplies Γr * c<t-1>, known only after the first phase's
# gate pass: W_cc[r, u] c<t-1>, then W_cc[c] (Γr * c<t-1>).
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy

from _packed cimport (region_begin, region_end, region_mark, a_slot, a_work_len, row_split,
                      barrier_done, barrier_end, barrier_init, dense_row, meet, gemm_panels, KC,
                      num_panels, pack, packed_len, product, product_work_len, row_dot_w,
                      sc_barrier_t, sc_threads, step_product, step_region_threads, step_threads,
                      unit_split)

include "_load.pxi"
include "_scratch.pxi"


cdef enum:
    # the driver's slots of v, the call's arrays (a cell's own slots follow, from CELL)
    X = 0           # (T, B, D) x
    W_ = 1          # (G*H, H+D) W
    PACKED = 2      # the recurrent weights packed for the steps' products
    PROJ = 3        # (T, B, >= G*H) where the input projection goes (row stride G*H)
    BIAS = 4        # (G*H,) b (folded into the projection, or added by the gate pass)
    STATE = 5       # (T+1, B, H) a (the GRU's c): what dW_aa multiplies, unless noted
    DX = 6          # (T, B, D) dx
    DW = 7          # (G*H, H+D) dW
    DB = 8          # (G*H,) db
    DZ = 9          # (C, B, G*H) dC/d(pre-activations) of a chunk's steps
    STATE0 = 10     # initial states in (forward), gradients of the last out (backward):
                    # STATE0 + i is copied to STATE_IN + i
    STATE_IN = 12   # where the steps start from: a[0] (c[0]) / the running gradients
    DY = 14         # (T, B, H) dC/da<t> from the outputs
    DA_SQ = 15      # (T, B) ||dC/da<t+1>||^2
    QW = 16         # one token (step_layer): W in int8 (signed char*), or NULL
    QSCALE = 17     # and its rows' scales (G*H,) (seqcore.quantize)
    PACKED_X = 18   # W_ax^T packed, when the inputs go step by step (inputs_by_step)
    CELL = 19
    MAX_SLOTS = 27
    INPUT_STEP_MIN_ROWS = 16
    MAX_PHASES = 2


cdef enum Split:
    # how forward's steps share the threads (forward_split_of)
    SERIAL              # one thread, step by step
    STEPS               # each product's panels and the gate pass's rows (forward_steps)
    UNITS               # each thread its units (forward_units)
    SEQUENCES           # each thread its sequences (forward_sequences)


ctypedef struct Product:
    # one phase's product of a step t: C_t (B, n) (+)= A_t (B, k) @ R, R = W_aa^T's
    # columns [w_row, w_row + n) forward (W_aa's rows [w_row, w_row + k) backward)
    int C, A                            # slots
    Py_ssize_t c_off, c_step, ldc       # C_t = v[C] + c_off + t * c_step, rows ldc apart
    Py_ssize_t a_off, a_step, lda       # A_t likewise (backward: t counts from the chunk)
    Py_ssize_t n, k, w_row
    bint accumulate
    Py_ssize_t p_off                    # R packed: v[PACKED] + p_off (set by the driver)


ctypedef struct WeightGrad:
    # dW_aa[row, row + m) += Z^T (m, rows) @ S (rows, H) over a chunk [t0, t1)
    int Z, S                            # slots; Z: the chunk's (C, B, ldz), S: (T+1, B, H)
    Py_ssize_t z_off, ldz, row, m


ctypedef struct Recurrence:
    Py_ssize_t T, B, D, H, G
    const int64_t* lengths              # (B,)
    bint option                         # the cell's flag (relu, reset_after, peephole)
    bint fold_bias                      # b starts the projection (else the gate pass adds it)
    int phases, states, grads           # products a step, states carried, dW_aa parts
    Product prod[MAX_PHASES]
    WeightGrad dW_aa[MAX_PHASES]
    Py_ssize_t unit_phases              # one token: regions a step
    bint by_step                        # each step multiplies its own inputs (inputs_by_step)
    Py_ssize_t unit_cols                # the units go in blocks of this many (by_units)
    Py_ssize_t slot_k                   # rows of A a thread's slot of abuf is sized for


cdef inline Product step_product_of(int C, Py_ssize_t c_off, Py_ssize_t c_step,
                                    Py_ssize_t ldc, int A, Py_ssize_t a_off,
                                    Py_ssize_t a_step, Py_ssize_t lda, Py_ssize_t n,
                                    Py_ssize_t k, Py_ssize_t w_row,
                                    bint accumulate) noexcept nogil:
    cdef Product p
    p.C, p.c_off, p.c_step, p.ldc = C, c_off, c_step, ldc
    p.A, p.a_off, p.a_step, p.lda = A, a_off, a_step, lda
    p.n, p.k, p.w_row, p.accumulate, p.p_off = n, k, w_row, accumulate, 0
    return p


cdef inline WeightGrad weight_grad_of(int Z, Py_ssize_t z_off, Py_ssize_t ldz, int S,
                                      Py_ssize_t row, Py_ssize_t m) noexcept nogil:
    cdef WeightGrad g
    g.Z, g.z_off, g.ldz, g.S, g.row, g.m = Z, z_off, ldz, S, row, m
    return g


cdef inline Recurrence recurrence(Py_ssize_t T, Py_ssize_t B, Py_ssize_t D, Py_ssize_t H,
                                  Py_ssize_t G, const int64_t* lengths, bint option,
                                  int states) noexcept nogil:
    cdef Recurrence r
    r.T, r.B, r.D, r.H, r.G, r.lengths, r.option, r.states = T, B, D, H, G, lengths, option, states
    r.phases = r.grads = 0
    r.fold_bias = True
    r.unit_phases = 1
    r.by_step = False
    r.unit_cols = 0
    r.slot_k = max(D, H)
    return r


cdef inline void add_product(Recurrence* r, Product p) noexcept nogil:
    r.prod[r.phases] = p
    r.phases += 1


cdef inline void add_weight_grad(Recurrence* r, WeightGrad g) noexcept nogil:
    r.dW_aa[r.grads] = g
    r.grads += 1


cdef inline floating* c_at(floating** v, const Product* p, Py_ssize_t t) noexcept nogil:
    return v[p.C] + p.c_off + t * p.c_step


cdef inline floating* a_at(floating** v, const Product* p, Py_ssize_t t) noexcept nogil:
    return v[p.A] + p.a_off + t * p.a_step


cdef size_t pack_products(floating** v, Recurrence* r, bint forward, bint only_len,
                          int threads) noexcept nogil:
    """The packed length of the steps' products' weights; unless only_len, packs them
    into v[PACKED] (forward W_aa^T's columns, backward W_aa's rows) and notes where."""
    cdef size_t n = 0
    cdef int ph
    cdef Product* p
    cdef Py_ssize_t ldw = r.H + r.D
    for ph in range(r.phases):
        p = &r.prod[ph]
        p.p_off = n
        if not only_len:
            pack(v[PACKED] + n, v[W_] + p.w_row * ldw, ldw, forward, p.n, p.k, threads)
        n += packed_len(<floating*>NULL, p.n, p.k)
    return n


cdef inline void copy_states(floating** v, const Recurrence* r) noexcept nogil:
    """STATE_IN + i = STATE0 + i, (B, H) each: where the steps start."""
    cdef int i
    for i in range(r.states):
        memcpy(v[STATE_IN + i], v[STATE0 + i], r.B * r.H * sizeof(floating))


# ------------------------------------------------------------------------- forward

cdef void forward_steps(floating** v, const Recurrence* r, floating* abuf, Py_ssize_t q,
                        Py_ssize_t nt, sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of all the forward steps, in one parallel region of nt threads:
    per phase of a step its panels of the product, a barrier, its rows of the gate
    pass, a barrier (meet: where the team may go solo, thread 0 alone; csrc/_load.h).
    abuf: see packed_product."""
    cdef Py_ssize_t t, B = r.B
    cdef int ph
    cdef size_t n_p, n_x = num_panels(v[PACKED], r.G * r.H)
    cdef const Product* p
    for t in range(r.T):
        if r.by_step:
            input_rows(v, r, t, 0, B, q * n_x // nt, (q + 1) * n_x // nt,
                       a_slot(abuf, r.slot_k, q))
            if meet(bar, &q, &nt):
                return
        for ph in range(r.phases):
            p = &r.prod[ph]
            n_p = num_panels(v[PACKED], p.n)
            gemm_panels(c_at(v, p, t), p.ldc, a_at(v, p, t), p.lda, 1, v[PACKED] + p.p_off,
                        B, p.n, p.k, q * n_p // nt, (q + 1) * n_p // nt, p.accumulate,
                        a_slot(abuf, r.slot_k, q))
            if meet(bar, &q, &nt):
                return
            forward_rows(v, r, ph, t, q * B // nt, (q + 1) * B // nt, 0, r.H, q)
            if meet(bar, &q, &nt):
                return


cdef inline Py_ssize_t unit_bound(const Recurrence* r, Py_ssize_t q,
                                   Py_ssize_t nt) noexcept nogil:
    """First of thread q's units when nt threads split them (by_units), q = nt giving H:
    at multiples of a panel's columns, so that a thread's columns of every gate block
    are whole panels."""
    cdef Py_ssize_t blocks = r.H // r.unit_cols
    return (q * blocks // nt) * r.unit_cols


cdef void forward_units(floating** v, const Recurrence* r, floating* abuf, Py_ssize_t q,
                        Py_ssize_t nt, sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of all the forward steps, split by units: at each phase of a step,
    its units' columns of every gate block of the product (the step's inputs first, when
    they go step by step), then their gate pass over all the rows, then a barrier: the
    next product needs every unit of the state. One barrier a phase, where forward_steps
    has two (three with the inputs by step), and each thread's gate pass reads the
    columns it has just computed. abuf: see packed_product."""
    cdef Py_ssize_t t, u0, u1, blk, B = r.B, H = r.H, w = r.unit_cols
    cdef int ph
    cdef const Product* p
    cdef floating* slot = a_slot(abuf, r.slot_k, q)
    u0, u1 = unit_bound(r, q, nt), unit_bound(r, q + 1, nt)
    for t in range(r.T):
        if r.by_step:
            for blk in range(r.G):
                input_rows(v, r, t, 0, B, (blk * H + u0) // w, (blk * H + u1) // w, slot)
        for ph in range(r.phases):
            p = &r.prod[ph]
            for blk in range(p.n // H):
                gemm_panels(c_at(v, p, t), p.ldc, a_at(v, p, t), p.lda, 1,
                            v[PACKED] + p.p_off, B, p.n, p.k, (blk * H + u0) // w,
                            (blk * H + u1) // w, p.accumulate, slot)
            forward_rows(v, r, ph, t, 0, B, u0, u1, q)
            if meet(bar, &q, &nt):
                return
            if nt == 1:         # the meet went solo: thread 0 runs every unit from here
                u0, u1 = 0, H
                slot = a_slot(abuf, r.slot_k, 0)


cdef bint by_units(const Recurrence* r, Py_ssize_t nt, Py_ssize_t cols) noexcept nogil:
    """Whether the steps' region of nt threads splits the units (forward_units) rather
    than each product's panels and the gate pass's rows (forward_steps): when the
    units divide into whole panels of cols columns, at least one a thread. Every
    product's columns are whole gate blocks of H units, so a thread's units are then
    whole panels of each block. (by_sequences, where it holds, goes first: the small
    LSTM and GRU (B 32, H 128) ran 40% slower split by units than by sequences.)
    Forward, 2 threads, Intel Xeon (KVM, AVX-512, family 6 model 207), against
    forward_steps in alternating processes (median of the rounds' ratios): stream
    (B 1, T 256, D 128, H 256), where a gate pass of one row ran on one thread, LSTM
    0.93, GRU 0.88, reset-after GRU 1.00 on avx512; 0.96, 0.84, 0.95 on avx2; 0.97,
    0.92, 0.99 on generic. Medium (B 64, H 512) level: LSTM 0.99, GRU 0.96,
    reset-after GRU 1.07, within the host's noise."""
    return nt > 1 and r.H % cols == 0 and r.H // cols >= nt


cdef void forward_sequences(floating** v, const Recurrence* r, floating* abuf,
                            Py_ssize_t q, Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """Sequences [b0, b1) through all the forward steps, on thread q: at each phase of a
    step, their rows of the product (every panel), then their gate pass. No other
    thread reads or writes their rows, so nothing waits for another thread until the
    end. abuf: see packed_product."""
    cdef Py_ssize_t t
    cdef int ph
    cdef const Product* p
    for t in range(r.T):
        if r.by_step:
            input_rows(v, r, t, b0, b1, 0, num_panels(v[PACKED], r.G * r.H),
                       a_slot(abuf, r.slot_k, q))
        for ph in range(r.phases):
            p = &r.prod[ph]
            gemm_panels(c_at(v, p, t) + b0 * p.ldc, p.ldc, a_at(v, p, t) + b0 * p.lda, p.lda,
                        1, v[PACKED] + p.p_off, b1 - b0, p.n, p.k, 0,
                        num_panels(v[PACKED], p.n), p.accumulate, a_slot(abuf, r.slot_k, q))
            forward_rows(v, r, ph, t, b0, b1, 0, r.H, q)


cdef void input_rows(floating** v, const Recurrence* r, Py_ssize_t t, Py_ssize_t b0,
                     Py_ssize_t b1, size_t p0, size_t p1, floating* abuf) noexcept nogil:
    """Step t's input part, rows [b0, b1), panels [p0, p1) of its G*H columns, when the
    inputs go step by step: v[PROJ][t] = (b +) x<t> @ W_ax^T, from v[PACKED_X]."""
    cdef Py_ssize_t GH = r.G * r.H, i, j
    cdef Py_ssize_t nr = <Py_ssize_t>packed_len(v[PACKED], 1, 1)     # columns a panel
    cdef Py_ssize_t j0 = <Py_ssize_t>p0 * nr, j1 = min(<Py_ssize_t>p1 * nr, GH)
    cdef floating* z = v[PROJ] + t * r.B * GH
    cdef const floating* b = v[BIAS]
    if r.fold_bias:
        for i in range(b0, b1):
            for j in range(j0, j1):
                z[i * GH + j] = b[j]
    gemm_panels(z + b0 * GH, GH, v[X] + (t * r.B + b0) * r.D, r.D, 1, v[PACKED_X], b1 - b0,
                GH, r.D, p0, p1, r.fold_bias, abuf)


cdef bint inputs_by_step(const Recurrence* r, Py_ssize_t nt, int threads) noexcept nogil:
    """Whether each step multiplies its own inputs, x<t> @ W_ax^T, just before its
    recurrent product adds to the same rows, rather than one product for all T*B rows
    first. The step's rows are then still in cache for the recurrent product and the
    gate pass, where the whole projection's (T*B, G*H) had gone to memory, and the
    threads share the inputs' product as they share the steps. Small (B 32, T 64, D 64,
    H 128) forward on avx512: one thread, LSTM 4.14 -> 3.94 ms, GRU 3.16 -> 3.04; two,
    GRU 2.04 -> 1.88, reset-after GRU 2.19 -> 1.95, RNN 0.92 -> 0.82, LSTM unchanged;
    medium LSTM (B 64, H 512), two threads, 99.9 -> 97.3 ms. On avx2 and generic the
    small rows moved within 3% either way (two threads: LSTM 3% slower, GRU 2-6%
    faster), where the products leave less of the time to memory. From 16 rows, and only
    where the steps' region has all the threads (or there is one): with fewer rows each
    step's product reads all of W_ax for little work (B = 1, T 256, D 128, H 256: 4.1
    -> 7.8 ms), and a step run on one of several threads would leave the others idle."""
    return r.T > 1 and r.B >= INPUT_STEP_MIN_ROWS and (nt > 1 or threads == 1)


cdef bint by_sequences(const Recurrence* r, Py_ssize_t nt) noexcept nogil:
    """Whether the steps' region of nt threads splits the sequences (forward_sequences:
    no barrier) rather than each step's products (forward_steps: a barrier after each
    half-phase). When every thread's share of row_split is at least 8 rows and at
    most 1/8 over an even share, and a phase of a step is under 4 Mi multiply-adds a
    thread, the barriers are a large part of a step and the split rows cost nothing.
    Beyond that size a thread's step reads all of the packed weights, where the split
    products read their part (medium LSTM: 2% slower split by sequences on avx2).
    Forward, 2 threads, Intel Xeon (AVX-512): small (B 32, H 128) LSTM 2.87 -> 2.29 ms,
    GRU 2.59 -> 1.95, RNN 1.24 -> 0.86; B 24: LSTM -25%, GRU -35%; on avx2 (shares of
    18 and 14) small LSTM -3%, GRU -20%; with 4 rows a thread (B 8), LSTM 3 to 12%
    slower, and at B 32, H 256 an avx2 LSTM 8% slower: both left to the barriers."""
    cdef Py_ssize_t q, share, lo = r.B, hi = 0
    for q in range(nt):
        share = row_split(r.B, q + 1, nt) - row_split(r.B, q, nt)
        lo = min(lo, share)
        hi = max(hi, share)
    if lo < 8 or 8 * hi * nt > 9 * r.B:
        return False
    return hi * r.H * (r.G * r.H // r.phases) < (<Py_ssize_t>4 << 20)


cdef Split forward_split_of(const Recurrence* r, Py_ssize_t nt,
                            Py_ssize_t cols) noexcept nogil:
    """How forward's steps share a region of nt threads, panels of cols columns."""
    if nt <= 1:
        return SERIAL
    if by_sequences(r, nt):
        return SEQUENCES
    if by_units(r, nt, cols):
        return UNITS
    return STEPS


def forward_split(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t G, int phases,
                  int threads, bint double=False):
    """How forward runs the steps of T steps of B rows, G gate blocks of H units and
    `phases` products a step, on `threads` threads in this kernel path: "serial",
    "steps", "units" or "sequences" (the tests check that their cases reach each)."""
    cdef Recurrence r = recurrence(T, B, 0, H, G, NULL, False, 1)
    r.phases = phases
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, G)
    cdef Py_ssize_t cols = (packed_len(<double*>NULL, 1, 1) if double
                            else packed_len(<float*>NULL, 1, 1))
    return ("serial", "steps", "units", "sequences")[<int>forward_split_of(&r, nt, cols)]


cdef int forward(floating** v, Recurrence* r, int threads) except -1:
    """The forward of T*B > 1 rows (see the notes at the top): v[PROJ] gets W_ax x<t>
    (+ b), then the steps run from v[STATE_IN] (initial states copied there)."""
    cdef Py_ssize_t T = r.T, B = r.B, D = r.D, H = r.H, GH = r.G * r.H, i, j, t, q
    cdef int ph
    cdef floating* z
    cdef const floating* b = v[BIAS]
    cdef sc_barrier_t bar                # the steps' region's (csrc/_load.h)
    cdef const Product* p
    dtype = np.float32 if floating is float else np.float64
    # rows of A packed in the long products (k >= 1024; see _packed_gemm.h)
    cdef size_t n_ab = a_work_len(<floating*>NULL, max(D, H), threads)
    cdef floating[::1] A_work = aligned_empty(n_ab, dtype)
    cdef floating* Ab = &A_work[0] if n_ab else NULL
    # the input projection's packed weights (packed as they are multiplied)
    cdef floating[::1] work = aligned_empty(
        product_work_len(<floating*>NULL, GH, D, True, threads), dtype)
    # the recurrent weights packed once for the per-step products
    cdef floating[::1] P = aligned_empty(pack_products(v, r, True, True, threads), dtype)
    # threads of the steps' one parallel region (or 1: step by step)
    cdef Py_ssize_t nt = step_region_threads(threads, T, B, H, r.G)
    v[PACKED] = &P[0]
    v[PACKED_X] = &work[0]
    cdef Py_ssize_t cols = packed_len(<floating*>NULL, 1, 1)    # a panel's
    cdef Split split = forward_split_of(r, nt, cols)
    r.by_step = inputs_by_step(r, nt, threads)
    r.unit_cols = cols if split == UNITS else 0
    with nogil:
        pack_products(v, r, True, False, threads)
        if r.by_step:
            # W_ax^T packed once; each step then multiplies its own inputs (input_rows)
            pack(v[PACKED_X], v[W_] + H, H + D, True, GH, D, threads)
        else:
            # v[PROJ] (T*B, G*H) (+)= x (T*B, D) @ W_ax^T: the input part of every step,
            # after b when the projection holds it
            if r.fold_bias:
                for i in range(T * B):
                    z = v[PROJ] + i * GH
                    for j in range(GH):
                        z[j] = b[j]
            product(v[PROJ], GH, v[X], D, 1, v[W_] + H, H + D, True, T * B, GH, D,
                    r.fold_bias, threads, &work[0], Ab)
        copy_states(v, r)
        if split == SEQUENCES:
            # each thread its sequences through every step: no barrier
            region_begin(nt)
            for q in prange(nt, num_threads=nt, schedule="static"):
                forward_sequences(v, r, Ab, q, row_split(B, q, nt),
                                  row_split(B, q + 1, nt))
                region_mark(q)
            region_end()
        elif split == UNITS:
            # each thread its units through every step: a barrier after each phase
            barrier_init(&bar, nt)
            with parallel(num_threads=nt):
                forward_units(v, r, Ab, threadid(), nt, &bar)
                barrier_end(&bar, threadid())
            barrier_done(&bar)
        elif split == STEPS:
            # one parallel region for all steps, a barrier after each half-phase
            # instead of a region per product (small LSTM forward 2.52 -> 2.43 ms)
            barrier_init(&bar, nt)
            with parallel(num_threads=nt):
                forward_steps(v, r, Ab, threadid(), nt, &bar)
                barrier_end(&bar, threadid())
            barrier_done(&bar)
        else:
            for t in range(T):
                if r.by_step:
                    input_rows(v, r, t, 0, B, 0, num_panels(v[PACKED], GH), Ab)
                for ph in range(r.phases):
                    p = &r.prod[ph]
                    step_product(c_at(v, p, t), p.ldc, a_at(v, p, t), p.lda,
                                 v[PACKED] + p.p_off, v[W_] + p.w_row * (H + D), H + D, True,
                                 B, p.n, p.k, p.accumulate, threads, Ab)
                    forward_rows(v, r, ph, t, 0, B, 0, H, 0)
    return 0


# ------------------------------------------------------------------------ backward

cdef void backward_steps(floating** v, const Recurrence* r, Py_ssize_t t0, Py_ssize_t t1,
                         floating* abuf, Py_ssize_t q, Py_ssize_t nt,
                         sc_barrier_t* bar) noexcept nogil:
    """Thread q's part of the backward steps t1-1 down to t0, as forward_steps: per
    phase its rows of the gradient pass, a barrier, its panels of the product, a
    barrier. The products' operands in the chunk's arrays count t from t0."""
    cdef Py_ssize_t t, B = r.B
    cdef int ph
    cdef size_t n_p
    cdef const Product* p
    for t in range(t1 - 1, t0 - 1, -1):
        for ph in range(r.phases):
            p = &r.prod[ph]
            backward_rows(v, r, ph, t, t0, q * B // nt, (q + 1) * B // nt, q)
            if meet(bar, &q, &nt):
                return
            n_p = num_panels(v[PACKED], p.n)
            gemm_panels(c_at(v, p, t - t0), p.ldc, a_at(v, p, t - t0), p.lda, 1,
                        v[PACKED] + p.p_off, B, p.n, p.k, q * n_p // nt, (q + 1) * n_p // nt,
                        p.accumulate, a_slot(abuf, p.k, q))
            if meet(bar, &q, &nt):
                return


cdef void backward_sequences(floating** v, const Recurrence* r, Py_ssize_t t0, Py_ssize_t t1,
                             floating* abuf, Py_ssize_t q, Py_ssize_t b0,
                             Py_ssize_t b1) noexcept nogil:
    """Sequences [b0, b1) through the backward steps t1-1 down to t0, on thread q, as
    forward_sequences: per phase their rows of the gradient pass, then their rows of
    the product."""
    cdef Py_ssize_t t
    cdef int ph
    cdef const Product* p
    for t in range(t1 - 1, t0 - 1, -1):
        for ph in range(r.phases):
            p = &r.prod[ph]
            backward_rows(v, r, ph, t, t0, b0, b1, q)
            gemm_panels(c_at(v, p, t - t0) + b0 * p.ldc, p.ldc,
                        a_at(v, p, t - t0) + b0 * p.lda, p.lda, 1, v[PACKED] + p.p_off,
                        b1 - b0, p.n, p.k, 0, num_panels(v[PACKED], p.n), p.accumulate,
                        a_slot(abuf, p.k, q))


cdef int backward(floating** v, Recurrence* r, Py_ssize_t C, Py_ssize_t nt,
                  int threads) except -1:
    """Backpropagation through time (see the notes at the top): v[STATE_IN] (the running
    gradients w.r.t. the states) start as v[STATE0]; v[DZ] holds C steps; nt threads in
    the steps' region (step_region_threads, which the cell asks first: its own scratch
    may have a slot per thread)."""
    cdef Py_ssize_t T = r.T, B = r.B, D = r.D, H = r.H, GH = r.G * r.H, HD = r.H + r.D
    cdef Py_ssize_t t, t0, t1, rows, q, k = 0
    cdef bint seqs                       # each thread its sequences (by_sequences)
    cdef int ph
    cdef sc_barrier_t bar                # the steps' region's (csrc/_load.h)
    cdef const Product* p
    cdef const WeightGrad* g
    dtype = np.float32 if floating is float else np.float64
    for ph in range(r.phases):
        k = max(k, r.prod[ph].k)
    # workspace of the products over a chunk's C*B rows (dW, dx)
    cdef size_t nwork = max(product_work_len(<floating*>NULL, D, C * B, False, threads),
                            product_work_len(<floating*>NULL, H, C * B, False, threads),
                            product_work_len(<floating*>NULL, D, GH, False, threads))
    cdef floating[::1] work = aligned_empty(nwork, dtype)
    # rows of A packed for the per-step products (k up to G*H) and the chunked
    # weight-gradient products (k up to KC rows of dz^T)
    cdef size_t n_ab = a_work_len(<floating*>NULL, max(k, <Py_ssize_t>KC), threads)
    cdef floating[::1] A_work = aligned_empty(n_ab, dtype)
    cdef floating* Ab = &A_work[0] if n_ab else NULL
    # W_aa packed for the per-step products; a single step of a single row reads W
    cdef bint packed = not (T == 1 and B == 1)
    cdef floating[::1] Q = aligned_empty(pack_products(v, r, False, True, threads) if packed
                                         else 1, dtype)
    v[PACKED] = &Q[0] if packed else NULL
    with nogil:
        if packed:
            pack_products(v, r, False, False, threads)
        copy_states(v, r)
        # chunks of C steps [t0, t1), the last first
        seqs = nt > 1 and by_sequences(r, nt)
        t1 = T
        while t1 > 0:
            t0 = max(t1 - C, 0)
            rows = (t1 - t0) * B
            if seqs:
                region_begin(nt)
                for q in prange(nt, num_threads=nt, schedule="static"):
                    backward_sequences(v, r, t0, t1, Ab, q, row_split(B, q, nt),
                                       row_split(B, q + 1, nt))
                    region_mark(q)
                region_end()
            elif nt > 1:
                barrier_init(&bar, nt)
                with parallel(num_threads=nt):
                    backward_steps(v, r, t0, t1, Ab, threadid(), nt, &bar)
                    barrier_end(&bar, threadid())
                barrier_done(&bar)
                if bar.solo:            # the rest of the call on one thread
                    nt = threads = 1
            else:
                for t in range(t1 - 1, t0 - 1, -1):
                    for ph in range(r.phases):
                        p = &r.prod[ph]
                        backward_rows(v, r, ph, t, t0, 0, B, 0)
                        # inactive rows have dz = 0: the product leaves their gradient
                        step_product(c_at(v, p, t - t0), p.ldc, a_at(v, p, t - t0), p.lda,
                                     v[PACKED] + p.p_off if packed else NULL,
                                     v[W_] + p.w_row * HD, HD, False, B, p.n, p.k,
                                     p.accumulate, threads, Ab)

            # The chunk's rows of the parameter and input gradients.
            # dW_ax (G*H, D) += dz^T (G*H, rows) @ x[t0:t1] (rows, D)
            product(v[DW] + H, HD, v[DZ], 1, GH, v[X] + t0 * B * D, D, False,
                    GH, D, rows, True, threads, &work[0], Ab)
            # dW_aa (G*H, H) += dz^T (G*H, rows) @ a[t0:t1] (rows, H), by parts
            for ph in range(r.grads):
                g = &r.dW_aa[ph]
                product(v[DW] + g.row * HD, HD, v[g.Z] + g.z_off, 1, g.ldz,
                        v[g.S] + t0 * B * H, H, False, g.m, H, rows, True, threads,
                        &work[0], Ab)
            # dx[t0:t1] (rows, D) = dz (rows, G*H) @ W_ax (G*H, D)
            product(v[DX] + t0 * B * D, D, v[DZ], GH, 1, v[W_] + H, HD, False,
                    rows, D, GH, False, threads, &work[0], Ab)
            # db (G*H,) += column sums of dz
            add_column_sums(v[DB], v[DZ], rows, GH)
            backward_chunk(v, r, t0, t1)
            t1 = t0
    return 0


# ----------------------------------------------------------- one token (generation)

cdef void one_token(floating** v, const Recurrence* r, int threads) noexcept nogil:
    """The forward of T = B = 1: W read once, straight from its rows, the units split
    over the threads (one parallel region a phase). The states go from v[STATE0] to
    v[STATE_IN] (each (2, H): [state in, state out])."""
    cdef Py_ssize_t q, ph, H = r.H
    cdef Py_ssize_t nq = step_threads(threads, r.G * H, H + r.D, H)
    copy_states(v, r)
    for ph in range(r.unit_phases):
        if nq <= 1:
            step_units(v, r, ph, 0, H)
            continue
        region_begin(nq)
        for q in prange(nq, num_threads=nq, schedule="static"):
            step_units(v, r, ph, unit_split(v[X], H, q, nq), unit_split(v[X], H, q + 1, nq))
            region_mark(q)
        region_end()
