/* One thread's int8 rows of one (csrc/_q8.h) on one kernel path: the measurements
 * behind its choice of instructions.
 *
 *   F="-O3 -fno-math-errno -fno-trapping-math -Icsrc"
 *   gcc $F -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -DSC_PATH_AVX512 \
 *       bench/q8_rows.c -o q8           (add -mavx512vnni for the VNNI line)
 *   gcc $F -mavx2 -mfma -DSC_PATH_AVX2 bench/q8_rows.c -o q8
 *   gcc $F bench/q8_rows.c -o q8                                        (generic)
 *   ./q8 N K        c (N) = s * (Q (N, K) @ quantized a (K))
 *
 * Lines, each the median of 300 calls in µs and GB/s of weights read:
 * a plain read of the int8 weights (a sum of their 8-byte words: what one core can
 * read, the floor of any kernel that reads them once); sc_rowdot2_q8_f (the kernel:
 * quantize a, int8 x int8 sums, scale); sc_rowdot2_f on the same weights in float32
 * (a float model's step); with -mavx512vnni, the int8 sums by vpdpbusd.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "_packed_gemm.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#if defined(__AVX512VNNI__)
/* d[j] = sum_k Q[j, k] aq[k] by vpdpbusd (|aq| with its sign moved onto the weights). */
static void vnni(int32_t *d, const int8_t *aq, const int8_t *Q, size_t n, size_t k)
{
    for (size_t j = 0; j < n; j++) {
        __m512i acc = _mm512_setzero_si512();
        for (size_t kk = 0; kk + 64 <= k; kk += 64) {
            __m512i a = _mm512_loadu_si512(aq + kk);
            __m512i q = _mm512_loadu_si512(Q + j * k + kk);
            q = _mm512_mask_sub_epi8(q, _mm512_movepi8_mask(a), _mm512_setzero_si512(), q);
            acc = _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(a), q);
        }
        d[j] = _mm512_reduce_add_epi32(acc);
    }
}
#endif

#define CALLS 300

/* The sum of the n bytes at Q as 8-byte words: a read of every line, nothing else. */
static __attribute__((noinline)) uint64_t read_all(const int8_t *Q, size_t n)
{
    uint64_t s = 0, w;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        memcpy(&w, Q + i, 8);
        s += w;
    }
    return s;
}

static void report(const char *what, double *t, double bytes)
{
    qsort(t, CALLS, sizeof(double), by_value);
    printf("%-24s %9.1f us  %6.1f GB/s\n", what, 1e6 * t[CALLS / 2], bytes / t[CALLS / 2] / 1e9);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s N K\n", argv[0]);
        return 2;
    }
    size_t n = strtoul(argv[1], NULL, 10), k = strtoul(argv[2], NULL, 10);
    int8_t *Q = malloc(n * k);
    float *a = malloc(k * sizeof(float)), *s = malloc(n * sizeof(float));
    float *c = malloc(n * sizeof(float)), *c2 = malloc(n * sizeof(float));
    float *W = malloc(n * k * sizeof(float));
    double *t = malloc(CALLS * sizeof(double));
    if (!Q || !a || !s || !c || !c2 || !W || !t) return 1;
    srand(1);
    for (size_t i = 0; i < n * k; i++) Q[i] = (int8_t)(rand() % 255 - 127);
    for (size_t i = 0; i < k; i++) a[i] = (float)(rand() % 255 - 127);
    a[0] = 127;                               /* max |a| = 127: a quantizes to itself */
    for (size_t j = 0; j < n; j++) s[j] = 1.0f / 127;
    for (size_t i = 0; i < n * k; i++) W[i] = Q[i] * s[i / k];

    printf("%s path, N %zu, K %zu (%.1f MB of int8 weights)\n", SC_PATH_NAME, n, k, n * k / 1e6);
    volatile uint64_t sink = 0;
    for (int i = 0; i < CALLS; i++) {
        double t0 = now();
        sink += read_all(Q, n * k);
        t[i] = now() - t0;
    }
    report("read the weights", t, (double)n * k);
    for (int i = 0; i < CALLS; i++) {
        double t0 = now();
        sc_rowdot2_q8_f(c, a, k, a, 0, Q, s, k, n, 0);
        t[i] = now() - t0;
    }
    report("sc_rowdot2_q8_f", t, (double)n * k);
    for (int i = 0; i < CALLS; i++) {
        double t0 = now();
        sc_rowdot2_f(c2, a, k, a, 0, W, k, n, 0);
        t[i] = now() - t0;
    }
    report("sc_rowdot2_f, float32", t, 4.0 * n * k);
    for (size_t j = 0; j < n; j++)
        if (fabsf(c[j] - c2[j]) > 1e-3f * (1 + fabsf(c2[j]))) {  /* the same sums, to float32 rounding */
            printf("row %zu: %g against %g\n", j, c[j], c2[j]);
            return 1;
        }
#if defined(__AVX512VNNI__)
    int8_t *aq = malloc(k);
    int32_t *d = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < k; i++) aq[i] = (int8_t)a[i];
    for (int i = 0; i < CALLS; i++) {
        double t0 = now();
        vnni(d, aq, Q, n, k);
        t[i] = now() - t0;
    }
    report("vpdpbusd sums", t, (double)n * k);
    free(aq);
    free(d);
#endif
    free(Q); free(a); free(s); free(c); free(c2); free(W); free(t);
    return 0;
}
