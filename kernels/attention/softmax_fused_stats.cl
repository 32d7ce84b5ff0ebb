// attention/softmax_fused_stats.cl: the row statistics of the softmax_fused variant (its P V kernel is in
// attention/tiled.cl). The raw scores S = Q K^T come from a GEMM, packed (B*H, Lq, Lk): S[bh, i, j] = q_i . k_j.
// Per row (bh, i), with t_j = S[bh, i, j] * scale over the keys it sees (j <= i when causal):
//   stats[row*2] = m = max_j t_j,  stats[row*2 + 1] = l = sum_j exp(t_j - m).
// Rows packed into work-groups of (TPR, WG/TPR) as in norm/softmax.cl: TPR work-items per row, each taking the vectors
// of VEC keys t, t + TPR, ... then the tail keys; trees in local memory for the max and the sum.
// NDRange (TPR, ceil(rows / RPW) * RPW); the rows past the end compute nothing and write nothing.
// S and stats are REAL in every dtype (float for float16: the launcher's scratch, never rounded to half), read with
// VLOAD_REAL (VLOAD reads DATA, half under DATA_HALF).
// Knobs (-D):
//   WG   work-items per work-group: a power of two, at most the device's max work-group size
//   TPR  work-items per row: a power of two, at most WG
//   VEC  elements per vector along the keys: 1, 2, 4, 8 or 16
#include "common.h"
#ifndef WG
#error "WG (work-items per work-group, a power of two) must be set with -D"
#endif
#ifndef TPR
#error "TPR (work-items per row, a power of two at most WG) must be set with -D"
#endif
#ifndef VEC
#error "VEC (elements per vector: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#define RPW (WG / TPR) // rows per work-group

__kernel __attribute__((reqd_work_group_size(TPR, RPW, 1)))
void attention_softmax_fused_stats(__global const REAL *S, __global REAL *stats, const long rows, const int Lq,
                                   const int Lk, const REAL scale, const int causal)
{
    __local REAL scratch[RPW][TPR];
    const int t = get_local_id(0);
    const int rl = get_local_id(1);
    const long row = get_global_id(1);
    const int i = row % Lq;
    const int seen = row < rows ? (causal ? min(i + 1, Lk) : Lk) : 0;  // rows past the end: no keys
    const int nv = seen / VEC;
    const __global REAL *sr = S + row * Lk;

    VREAL mv = -INFINITY;
    for (int v = t; v < nv; v += TPR) mv = fmax(mv, VLOAD_REAL(sr + v * VEC) * scale);
    REAL m = HMAX(mv);
    for (int j = nv * VEC + t; j < seen; j += TPR) m = fmax(m, sr[j] * scale);
    m = TreeMax(m, scratch[rl], t, TPR);
    barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read the max before the sum's tree overwrites it

    VREAL lv = 0;
    for (int v = t; v < nv; v += TPR) lv += exp(VLOAD_REAL(sr + v * VEC) * scale - m);
    REAL l = HSUM(lv);
    for (int j = nv * VEC + t; j < seen; j += TPR) l += exp(sr[j] * scale - m);
    l = TreeSum(l, scratch[rl], t, TPR);
    if (t == 0 && row < rows) {
        stats[row * 2] = m;
        stats[row * 2 + 1] = l;
    }
}
