// gemm/tiled.cl, gemm_tiled: local-memory tiling, the GEMM of gemm/gemm.h (layout, arguments, flags). A TS x TS
// work-group computes a TS x TS tile of C, one element per work-item, staging TS x TS tiles of A and B in local
// memory per step of TS along k:
//     As[i][kk] = A[m0 + i, k0 + kk],   Bs[kk][j] = B[k0 + kk, n0 + j]
// float16 (DATA half): A and B are read with vload_half into the REAL tiles, C rounded to half once.
// Tails: bounds checks; out-of-range tile elements are staged as 0 and out-of-range C elements are not stored.
// NDRange (ceil(N/TS)*TS, ceil(M/TS)*TS, Z), work-groups (TS, TS, 1).
// Knobs (-D):
//   TS   tile edge: work-groups of TS x TS (at most the device's max work-group size), 2*TS*TS REALs of local memory
//        (e.g. 8, 16, 32)
#include "common.h"
#ifndef TS
#error "TS (the tile edge) must be set with -D"
#endif
#include "gemm.h"

__kernel __attribute__((reqd_work_group_size(TS, TS, 1)))
void gemm_tiled(GEMM_ARGS)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int n0 = get_group_id(0) * TS, m0 = get_group_id(1) * TS;
    const int n = n0 + tx, m = m0 + ty;
    GEMM_BATCH(get_global_id(2));
    const bool trans_b = flags & GEMM_TRANS_B;
    __local REAL As[TS][TS];  // As[i][kk] = A[m0 + i, k0 + kk]
    __local REAL Bs[TS][TS];  // Bs[kk][j] = B[k0 + kk, n0 + j]
    REAL acc = 0;
    for (int k0 = 0; k0 < K; k0 += TS) {
        As[ty][tx] = (m < M && k0 + tx < K) ? LD_A(a, (long)m * lda + k0 + tx) : 0;
        if (trans_b)  // work-item (tx, ty) reads B[k0 + tx, n0 + ty]: neighbours in tx read neighbouring addresses
            Bs[tx][ty] = (n0 + ty < N && k0 + tx < K) ? LD_B(b, (long)(n0 + ty) * ldb + k0 + tx) : 0;
        else
            Bs[ty][tx] = (k0 + ty < K && n < N) ? LD_B(b, (long)(k0 + ty) * ldb + n) : 0;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TS; ++kk)
            acc = fma(As[ty][kk], Bs[kk][tx], acc);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (m < M && n < N)
        STORE(c, (long)m * ldc + n, EPILOGUE(acc, m, n));
}
