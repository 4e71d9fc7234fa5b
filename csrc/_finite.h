/* NaN/infinity checks of float arrays, for the argument checks (seqcore._checks and
 * the one-step path of the kernels). A value is NaN or infinite exactly when all its
 * exponent bits are set; integer tests over the bits vectorize, where a floating-
 * point reduction would be one serial chain. */
#ifndef SEQCORE_FINITE_H
#define SEQCORE_FINITE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline int sc_all_finite_f(const float *v, size_t n)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, v + i, sizeof(bits));
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return bad == 0;
}

static inline int sc_all_finite_d(const double *v, size_t n)
{
    uint64_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, v + i, sizeof(bits));
        bad |= (bits & 0x7ff0000000000000u) == 0x7ff0000000000000u;
    }
    return bad == 0;
}

#endif
