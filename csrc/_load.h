/* Threads under load: the barrier of the steps' parallel regions, and the notice of
 * lost cores that sends the kernels to one thread for a while.
 *
 * A recurrent layer's call meets at a barrier twice per step (128 times for 64 steps).
 * GNU OpenMP's barrier spins for 300,000 PAUSEs (its default; 5-40 ms) before it
 * sleeps, so when another process has taken a core from one thread of the team, the
 * others keep spinning on theirs until the scheduler gives it back a time slice later:
 * each barrier then costs milliseconds, and two threads ran 2-170x slower than one.
 *
 * sc_barrier_wait spins as long as the thread's own work since its last barrier took,
 * within [SC_SPIN_NS, SC_STALL_NS] (longer than a barrier waits on an idle machine),
 * then sleeps on a futex, giving its core to whoever needs it. The region stalled when
 *   - a thread waited for the last one longer than SC_STALL_NS and than its own work
 *     since its last barrier: a thread of the team lost its core (counted once the
 *     region's waits are over 1/SC_WAIT_SHARE of its threads' time); or
 *   - its threads spent over half their time in the region waiting: n threads that
 *     wait a fraction w of it do the work of n (1 - w) threads, under one for n = 2
 *     (cores shared with other processes, each thread running half the time).
 * The region's caller then reports the stall (sc_load_stall), or a clean region
 * (sc_load_clean). Once a quarter of the recent regions stalled (an idle virtual machine
 * loses a core for a millisecond now and then, a shared one all the time), every
 * kernel of the process goes to one thread
 * (sc_threads) for a back-off time, doubling from
 * SC_BACKOFF_MIN_NS to SC_BACKOFF_MAX_NS while stalls recur, and never shorter than
 * SC_BACKOFF_REGIONS times the stalled region (so that a long call, which finds out
 * only part way through, does not try all its threads again on every call). While the
 * back-off is longer than its shortest, load was seen lately, and one stalled region
 * starts the next back-off; clean regions on all threads for SC_CLEAN_NS return it to
 * its shortest. On an idle machine no barrier waits that long (a 2-thread region that
 * waited half its time would be slower than one thread), so the kernels keep all their
 * threads.
 *
 * Built with -DSC_OMP_BARRIER (CFLAGS), the steps' regions meet at OpenMP's barrier
 * and nothing is noticed or backed off: the kernels as they were before this file, for
 * measuring what it costs an idle machine (docs/performance.md, "Under load").
 *
 * The state (sc_load_t) is one per process: it lives in seqcore._kernels.load, and each
 * kernel module attaches to it at import (sc_load_attach), so a stall seen by the LSTM's
 * steps also moves the training kernels (Dense, loss, Adam) to one thread. */
#ifndef SEQCORE_LOAD_H
#define SEQCORE_LOAD_H

#include <stdint.h>
#include <Python.h>          /* Py_ssize_t */
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define sc_pause() _mm_pause()
#else
#define sc_pause() ((void)0)
#endif

#define SC_SPIN_NS 100000LL           /* at least 0.1 ms of spinning before a barrier sleeps */
#define SC_STALL_NS 1000000LL         /* a barrier wait over 1 ms: a thread lost its core */
#define SC_WAIT_SHARE 8               /* and those waits over 1/8 of the threads' time */
#define SC_SOLO_NS 2000000LL          /* waits over 2 ms and half the region: thread 0 alone */
#define SC_BACKOFF_MIN_NS 50000000LL  /* then one thread for 50 ms, */
#define SC_BACKOFF_MAX_NS 2000000000LL /* doubling up to 2 s while stalls recur, */
#define SC_BACKOFF_REGIONS 20         /* and at least 20 times the stalled region */
#define SC_SHARE_ONE 1024             /* the share of stalled regions lately, fixed point, */
#define SC_SHARE_SPAN 8               /* over about the last 8 regions: */
#define SC_SHARE_LOAD 256             /* a quarter of them show a load (3 in a row do), */
#define SC_STALL_STREAK 3             /* (stalled regions in a row that start a back-off) */
#define SC_CLEAN_NS 200000000LL       /* and clean ones for 0.2 s show it gone */

static inline int64_t sc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the process-wide notice of lost cores ---- */

typedef struct {
    int64_t serial_until;   /* sc_now_ns() before which kernels run on one thread */
    int64_t backoff;        /* the next back-off time, ns */
    int64_t stalls;         /* stalls seen so far (seqcore._kernels.load.stats()) */
    int64_t serial_calls;   /* calls sent to one thread so far */
    int64_t adaptive;       /* 0: never leave threads out (seqcore._kernels.load.set_adaptive) */
    int64_t by_wait, by_share, by_loop;   /* stalls seen by each test (see above) */
    int64_t share;          /* the share of stalled regions lately (sc_load_share) */
    int64_t clean_since;    /* sc_now_ns() of the first clean region since a stall, or 0 */
    int64_t solos;          /* steps' regions that thread 0 finished alone */
    int64_t force_solo;     /* tests: every steps' region goes solo at this barrier (0: none) */
} sc_load_t;

static sc_load_t sc_load_own = {0, SC_BACKOFF_MIN_NS, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
static sc_load_t* sc_load = &sc_load_own;   /* the shared one once attached */

static inline void sc_load_attach(void* shared)
{
    if (shared)
        sc_load = (sc_load_t*)shared;
}

/* The threads a kernel call runs on: `requested`, or 1 while the back-off lasts. */
static inline int sc_threads(int requested)
{
#ifdef SC_OMP_BARRIER
    return requested;
#endif
    if (requested <= 1)
        return 1;
    int64_t until = __atomic_load_n(&sc_load->serial_until, __ATOMIC_RELAXED);
    if (until != 0 && sc_now_ns() < until) {
        __atomic_add_fetch(&sc_load->serial_calls, 1, __ATOMIC_RELAXED);
        return 1;
    }
    return requested;
}

/* The share of stalled regions lately, in 1/SC_SHARE_ONE: each region reported moves it
 * 1/SC_SHARE_SPAN of the way to "stalled" or to "clean". */
static inline void sc_load_share(int stalled)
{
    int64_t s = __atomic_load_n(&sc_load->share, __ATOMIC_RELAXED);
    s += ((stalled ? SC_SHARE_ONE : 0) - s) / SC_SHARE_SPAN;
    __atomic_store_n(&sc_load->share, s, __ATOMIC_RELAXED);
}

/* A region of region_ns waited out a lost core. With no load seen lately (the back-off
 * at its shortest), the back-off starts once stalled regions are SC_SHARE_LOAD of the
 * recent ones (the third in a row, or the third of a stall every other region: a load
 * that takes a core now and then costs more than the second thread gains); while the
 * back-off is longer (load seen, and no clean stretch of SC_CLEAN_NS since), one
 * stalled region does: a load that stays would otherwise cost those stalls again at
 * each return to all threads. */
static inline void sc_load_stall(int64_t region_ns)
{
    __atomic_add_fetch(&sc_load->stalls, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&sc_load->clean_since, 0, __ATOMIC_RELAXED);
    sc_load_share(1);
    int64_t backoff = __atomic_load_n(&sc_load->backoff, __ATOMIC_RELAXED);
    if ((__atomic_load_n(&sc_load->share, __ATOMIC_RELAXED) < SC_SHARE_LOAD
                && backoff == SC_BACKOFF_MIN_NS)
            || !__atomic_load_n(&sc_load->adaptive, __ATOMIC_RELAXED))
        return;
    int64_t serial = backoff > SC_BACKOFF_REGIONS * region_ns ? backoff
                                                              : SC_BACKOFF_REGIONS * region_ns;
    __atomic_store_n(&sc_load->serial_until, sc_now_ns() + serial, __ATOMIC_RELAXED);
    backoff = 2 * backoff < SC_BACKOFF_MAX_NS ? 2 * backoff : SC_BACKOFF_MAX_NS;
    __atomic_store_n(&sc_load->backoff, backoff, __ATOMIC_RELAXED);
}

/* A region ran on all its threads without a stall. The back-off returns to its
 * shortest (one stall no longer starts it) once clean regions have lasted SC_CLEAN_NS
 * with no stall between them. A region that began before a back-off started and ended
 * inside it does not count: the stretch starts after the back-off. */
static inline void sc_load_clean(void)
{
    sc_load_share(0);
    if (__atomic_load_n(&sc_load->backoff, __ATOMIC_RELAXED) == SC_BACKOFF_MIN_NS)
        return;
    int64_t now = sc_now_ns(), since = __atomic_load_n(&sc_load->clean_since, __ATOMIC_RELAXED);
    if (now < __atomic_load_n(&sc_load->serial_until, __ATOMIC_RELAXED))
        return;
    if (since == 0) {
        __atomic_store_n(&sc_load->clean_since, now, __ATOMIC_RELAXED);
    } else if (now - since >= SC_CLEAN_NS) {
        __atomic_store_n(&sc_load->backoff, SC_BACKOFF_MIN_NS, __ATOMIC_RELAXED);
        __atomic_store_n(&sc_load->clean_since, 0, __ATOMIC_RELAXED);
    }
}

/* ---- OpenMP's own regions (the per-product prange loops) ----
 * Their end is OpenMP's barrier, so only the calling thread (q = 0 of a static
 * schedule) can weigh its wait there against its own work: sc_region_begin(nq) before
 * the loop, sc_region_mark(q) at the end of its body, sc_region_end() after it, all on
 * thread-local time stamps (nothing to declare in the callers). A wait over
 * SC_STALL_NS and over the thread's own share is a lost core, as at the barrier. */

static __thread int64_t sc_region_start = 0, sc_region_own = 0;

static inline void sc_region_begin(Py_ssize_t nq)
{
    sc_region_start = nq > 1 ? sc_now_ns() : 0;
}

static inline void sc_region_mark(Py_ssize_t q)
{
    if (q == 0 && sc_region_start != 0)
        sc_region_own = sc_now_ns();
}

static inline void sc_region_end(void)
{
#ifdef SC_OMP_BARRIER
    return;
#endif
    if (sc_region_start == 0)
        return;
    int64_t now = sc_now_ns(), waited = now - sc_region_own;
    if (waited > SC_STALL_NS && waited > sc_region_own - sc_region_start) {
        __atomic_add_fetch(&sc_load->by_loop, 1, __ATOMIC_RELAXED);
        sc_load_stall(now - sc_region_start);
    } else {
        sc_load_clean();   /* else rare stalls of loops would add up to a load */
    }
    sc_region_start = 0;
}

/* ---- the barrier ---- */

typedef struct {
    int n;                  /* threads that meet at it */
    int arrived;            /* of this generation */
    unsigned int gen;       /* bumped by the last to arrive; the futex word */
    int sleepers;           /* threads asleep on gen */
    int stalled;            /* a wait looked like a lost core (see above) */
    int solo;               /* the team stalled: thread 0 runs the rest alone */
    int ended;              /* thread 0 has run it (after solo) */
    int64_t waited;         /* ns all threads waited for the last arrival, summed */
    int64_t released;       /* sc_now_ns() at the last release */
    int64_t start;          /* sc_now_ns() before the region */
} sc_barrier_t;

/* Before the region (on the calling thread). */
static inline void sc_barrier_init(sc_barrier_t* b, int n)
{
    b->n = n;
    b->arrived = 0;
    b->gen = 0;
    b->sleepers = 0;
    b->stalled = 0;
    b->solo = 0;
    b->ended = 0;
    b->waited = 0;
    b->released = 0;
    b->start = sc_now_ns();
}

/* When this thread last left a barrier (its work since then is what a wait is weighed
 * against); 0 before its first in this module. */
static __thread int64_t sc_barrier_left = 0;

static inline void sc_futex_wait(unsigned int* addr, unsigned int val)
{
#if defined(__linux__)
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
#else
    (void)addr; (void)val;
    sched_yield();
#endif
}

static inline void sc_futex_wake(unsigned int* addr)
{
#if defined(__linux__)
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

/* Every thread of the region calls it; none returns before all have arrived. The
 * stores each made before it are visible to all after it (release/acquire on gen).
 * Returns 1 once the team has gone solo: its threads waited, since the region began,
 * over SC_SOLO_NS and over half their time (two threads that wait half their time
 * are no faster than one), so thread 0 runs the rest of the region alone (sc_meet)
 * and the others leave it. Then it returns at once, on thread 0 only. */
static inline int sc_barrier_wait(sc_barrier_t* b)
{
#ifdef SC_OMP_BARRIER
    (void)b;
    _Pragma("omp barrier")
    return 0;
#endif
    if (__atomic_load_n(&b->solo, __ATOMIC_ACQUIRE))
        return 1;
    unsigned int gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == b->n) {
        int64_t now = sc_now_ns(), waited = __atomic_load_n(&b->waited, __ATOMIC_RELAXED);
        int64_t force = __atomic_load_n(&sc_load->force_solo, __ATOMIC_RELAXED);
        if ((waited > SC_SOLO_NS && 2 * waited > (now - b->start) * b->n
                    && __atomic_load_n(&sc_load->adaptive, __ATOMIC_RELAXED))
                || (force > 0 && (int64_t)gen + 1 == force)) {
            __atomic_store_n(&b->solo, 1, __ATOMIC_RELAXED);     /* released below */
            __atomic_store_n(&b->stalled, 1, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->released, now, __ATOMIC_RELAXED);
        __atomic_store_n(&b->gen, gen + 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) != 0)
            sc_futex_wake(&b->gen);
        sc_barrier_left = now;
        return __atomic_load_n(&b->solo, __ATOMIC_RELAXED);
    }
    /* spin as long as this thread's own work since its last barrier took (a wait of an
     * idle machine is shorter), within [SC_SPIN_NS, SC_STALL_NS]; then sleep */
    int64_t t0 = sc_now_ns(), work = sc_barrier_left ? t0 - sc_barrier_left : SC_STALL_NS;
    int64_t spin = work < SC_SPIN_NS ? SC_SPIN_NS : work > SC_STALL_NS ? SC_STALL_NS : work;
    unsigned int spins = 0;
    while (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen) {
        sc_pause();
        if ((++spins & 31u) == 0 && sc_now_ns() - t0 > spin)
            break;
    }
    if (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen) {
        /* the releaser stores gen, then reads sleepers; we count ourselves, then the
         * futex compares gen: one of us sees the other (all seq_cst) */
        __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&b->gen, __ATOMIC_SEQ_CST) == gen)
            sc_futex_wait(&b->gen, gen);
        __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    }
    /* how long the team was incomplete: to the last arrival, not to this thread's
     * wake-up (a virtual machine may take a millisecond to wake an idle core) */
    int64_t late = __atomic_load_n(&b->released, __ATOMIC_RELAXED) - t0;
    if (late < 0)
        late = 0;
    __atomic_add_fetch(&b->waited, late, __ATOMIC_RELAXED);
    if (late > SC_STALL_NS && late > work)
        __atomic_store_n(&b->stalled, 1, __ATOMIC_RELAXED);
    sc_barrier_left = sc_now_ns();
    return __atomic_load_n(&b->solo, __ATOMIC_ACQUIRE);
}

/* The barrier as the steps' loops meet at it, thread *q of *nt: 1 for this thread to
 * leave the region (the team went solo, and it is not thread 0); 0 to go on, with *nt
 * set to 1 when thread 0 now runs the rest alone (its part is then every part). */
static inline int sc_meet(sc_barrier_t* b, Py_ssize_t* q, Py_ssize_t* nt)
{
    if (!sc_barrier_wait(b))
        return 0;
    if (*q != 0)
        return 1;
    *nt = 1;
    return 0;
}

/* Every thread calls it at the end of the region: a thread that left it (sc_meet)
 * sleeps until thread 0 is done rather than spin at OpenMP's closing barrier, on a
 * core thread 0 may need. */
static inline void sc_barrier_end(sc_barrier_t* b, Py_ssize_t q)
{
#ifdef SC_OMP_BARRIER
    (void)b; (void)q;
    return;
#endif
    if (!__atomic_load_n(&b->solo, __ATOMIC_ACQUIRE))
        return;
    if (q == 0) {                 /* done: ended, then gen bumped (all seq_cst) */
        __atomic_store_n(&b->ended, 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&b->gen, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) != 0)
            sc_futex_wake(&b->gen);
        return;
    }
    __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    for (;;) {                    /* gen read before ended: a bump between wakes the futex */
        unsigned int gen = __atomic_load_n(&b->gen, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->ended, __ATOMIC_SEQ_CST))
            break;
        sc_futex_wait(&b->gen, gen);
    }
    __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
}

/* After the region (on the calling thread): report what its barriers saw. */
static inline void sc_barrier_done(sc_barrier_t* b)
{
#ifdef SC_OMP_BARRIER
    (void)b;
    return;
#endif
    int64_t region = sc_now_ns() - b->start;
    int64_t waited = __atomic_load_n(&b->waited, __ATOMIC_RELAXED);
    /* a lost core counts once the waits cost 1/SC_WAIT_SHARE of the threads' time: a
     * long region that waited out a millisecond's hiccup of a virtual machine's core
     * ran far faster than one thread would have (the medium LSTM, 95 ms a call on two
     * threads: such hiccups sent 7-10 calls of each benchmark round to one thread) */
    int by_wait = __atomic_load_n(&b->stalled, __ATOMIC_RELAXED)
                  && waited * SC_WAIT_SHARE > region * b->n;
    int by_share = 2 * waited > region * b->n;
    if (by_wait)
        __atomic_add_fetch(&sc_load->by_wait, 1, __ATOMIC_RELAXED);
    if (by_share)
        __atomic_add_fetch(&sc_load->by_share, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&b->solo, __ATOMIC_RELAXED))
        __atomic_add_fetch(&sc_load->solos, 1, __ATOMIC_RELAXED);
    if (by_wait || by_share)
        sc_load_stall(region);
    else
        sc_load_clean();
}

#endif
