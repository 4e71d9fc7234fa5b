# Argument checks that NumPy makes slow for small arrays (see seqcore/_validation.py).
#
# One step of generation passes arrays of a few hundred numbers, where a NumPy
# reduction costs about a microsecond in dispatch alone, more than the arithmetic
# of checking them here.
from cpython.buffer cimport PyBUF_ANY_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer

cdef extern from "_finite.h" nogil:
    bint sc_all_finite_f(const float* v, size_t n)
    bint sc_all_finite_d(const double* v, size_t n)


def all_finite(x):
    """True when x, a contiguous array of float32 or float64 (format 'f' or 'd'),
    holds no NaN or infinity. Raises TypeError for any other buffer."""
    cdef Py_buffer view
    cdef bint ok
    PyObject_GetBuffer(x, &view, PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT)
    try:
        fmt = view.format.decode("ascii") if view.format != NULL else "B"
        if fmt == "f" and view.itemsize == 4:
            with nogil:
                ok = sc_all_finite_f(<const float*>view.buf, view.len // 4)
        elif fmt == "d" and view.itemsize == 8:
            with nogil:
                ok = sc_all_finite_d(<const double*>view.buf, view.len // 8)
        else:
            raise TypeError(f"all_finite: expected float32 or float64 values, got format {fmt!r}")
    finally:
        PyBuffer_Release(&view)
    return ok
