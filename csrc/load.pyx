# The process-wide state of the kernels' load notice (csrc/_load.h): one instance,
# here, which every kernel module attaches to at import through STATE.
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport int64_t

cdef extern from "_load.h" nogil:
    ctypedef struct sc_load_t:
        int64_t serial_until
        int64_t backoff
        int64_t stalls
        int64_t serial_calls
        int64_t adaptive
        int64_t by_wait
        int64_t by_share
        int64_t by_loop
        int64_t share
        int64_t clean_since
        int64_t solos
        int64_t force_solo
    sc_load_t sc_load_own
    int64_t sc_now_ns()
    void sc_load_stall(int64_t region_ns)
    void sc_load_clean()
    const int64_t SC_BACKOFF_MIN_NS
    const int SC_STALL_STREAK
    const int64_t SC_CLEAN_NS

STREAK = SC_STALL_STREAK      # stalled regions in a row that send the kernels to one thread
                              # (a quarter of the recent ones do, SC_SHARE_LOAD)
CLEAN_S = SC_CLEAN_NS / 1e9   # seconds of clean regions after which a load is forgotten

STATE = PyCapsule_New(<void*>&sc_load_own, b"seqcore._kernels.load.STATE", NULL)


def stats():
    """What the load notice has seen in this process: {"stalls": barrier waits that
    looked like a lost core, "serial_calls": kernel calls sent to one thread since,
    "serial_for": seconds the kernels stay on one thread from now, "backoff": seconds
    of the next back-off, "adaptive": whether stalls move the kernels to one thread,
    "solo": steps' regions whose threads waited over half their time and that thread 0
    finished alone, "by": the stalls each test found: "wait" (a thread waited for a
    late one), "share" (the threads waited over half their time), "loop" (at the end of
    a product loop)}."""
    cdef int64_t left = sc_load_own.serial_until - sc_now_ns()
    return {"stalls": sc_load_own.stalls, "serial_calls": sc_load_own.serial_calls,
            "serial_for": max(left, 0) / 1e9, "backoff": sc_load_own.backoff / 1e9,
            "adaptive": bool(sc_load_own.adaptive), "solo": sc_load_own.solos,
            "by": {"wait": sc_load_own.by_wait, "share": sc_load_own.by_share,
                   "loop": sc_load_own.by_loop}}


def set_adaptive(bint on):
    """Whether a stall sends the kernels to one thread for a while (on by default; off
    for measuring what the barrier alone does). Returns the old setting."""
    old = bool(sc_load_own.adaptive)
    sc_load_own.adaptive = on
    if not on:
        sc_load_own.serial_until = 0
    return old


def reset():
    """Forget what was seen: all threads again, the shortest back-off, counts at 0."""
    sc_load_own.serial_until = 0
    sc_load_own.backoff = SC_BACKOFF_MIN_NS
    sc_load_own.stalls = 0
    sc_load_own.serial_calls = 0
    sc_load_own.by_wait = sc_load_own.by_share = sc_load_own.by_loop = 0
    sc_load_own.share = 0
    sc_load_own.clean_since = 0
    sc_load_own.solos = 0
    sc_load_own.force_solo = 0


def stall():
    """Report a stalled short region as a barrier would (for tests: STREAK of them in a
    row start the back-off without a load)."""
    sc_load_stall(0)


def clean():
    """Report a region that ran on all its threads without a stall, as a barrier would
    (for tests)."""
    sc_load_clean()


def force_solo(int barrier):
    """For tests: every steps' region goes solo at its barrier number `barrier` (1 for
    the first; 0: only as the waits decide), as if its threads had waited too long."""
    if barrier < 0:
        raise ValueError(f"barrier: expected a barrier number >= 0, got {barrier}")
    sc_load_own.force_solo = barrier
