/* NaN/infinity checks of float arrays, for the argument checks (seqcore._checks and
 * the one-step path of the kernels). A value is NaN or infinite exactly when all its
 * exponent bits are set; integer tests over the bits vectorize, where a floating-
 * point reduction would be one serial chain. */
#ifndef SEQCORE_FINITE_H
#define SEQCORE_FINITE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* sc_all_finite_SUFFIX(v, n): no value of v[0:n] (type T, bits U) is NaN or infinite. */
#define SC_DEFINE_FINITE(T, U, EXPONENT, SUFFIX)                                    \
static inline int sc_all_finite_##SUFFIX(const T *v, size_t n)                       \
{                                                                                   \
    U bad = 0;                                                                      \
    for (size_t i = 0; i < n; i++) {                                                \
        U bits;                                                                     \
        memcpy(&bits, v + i, sizeof(bits));                                         \
        bad |= (bits & EXPONENT) == EXPONENT;                                       \
    }                                                                               \
    return bad == 0;                                                                \
}

SC_DEFINE_FINITE(float, uint32_t, 0x7f800000u, f)
SC_DEFINE_FINITE(double, uint64_t, 0x7ff0000000000000u, d)

#endif
