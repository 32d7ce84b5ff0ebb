// gemm/cpu_reg.cl, gemm_cpu_reg: CPU-style (PoCL), the GEMM of gemm/gemm.h (layout, arguments, flags). No local
// memory, no barriers. Each work-item computes an MR x NR block of C in registers, streaming along k. NDRange
// (ceil(N/NR), ceil(M/MR), Z) padded up to a whole number of fixed work-groups (the host's CPU_REG_LOCAL: a local
// size the driver picked from each global size made PoCL generate code anew for every new shape); the work-items
// past the blocks return at once. The blocks are dealt out in groups of GM block rows.
//  B (K, N): the NR columns are one REALNR vector: per k, one vector load of B's row segment and MR fma with
//            A's elements broadcast (an AVX-512 fma with a broadcast memory operand each).
//  B^T (N, K) (GEMM_TRANS_B): B's rows are contiguous along k, so each of the MR x NR outputs is a dot product
//            vectorised along k in REALKV vectors (MR + NR vector loads per MR*NR vector fma), its lanes summed at
//            the end.
// Tails, with no branch in the k loop: rows of A (and of B^T) past M (N) are clamped to the last one and their
// results are not stored; with B (K, N) the last column block slides left to end at N (when N >= NR) and stores
// only the columns it owns, and N < NR takes a scalar path. The k remainder (K % KU, K % KV) runs scalar.
// float16 (-DDATA_HALF, gemm/gemm.h): A and B read as half (vload_half), the bias, residual and C of DATA (vector
// reads and writes through LDN_D / STN_D), the accumulation and epilogue in REAL (float).
// Knobs (-D):
//   MR   rows of C per work-item
//   NR   columns of C per work-item; with B (K, N) also the vector width: 4, 8 or 16 (other values run that path
//        scalar)
//   KU   B (K, N): the k loop unrolled KU times
//   KV   B^T (N, K): the vector width along k: 4, 8 or 16
//   GM   block rows per group: consecutive work-items (as the CPU runs them) take the blocks of GM block rows, down
//        the rows first, then the next NR columns, so that B's NR columns are read GM times from cache and not
//        once per block row from memory (1: a block row at a time, its blocks across all of N). PoCL, 2 cores:
//        linear 2x1024x640 @ 640x640^T 19.5 -> 11.3 ms at GM 8, winograd's 36 x (256x256 @ 256x3640) 130 -> 92 ms
//        at GM 32, a 256x512 @ 512x65536 matmul 371 -> 399 ms at GM 8 (the tuner picks per shape)
#include "common.h"
#ifndef MR
#error "MR (rows of C per work-item) must be set with -D"
#endif
#ifndef NR
#error "NR (columns of C per work-item) must be set with -D"
#endif
#ifndef KU
#error "KU (the unrolling of the B (K, N) path's k loop) must be set with -D"
#endif
#ifndef KV
#error "KV (the B^T path's vector width along k) must be set with -D"
#endif
#ifndef GM
#error "GM (block rows per group of consecutive work-items) must be set with -D"
#endif
#include "gemm.h"

#if NR == 4 || NR == 8 || NR == 16
#define REALNR CAT(REAL, NR)
#else
#define NR_NOT_A_VECTOR // B (K, N) then runs scalar: NR in 4, 8, 16 is the vector path
#endif
#define REALKV CAT(REAL, KV)

// C rows m0 .. m0+MR of B (K, N) columns n0 .. n0+NR.
inline void cpu_reg_nn(const __global A_T *const ar[MR], const __global B_T *b, const __global DATA *bias,
                       const __global DATA *res, __global DATA *c, const int M, const int N, const int K,
                       const int ldb, const int ldc, const REAL alpha, const int flags, const int m0, const int n0)
{
#ifdef NR_NOT_A_VECTOR
    const bool scalar = true;
#else
    const bool scalar = N < NR;      // narrower than one vector: one work-item computes all N columns
#endif
    if (scalar) {
        for (int r = 0; r < MR && m0 + r < M; ++r)
            for (int n = n0; n < min(n0 + NR, N); ++n) {
                REAL s = 0;
                for (int k = 0; k < K; ++k)
                    s = fma(LD_A(ar[r], k), LD_B(b, (long)k * ldb + n), s);
                STORE(c, (long)(m0 + r) * ldc + n, EPILOGUE(s, m0 + r, n));
            }
        return;
    }
#ifndef NR_NOT_A_VECTOR
    const int ns = min(n0, N - NR);    // the block's first column: the last block slides left to end at N
    const __global B_T *bp = b + ns;
    REALNR acc[MR];
#pragma unroll
    for (int r = 0; r < MR; ++r)
        acc[r] = 0;
    int k = 0;
    for (; k + KU <= K; k += KU) {
#pragma unroll
        for (int u = 0; u < KU; ++u) {
            const REALNR bv = LDN_B(NR, bp, (long)(k + u) * ldb);
#pragma unroll
            for (int r = 0; r < MR; ++r)
                acc[r] = fma((REALNR)(LD_A(ar[r], k + u)), bv, acc[r]);
        }
    }
    for (; k < K; ++k) {
        const REALNR bv = LDN_B(NR, bp, (long)k * ldb);
#pragma unroll
        for (int r = 0; r < MR; ++r)
            acc[r] = fma((REALNR)(LD_A(ar[r], k)), bv, acc[r]);
    }
    for (int r = 0; r < MR && m0 + r < M; ++r) {
        const int m = m0 + r;
        __global DATA *crow = c + (long)m * ldc;
        if (ns == n0) {
            REALNR v = (REALNR)(alpha) * acc[r];
            if (flags & GEMM_BIAS_N)
                v += LDN_D(NR, bias, n0);
            else if (flags & GEMM_BIAS_M)
                v += (REALNR)(LOAD(bias, m));
            if (flags & GEMM_RES)
                v += LDN_D(NR, res, (long)m * ldc + n0);
            STN_D(NR, v, crow, n0);
        } else {
            REAL t[NR];
            CAT(vstore, NR)(acc[r], 0, t);
            for (int j = n0 - ns; j < NR; ++j)
                STORE(crow, ns + j, EPILOGUE(t[j], m, ns + j));
        }
    }
#endif
}

// C rows m0 .. m0+MR of B^T (N, K) rows n0 .. n0+NR.
inline void cpu_reg_nt(const __global A_T *const ar[MR], const __global B_T *b, const __global DATA *bias,
                       const __global DATA *res, __global DATA *c, const int M, const int N, const int K,
                       const int ldb, const int ldc, const REAL alpha, const int flags, const int m0, const int n0)
{
    const __global B_T *br[NR];
    for (int j = 0; j < NR; ++j)
        br[j] = b + (long)min(n0 + j, N - 1) * ldb;
    REALKV acc[MR][NR];
#pragma unroll
    for (int r = 0; r < MR; ++r)
#pragma unroll
        for (int j = 0; j < NR; ++j)
            acc[r][j] = 0;
    int k = 0;
    for (; k + KV <= K; k += KV) {
        REALKV av[MR], bv[NR];
#pragma unroll
        for (int r = 0; r < MR; ++r)
            av[r] = LDN_A(KV, ar[r], k);
#pragma unroll
        for (int j = 0; j < NR; ++j)
            bv[j] = LDN_B(KV, br[j], k);
#pragma unroll
        for (int r = 0; r < MR; ++r)
#pragma unroll
            for (int j = 0; j < NR; ++j)
                acc[r][j] = fma(av[r], bv[j], acc[r][j]);
    }
    for (int r = 0; r < MR && m0 + r < M; ++r)
        for (int j = 0; j < NR && n0 + j < N; ++j) {
            REAL s = CAT(HSum, KV)(acc[r][j]);
            for (int kk = k; kk < K; ++kk)
                s = fma(LD_A(ar[r], kk), LD_B(br[j], kk), s);
            STORE(c, (long)(m0 + r) * ldc + n0 + j, EPILOGUE(s, m0 + r, n0 + j));
        }
}

__kernel void gemm_cpu_reg(GEMM_ARGS)
{
    // work-item pid (in the order the NDRange enumerates them) -> block (m, n), GM block rows at a time (see GM)
    const int tn = (N + NR - 1) / NR, tm = (M + MR - 1) / MR;     // blocks of C across and down
    if (get_global_id(0) >= tn || get_global_id(1) >= tm)
        return;                                                     // the padding of the NDRange
    const int pid = get_global_id(1) * tn + get_global_id(0), in_group = pid % (GM * tn);
    const int first_m = pid / (GM * tn) * GM, rows = min(tm - first_m, GM);
    const int n0 = in_group / rows * NR, m0 = (first_m + in_group % rows) * MR;
    GEMM_BATCH(get_global_id(2));
    if (m0 >= M || n0 >= N)
        return;
    const __global A_T *ar[MR];
    for (int r = 0; r < MR; ++r)
        ar[r] = a + (long)min(m0 + r, M - 1) * lda;
    if (flags & GEMM_TRANS_B)
        cpu_reg_nt(ar, b, bias, res, c, M, N, K, ldb, ldc, alpha, flags, m0, n0);
    else
        cpu_reg_nn(ar, b, bias, res, c, M, N, K, ldb, ldc, alpha, flags, m0, n0);
}
