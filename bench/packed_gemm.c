/* One thread's packed products on one kernel path: the measurements behind csrc/_paths.h.
 *
 *   F="-O3 -fno-math-errno -Icsrc"    (add -DSC_FORCE_PACK_A: rows of A always packed)
 *   gcc $F -mavx2 -mfma -DSC_PATH_AVX2 bench/packed_gemm.c -o pg
 *   gcc $F -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -DSC_PATH_AVX512 \
 *       bench/packed_gemm.c -o pg
 *   gcc $F bench/packed_gemm.c -o pg                                  (generic)
 *   ./pg step M N K    C (M, N) += A (M, K) @ P, A's rows contiguous: a step's product
 *                      (and the input projection)
 *   ./pg dw M N K      C (M, N) += dz^T @ P, dz (K, M): the weight gradients' product,
 *                      A = dz^T, MR values of each row of dz per k step
 *
 * Two lines, the best of 15 calls each in GFLOP/s: sc_packed_gemm with no workspace
 * (rows of A never packed), then with one (packed where the path's thresholds say;
 * with SC_FORCE_PACK_A, always).
 */
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

static float *filled(size_t n, int mod)
{
    float *v = aligned_alloc(64, (sizeof(float) * n + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++) v[i] = (float)(i % mod) * 0.1f;
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "step") && strcmp(argv[1], "dw"))) {
        fprintf(stderr, "usage: %s step|dw M N K\n", argv[0]);
        return 2;
    }
    int dw = strcmp(argv[1], "dw") == 0;
    size_t m = strtoul(argv[2], 0, 10), n = strtoul(argv[3], 0, 10), k = strtoul(argv[4], 0, 10);
    size_t np = sc_panels(n, SC_NR_F);
    float *A = filled(m * k, 7), *B = filled(k * n, 5), *C = filled(m * n, 3);
    float *P = filled(np * SC_NR_F * k, 2), *abuf = filled(sc_a_block_len(k, sizeof(float)), 2);
    sc_pack_cols_f(P, B, n, n, k, 0, np);
    size_t rs = dw ? 1 : k, cs = dw ? m : 1;     /* dz (k, m) read as dz^T (m, k) */
    for (int with_abuf = 0; with_abuf < 2; with_abuf++) {
        double best = 1e30;
        for (int r = 0; r < 15; r++) {
            double t = now();
            sc_packed_gemm_f(C, n, A, rs, cs, P, m, n, k, 0, np, 1, with_abuf ? abuf : NULL);
            t = now() - t;
            best = t < best ? t : best;
        }
#ifdef SC_FORCE_PACK_A
        const char *how = with_abuf ? "always packed" : "never packed ";
#else
        const char *how = with_abuf ? "path's rule  " : "never packed ";
#endif
        printf("%-7s %-4s M=%zu N=%zu K=%zu, A %s %6.1f GFLOP/s\n", SC_PATH_NAME, argv[1],
               m, n, k, how, 2.0 * m * n * k / best * 1e-9);
    }
    return 0;
}
