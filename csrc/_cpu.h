/* What the CPU can run: the kernel paths of _paths.h it supports, and its name.
 * Compiled for the x86-64 baseline (it runs before any path is chosen).
 *
 * GCC's __builtin_cpu_supports reads CPUID once (__builtin_cpu_init) and also asks
 * the operating system (XGETBV) whether it saves the ymm/zmm registers, so a feature
 * the kernel has switched off counts as missing. No ifunc: musl has none. */
#ifndef SEQCORE_CPU_H
#define SEQCORE_CPU_H

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

static inline int sc_cpu_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static inline int sc_cpu_avx512(void)
{
    __builtin_cpu_init();
    return sc_cpu_avx2() && __builtin_cpu_supports("avx512f")
           && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
           && __builtin_cpu_supports("avx512vl");
}

/* The processor's brand string (CPUID leaves 0x80000002-4), "" if it has none. */
static inline void sc_cpu_brand(char out[49])
{
    unsigned int regs[12], eax, ebx, ecx, edx;
    out[0] = 0;
    if (!__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) || eax < 0x80000004u)
        return;
    for (unsigned int leaf = 0; leaf < 3; leaf++)
        __get_cpuid(0x80000002u + leaf, &regs[4 * leaf], &regs[4 * leaf + 1],
                    &regs[4 * leaf + 2], &regs[4 * leaf + 3]);
    memcpy(out, regs, 48);
    out[48] = 0;
}
#else
static inline int sc_cpu_avx2(void) { return 0; }
static inline int sc_cpu_avx512(void) { return 0; }
static inline void sc_cpu_brand(char out[49]) { out[0] = 0; }
#endif

#endif
