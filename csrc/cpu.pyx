# The CPU's kernel paths, read at import (seqcore/_dispatch.py); built for the baseline.

cdef extern from "_cpu.h":
    int sc_cpu_avx2()
    int sc_cpu_avx512()
    void sc_cpu_brand(char* out)


def supported_paths():
    """The kernel paths this CPU runs, best first: ("avx512", "avx2", "generic") or a
    tail of it; "generic" always."""
    paths = []
    if sc_cpu_avx512():
        paths.append("avx512")
    if sc_cpu_avx2():
        paths.append("avx2")
    return tuple(paths) + ("generic",)


def brand():
    """The processor's name as it reports it (x86 CPUID), or "" where it has none."""
    cdef char out[49]
    sc_cpu_brand(out)
    return out.decode("ascii", "replace").strip()
