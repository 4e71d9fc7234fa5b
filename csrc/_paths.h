/* Kernel paths (fast path): one table of block sizes per instruction set.
 *
 * setup.py compiles every cell module once per path, each with its own -m flags and
 * one of these macros, so the whole module (products, one-row products and the
 * vectorized gate math) uses the vector registers that path has:
 *
 *   SC_PATH_AVX512  AVX-512 F/BW/DQ/VL + AVX2 + FMA: 32 zmm registers of 64 bytes
 *   SC_PATH_AVX2    AVX2 + FMA:                      16 ymm registers of 32 bytes
 *   (neither)       generic: the x86-64 baseline (SSE2, 16 xmm registers of 16
 *                   bytes, no FMA), or whatever 16-byte vectors another architecture
 *                   has (GCC lowers them to scalar code where there are none)
 *
 * seqcore._cpu tells at import which of them the CPU runs (seqcore/_dispatch.py).
 *
 * The micro-kernel keeps an MR x NR block of C in registers, NR = two vectors, so it
 * needs 2 MR accumulators, the 2 vectors of a panel's row and a broadcast of A, as
 * BLIS sizes its kernels to the register file (Haswell: sgemm 6 x 16, dgemm 6 x 8):
 *   avx512   MR 12: 24 + 2 + 1 = 27 of 32 zmm
 *   avx2     MR 6:  12 + 2 + 1 = 15 of 16 ymm
 *   generic  MR 4:   8 + 2 + 1 (+ 1 for the product, without FMA) = 12 of 16 xmm
 * Each was measured on its path against the other (bench/packed_gemm.c, and whole
 * layers: docs/performance.md): avx2 MR 4 and 6 ran level, generic MR 4 beat 6 by 2-3%.
 */
#ifndef SEQCORE_PATHS_H
#define SEQCORE_PATHS_H

#include <stddef.h>

#define SC_NEVER ((size_t)-1)   /* a threshold never reached */

#if defined(SC_PATH_AVX512)
#  define SC_PATH_NAME "avx512"
#  define SC_VEC_BYTES 64
#  define SC_LANES_F 16
#  define SC_LANES_D 8
#  define SC_MR 12
#  define SC_PACK_A_MIN_K 1024
#  define SC_PACK_A_MIN_N 512
#  define SC_PACK_AT_MIN_N SC_NEVER
#elif defined(SC_PATH_AVX2)
#  define SC_PATH_NAME "avx2"
#  define SC_VEC_BYTES 32
#  define SC_LANES_F 8
#  define SC_LANES_D 4
#  define SC_MR 6
#  define SC_PACK_A_MIN_K SC_NEVER
#  define SC_PACK_A_MIN_N SC_NEVER
#  define SC_PACK_AT_MIN_N 64
#else
#  define SC_PATH_NAME "generic"
#  define SC_VEC_BYTES 16
#  define SC_LANES_F 4
#  define SC_LANES_D 2
#  define SC_MR 4
#  define SC_PACK_A_MIN_K SC_NEVER
#  define SC_PACK_A_MIN_N SC_NEVER
#  define SC_PACK_AT_MIN_N 64
#endif

/* SC_LANES_F, SC_LANES_D: floats and doubles in a vector (literals: masks are built
 * from them by token pasting in _packed_gemm.h) */
#define SC_NR_F (2 * SC_LANES_F)        /* columns of a float panel */
#define SC_NR_D (2 * SC_LANES_D)        /* columns of a double panel */
#define SC_ROWS_F SC_LANES_F            /* rows per block of sc_rowdot_f */
#define SC_ROWS_D SC_LANES_D            /* rows per block of sc_rowdot_d */

/* Blocking and threading. The packing thresholds depend on MR and were measured per
 * path with bench/packed_gemm.c (one thread's share of a step's product and of dW).
 * The row block follows the caches, not the instruction set; the thread thresholds
 * follow the cost of a thread's hand-off, and a lower one for single rows (32 Ki
 * weights) gained nothing on avx2 or avx512 at stream, so both stay as measured on
 * avx512:
 *   SC_ROW_BLOCK_BYTES   rows of A per block of a product: this many bytes of A, which
 *                        stay in L2 while every panel of the weights passes over them
 *   SC_PACK_A_MIN_K/_N   rows of A are packed from this length k, when the thread has
 *                        this many columns of C or more (sc_pack_a). avx512: its 12
 *                        rows, 4 KiB apart at k = 1024, fell in one set of the L1 of
 *                        the CPU it was tuned on, where packing gained 8-10% (on a
 *                        Zen 5 it costs 2-3% there instead); avx2 and generic never
 *                        pack them: their 6 and 4 rows lose 2-4% and 1-3% packed
 *                        (64 x 1024 x 1024 and 64 x 512 x 512)
 *   SC_PACK_AT_MIN_N     a transposed A (dz^T of the weight gradients, its MR values of
 *                        a k step in one row of dz) is packed from this many columns:
 *                        one thread's share of the large RNN's dW (1024 x 512 x 512)
 *                        ran at 89 GFLOP/s unpacked on avx2, 127-129 packed; generic
 *                        31-32 -> 46; at 64 columns avx2 +11-14%, generic +27%. avx512
 *                        never: level at 512 columns, -22% at 64 (its MR = 12 reads 48
 *                        of each 64 bytes it loads)
 *   SC_THREAD_MIN_MACS   a product wakes a second thread from this many multiply-adds
 *   SC_THREAD_MIN_ROW_WEIGHTS  ... and a product of one row from this many weights
 *   SC_SPLIT_COLUMNS     a thread given fewer columns than this splits rows instead
 *   SC_REGION_MIN_UNITS  a batch's steps share one parallel region from B * H units */
#define SC_ROW_BLOCK_BYTES 262144
#define SC_THREAD_MIN_MACS (1 << 20)
#define SC_THREAD_MIN_ROW_WEIGHTS (1 << 16)
#define SC_SPLIT_COLUMNS 512
#define SC_REGION_MIN_UNITS 2048

/* bench/packed_gemm.c measures every product packed: built with SC_FORCE_PACK_A. */
#ifdef SC_FORCE_PACK_A
#  undef SC_PACK_A_MIN_K
#  undef SC_PACK_A_MIN_N
#  undef SC_PACK_AT_MIN_N
#  define SC_PACK_A_MIN_K 0
#  define SC_PACK_A_MIN_N 0
#  define SC_PACK_AT_MIN_N 0
#endif

#endif
