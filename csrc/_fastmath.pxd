# Declarations of csrc/_fastmath.h (fast path): vectorizable exp, sigmoid and tanh,
# plus fused wrappers so kernels written over `floating` pick the right precision.
from cython cimport floating

cdef extern from "_fastmath.h" nogil:
    float sc_expf(float x)
    double sc_exp(double x)
    float sc_sigmoidf(float x)
    double sc_sigmoid(double x)
    float sc_tanhf(float x)
    double sc_tanh(double x)


cdef inline floating sigmoid(floating x) noexcept nogil:
    if floating is float:
        return sc_sigmoidf(x)
    else:
        return sc_sigmoid(x)


cdef inline floating tanh(floating x) noexcept nogil:
    if floating is float:
        return sc_tanhf(x)
    else:
        return sc_tanh(x)
