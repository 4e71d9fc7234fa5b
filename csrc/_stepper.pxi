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
cimport numpy as cnp
from libc.stdlib cimport free, malloc

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
                pair = (<dict>qweights).get(name)
                if type(pair) is not tuple or len(pair) != 2:
                    return False
                dims[0], dims[1] = shape[0], shape[1]
                if not (plain_array(pair[0], cnp.NPY_INT8, 2, dims, False)
                        and plain_array(pair[1], self.typenum, 1, dims, False)):
                    return False
                self.prm[l * NPRM + 3] = cnp.PyArray_DATA(<cnp.ndarray>pair[0])
                self.prm[l * NPRM + 4] = cnp.PyArray_DATA(<cnp.ndarray>pair[1])
        return True

    def step(self, x, state, int threads):
        """(y, final state) as forward() returns them, or None (see the module notes);
        threads: the core's thread count (seqcore.get_num_threads())."""
        cdef cnp.npy_intp dims[3]
        cdef const char* s0[2]
        cdef char* out[2]
        cdef const char* x_in
        cdef char* y_data
        cdef Py_ssize_t l, i, D_l, H = self.H, nbytes = self.H * self.itemsize
        threads = sc_threads(threads)       # one while the cores are taken (_load.h)
        dims[0], dims[1], dims[2] = 1, 1, self.D
        if not plain_array(x, self.typenum, 3, dims, True):
            return None
        if state is None:
            states = (self.zeros,) * NUM_STATES
        elif NUM_STATES == 1:
            states = (state,)
        elif type(state) in (tuple, list) and len(state) == NUM_STATES:
            states = tuple(state)
        else:
            return None
        for i in range(NUM_STATES):
            if not self.state_ok(states[i]):
                return None
        if not self.params_ok():
            return None
        dims[0], dims[1], dims[2] = self.L, 1, self.H
        outs = tuple(cnp.PyArray_EMPTY(3, dims, self.typenum, 0) for i in range(NUM_STATES))
        for i in range(NUM_STATES):
            s0[i] = <const char*>cnp.PyArray_DATA(<cnp.ndarray>states[i])
            out[i] = <char*>cnp.PyArray_DATA(<cnp.ndarray>outs[i])
        s0[1] = s0[NUM_STATES - 1]          # (read only by two-state cells)
        dims[0] = 1
        y = cnp.PyArray_EMPTY(3, dims, self.typenum, 0)
        y_data = <char*>cnp.PyArray_DATA(<cnp.ndarray>y)
        x_in = <const char*>cnp.PyArray_DATA(<cnp.ndarray>self.x_copy)
        memcpy(<char*>x_in, cnp.PyArray_DATA(<cnp.ndarray>x), self.D * self.itemsize)
        with nogil:
            for l in range(self.L):
                D_l = self.D if l == 0 else H
                if self.typenum == cnp.NPY_FLOAT:
                    step_layer(<float**>self.ws + l * self.nws, <const float*>x_in,
                               <const float*>s0[0] + l * H, <const float*>s0[1] + l * H,
                               <const float**>self.prm + l * NPRM, D_l, H, self.option,
                               threads)
                else:
                    step_layer(<double**>self.ws + l * self.nws, <const double*>x_in,
                               <const double*>s0[0] + l * H, <const double*>s0[1] + l * H,
                               <const double**>self.prm + l * NPRM, D_l, H, self.option,
                               threads)
                for i in range(NUM_STATES):      # the new states: row 1 of each (2, 1, H)
                    memcpy(out[i] + l * nbytes, <char*>self.ws[l * self.nws + i] + nbytes,
                           nbytes)
                x_in = <const char*>self.ws[l * self.nws] + nbytes
            memcpy(y_data, x_in, nbytes)
        return y, (outs[0] if NUM_STATES == 1 else outs)
