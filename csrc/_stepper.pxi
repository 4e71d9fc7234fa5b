# forward() for one token (T = B = 1), the inner loop of generation (included by each
# cell's .pyx, which defines step_layer and NUM_STATES).
#
# A step of a 256-unit LSTM takes about 10 us of arithmetic. Going through the general
# forward() in Python (its checks, workspace lookups, slicing, and a kernel call with
# eleven typed memoryviews) cost another 10-15 us, more than the step itself. This
# class does the same checks in C on NumPy's array structs and calls the cell's
# one-step kernel layer by layer. Anything it does not accept as a plain step (wrong
# type, shape, dtype, layout, NaN or infinity) makes it return None: forward() then
# takes its general path, whose checks raise the error that names the argument.
#
# token() does a language model's whole token the same way (forward_token): the
# embedding's row, the layers' steps and the Dense layer's row, in one call. Each of
# the three forwards cost 10-45 us more in Python after a token had streamed
# megabytes of weights through the caches than in a loop of its own: the word LM's
# int8 token (V 10,000, E = H = 512, avx512, one thread) went from 481 to 382 us.
cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cdef extern from "_finite.h" nogil:
    bint sc_all_finite_f(const float* v, size_t n)
    bint sc_all_finite_d(const double* v, size_t n)

cnp.import_array()

cdef enum:
    NPRM = 5     # parameter pointers a layer: W, b, the cell's own (or NULL), int8 W, scales


cdef bint plain_array(object a, int typenum, int nd, const cnp.npy_intp* dims,
                      bint finite) noexcept:
    """a is an aligned, native-byte-order, C-contiguous ndarray of typenum with shape
    dims (nd of them), and, when `finite`, holds no NaN or infinity."""
    cdef int i
    cdef cnp.ndarray arr
    if not cnp.PyArray_Check(a):
        return False
    arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_NDIM(arr) != nd
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr)
            or not cnp.PyArray_ISNOTSWAPPED(arr)):    # byte-swapped: the same type number
        return False
    for i in range(nd):
        if cnp.PyArray_DIMS(arr)[i] != dims[i]:
            return False
    if not finite:
        return True
    if typenum == cnp.NPY_FLOAT:
        return sc_all_finite_f(<const float*>cnp.PyArray_DATA(arr), cnp.PyArray_SIZE(arr))
    return sc_all_finite_d(<const double*>cnp.PyArray_DATA(arr), cnp.PyArray_SIZE(arr))


cdef bint int8_pair(object qweights, object name, cnp.npy_intp rows, cnp.npy_intp cols,
                    int typenum, const void** Q, const void** S) noexcept:
    """qweights[name] is (q int8 (rows, cols), scale (rows,) of typenum): their data in
    Q and S (seqcore.quantize)."""
    cdef cnp.npy_intp dims[2]
    dims[0], dims[1] = rows, cols
    pair = (<dict>qweights).get(name) if type(qweights) is dict else None
    if type(pair) is not tuple or len(pair) != 2:
        return False
    if not (plain_array(pair[0], cnp.NPY_INT8, 2, dims, False)
            and plain_array(pair[1], typenum, 1, dims, False)):
        return False
    Q[0] = cnp.PyArray_DATA(<cnp.ndarray>pair[0])
    S[0] = cnp.PyArray_DATA(<cnp.ndarray>pair[1])
    return True


cdef bint weights_of(object layer, cnp.npy_intp rows, cnp.npy_intp cols, int typenum,
                     const void** W, const void** Q, const void** S) noexcept:
    """An Embedding's or Dense layer's weight "W" (rows, cols) of typenum: its data in
    W, or, quantized (qweights), NULL there and the int8 values and their rows' scales
    in Q and S."""
    cdef cnp.npy_intp dims[2]
    dims[0], dims[1] = rows, cols
    W[0] = Q[0] = S[0] = NULL
    qweights = getattr(layer, "qweights", None)
    if qweights:
        return int8_pair(qweights, "W", rows, cols, typenum, Q, S)
    params = getattr(layer, "params", None)
    p = (<dict>params).get("W") if type(params) is dict else None
    if not plain_array(p, typenum, 2, dims, False):
        return False
    W[0] = cnp.PyArray_DATA(<cnp.ndarray>p)
    return True


cdef class Stepper:
    """forward(x, state) of a unidirectional layer for x of shape (1, 1, D).

    layer: the RNN/GRU/LSTM (its `params` dict, and `qweights` when it is quantized,
    are read at every call, so replaced or updated parameters are used). A quantized
    layer has no float W: its steps read the int8 weights (W's entry of qweights: q
    and the rows' scales), int8 x int8 (sc_rowdot2_q8, _q8.h). names[l]: ((name, shape), ...) of layer l's
    parameters in kernel order. caches[l]: (x, *workspaces) of layer l, the arrays
    the one-step kernel writes, in the order the layer's backward() reads them;
    workspaces[i] for i < NUM_STATES are the states (2, 1, H): [in, out].
    cache: the layer's forward cache that refers to them. option: the cell's flag
    (relu, reset_after or peephole).
    """
    cdef object layer
    cdef list names
    cdef readonly dict cache
    cdef object x_copy               # (1, 1, D): layer 0's input, kept for backward
    cdef object zeros                # (L, 1, H): the state when none is given
    cdef int L, D, H, typenum, nws, itemsize
    cdef bint option
    cdef void** ws                   # L * nws workspace data pointers
    cdef const char* s0[2]           # the current call's initial states (ready())
    cdef char* out[2]                # and its final states' data (outs)
    cdef object outs                 # the final states of the current call
    cdef void* x_data                # x_copy's data: layer 0's input
    cdef const void* top             # the last layer's a<t> after advance()
    cdef const void** prm            # L * NPRM parameter data pointers of the current call:
                                     # names[l]'s (up to 3: W, b, the cell's), then the
                                     # int8 W and its scales, or NULL

    def __cinit__(self):
        self.ws = NULL
        self.prm = NULL

    def __init__(self, layer, list names, list caches, dict cache, bint option):
        cdef Py_ssize_t l, i
        self.layer, self.names, self.cache, self.option = layer, names, cache, option
        self.L = len(caches)
        self.x_copy = caches[0][0]
        self.x_data = cnp.PyArray_DATA(<cnp.ndarray>self.x_copy)
        self.D = self.x_copy.shape[2]
        self.H = caches[0][1].shape[2]
        self.typenum = cnp.PyArray_TYPE(<cnp.ndarray>self.x_copy)
        self.itemsize = self.x_copy.itemsize
        self.zeros = np.zeros((self.L, 1, self.H), self.x_copy.dtype)
        self.nws = len(caches[0]) - 1
        self.ws = <void**>malloc(self.L * self.nws * sizeof(void*))
        self.prm = <const void**>malloc(self.L * NPRM * sizeof(void*))
        if self.ws == NULL or self.prm == NULL:
            raise MemoryError()
        for l in range(self.L):
            for i in range(self.nws):
                self.ws[l * self.nws + i] = cnp.PyArray_DATA(<cnp.ndarray>caches[l][1 + i])

    def __dealloc__(self):
        free(self.ws)
        free(self.prm)

    cdef bint state_ok(self, object s) noexcept:
        cdef cnp.npy_intp dims[3]
        dims[0], dims[1], dims[2] = self.L, 1, self.H
        return plain_array(s, self.typenum, 3, dims, True)

    cdef bint params_ok(self) noexcept:
        """Check every layer's parameters and note their data pointers in prm."""
        cdef Py_ssize_t l, i, j
        cdef cnp.npy_intp dims[2]
        params = getattr(self.layer, "params", None)
        if type(params) is not dict:
            return False
        qweights = getattr(self.layer, "qweights", None)
        if qweights is not None and type(qweights) is not dict:
            return False
        for l in range(self.L):
            entries = self.names[l]
            for i in range(NPRM):
                self.prm[l * NPRM + i] = NULL
            for i in range(1 if qweights else 0, len(entries)):   # int8 W: below
                name, shape = entries[i]
                p = (<dict>params).get(name)
                for j in range(len(shape)):
                    dims[j] = shape[j]
                if not plain_array(p, self.typenum, len(shape), dims, False):
                    return False
                self.prm[l * NPRM + i] = cnp.PyArray_DATA(<cnp.ndarray>p)
            if qweights:                     # W (entries[0]) in int8, and its scales
                name, shape = entries[0]
                if not int8_pair(qweights, name, shape[0], shape[1], self.typenum,
                                 &self.prm[l * NPRM + 3], &self.prm[l * NPRM + 4]):
                    return False
        return True

    def step(self, x, state, int threads):
        """(y, final state) as forward() returns them, or None (see the module notes);
        threads: the core's thread count (seqcore.get_num_threads())."""
        cdef cnp.npy_intp dims[3]
        cdef void* y_data
        dims[0], dims[1], dims[2] = 1, 1, self.D
        if not plain_array(x, self.typenum, 3, dims, True):
            return None
        threads = sc_threads(threads)       # one while the cores are taken (_load.h)
        if not self.ready(state):
            return None
        memcpy(cnp.PyArray_DATA(<cnp.ndarray>self.x_copy), cnp.PyArray_DATA(<cnp.ndarray>x),
               self.D * self.itemsize)
        dims[2] = self.H
        y = cnp.PyArray_EMPTY(3, dims, self.typenum, 0)
        y_data = cnp.PyArray_DATA(<cnp.ndarray>y)
        with nogil:
            self.advance(threads)
            memcpy(y_data, self.top, self.H * self.itemsize)
        return y, self.new_state()

    def token(self, ids, state, embedding, dense, int threads):
        """A language model's forward of one token id, in one call: the embedding's row
        of ids (1, 1) int64 (-1: zeros), this layer's step, and the Dense layer's
        logits. (logits (1, 1, V), final state), or None as step() (then also for an
        id outside the embedding, or layers whose weights do not fit this one).

        embedding, dense: the Embedding and Dense layers; their weights (float, or
        int8 with their rows' scales) are read at every call, as this layer's are."""
        cdef cnp.npy_intp dims[3]
        cdef const void* EW
        cdef const void* EQ
        cdef const void* ES
        cdef const void* DW
        cdef const void* DQ
        cdef const void* DS
        cdef Py_ssize_t V, k, row, D = self.D
        cdef char* x_in = <char*>self.x_data
        cdef void* y
        cdef const void* bias
        dims[0], dims[1] = 1, 1
        if not plain_array(ids, cnp.NPY_INT64, 2, dims, False):
            return None
        row = (<const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>ids))[0]
        num = getattr(embedding, "num_embeddings", None)
        out = getattr(dense, "out_features", None)
        if type(num) is not int or type(out) is not int or not -1 <= row < num or out < 1:
            return None
        V = out
        if not (weights_of(embedding, num, D, self.typenum, &EW, &EQ, &ES)
                and weights_of(dense, V, self.H, self.typenum, &DW, &DQ, &DS)):
            return None
        params = getattr(dense, "params", None)
        b = (<dict>params).get("b") if type(params) is dict else None
        dims[0] = V
        if not plain_array(b, self.typenum, 1, dims, False):
            return None
        bias = cnp.PyArray_DATA(<cnp.ndarray>b)
        threads = sc_threads(threads)
        if not self.ready(state):
            return None
        dims[0], dims[1], dims[2] = 1, 1, V
        logits = cnp.PyArray_EMPTY(3, dims, self.typenum, 0)
        y = cnp.PyArray_DATA(<cnp.ndarray>logits)
        with nogil:
            # x<t>: the embedding's row, as Embedding.forward makes it (scale * q)
            if row < 0:
                memset(x_in, 0, D * self.itemsize)
            elif self.typenum == cnp.NPY_FLOAT:
                if EQ == NULL:
                    memcpy(x_in, <const float*>EW + row * D, D * sizeof(float))
                else:
                    for k in range(D):
                        (<float*>x_in)[k] = ((<const signed char*>EQ)[row * D + k]
                                             * (<const float*>ES)[row])
            else:
                if EQ == NULL:
                    memcpy(x_in, <const double*>EW + row * D, D * sizeof(double))
                else:
                    for k in range(D):
                        (<double*>x_in)[k] = ((<const signed char*>EQ)[row * D + k]
                                              * (<const double*>ES)[row])
            self.advance(threads)
            if self.typenum == cnp.NPY_FLOAT:
                dense_row(<float*>y, <const float*>self.top, self.H, <const float*>DW,
                          <const signed char*>DQ, <const float*>DS, <const float*>bias, V,
                          threads)
            else:
                dense_row(<double*>y, <const double*>self.top, self.H, <const double*>DW,
                          <const signed char*>DQ, <const double*>DS, <const double*>bias, V,
                          threads)
        return logits, self.new_state()

    cdef bint ready(self, state):
        """Check the initial state and every parameter; note the state's data in s0
        and make the final state's arrays (outs)."""
        cdef cnp.npy_intp dims[3]
        cdef Py_ssize_t i
        if state is None:
            states = (self.zeros,) * NUM_STATES
        elif NUM_STATES == 1:
            states = (state,)
        elif type(state) in (tuple, list) and len(state) == NUM_STATES:
            states = tuple(state)
        else:
            return False
        for i in range(NUM_STATES):
            if not self.state_ok(states[i]):
                return False
        if not self.params_ok():
            return False
        dims[0], dims[1], dims[2] = self.L, 1, self.H
        self.outs = tuple(cnp.PyArray_EMPTY(3, dims, self.typenum, 0) for i in range(NUM_STATES))
        for i in range(NUM_STATES):
            self.s0[i] = <const char*>cnp.PyArray_DATA(<cnp.ndarray>states[i])
            self.out[i] = <char*>cnp.PyArray_DATA(<cnp.ndarray>self.outs[i])
        self.s0[1] = self.s0[NUM_STATES - 1]          # (read only by two-state cells)
        return True

    cdef void advance(self, int threads) noexcept nogil:
        """Every layer's step from x_copy and the state of ready(): the new states into
        outs, the last layer's a<t> at top."""
        cdef Py_ssize_t l, i, D_l, H = self.H, nbytes = self.H * self.itemsize
        cdef const char* x_in = <const char*>self.x_data
        for l in range(self.L):
            D_l = self.D if l == 0 else H
            if self.typenum == cnp.NPY_FLOAT:
                step_layer(<float**>self.ws + l * self.nws, <const float*>x_in,
                           <const float*>self.s0[0] + l * H, <const float*>self.s0[1] + l * H,
                           <const float**>self.prm + l * NPRM, D_l, H, self.option,
                           threads)
            else:
                step_layer(<double**>self.ws + l * self.nws, <const double*>x_in,
                           <const double*>self.s0[0] + l * H, <const double*>self.s0[1] + l * H,
                           <const double**>self.prm + l * NPRM, D_l, H, self.option,
                           threads)
            for i in range(NUM_STATES):      # the new states: row 1 of each (2, 1, H)
                memcpy(self.out[i] + l * nbytes, <char*>self.ws[l * self.nws + i] + nbytes,
                       nbytes)
            x_in = <const char*>self.ws[l * self.nws] + nbytes
        self.top = x_in

    cdef object new_state(self):
        """The final state of the last call, as forward() returns it."""
        outs, self.outs = self.outs, None
        return outs[0] if NUM_STATES == 1 else outs
