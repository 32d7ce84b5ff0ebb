// attention, softmax_fused variant (partially fused softmax): the raw scores S = Q K^T come from a GEMM,
//   S[bh, i, j] = q_i . k_j for head bh = b*H + h,  packed (B*H, Lq, Lk);
// then two kernels:
//   attention_softmax_fused_stats: per row (bh, i) of S, with t_j = S[bh, i, j] * scale over the keys it sees
//     (j <= i when causal): stats[row*2] = m = max_j t_j, stats[row*2 + 1] = l = sum_j exp(t_j - m);
//   attention_softmax_fused_pv: o_i = (sum_j exp(t_j - m) v_j) / l, the normalization fused into the P V
//     product: P is made tile by tile in local memory and never written to global memory, normalized or not.
// v and o are in the models' layout (attention.cl): v[b, j, h*D + d] = v[(b*Lk + j)*HD + h*D + d], o like q;
// HD = H*D, D = HEAD_DIM.
//
// stats: rows packed into work-groups of (TPR, WG/TPR) as in softmax_reduce.cl: TPR work-items per row, each
// taking the vectors of VEC keys t, t + TPR, ... then the tail keys; trees in local memory for the max and the
// sum. NDRange (TPR, ceil(rows / RPW) * RPW).
// pv: one work-group per (query tile of BQ rows, bh): NDRange (ceil(Lq / BQ) * WL, B*H * WQ), work-groups of
// (WL, WQ); work-item (lane, w) accumulates the rows q0 + w + WQ*r (r < RQ), column vectors
// (lane + WL*e)*VEC + [0, VEC) (e < CD). Per key tile: P (BQ x BK, one exp per element, 0 where masked or past Lk
// or Lq) and V (zeros past Lk and D) go to local memory, then acc += P V.
// GPU-style: VEC 1, WL 16 or 32; CPU-style (PoCL vectorizes explicit vector types): WL 1, VEC 8 or 16.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif
#ifndef VEC
#define VEC 16 // elements per vector along the keys (stats, P) and the head dimension (output): 1, 2, 4, 8 or 16
#endif
#ifndef WG
#define WG 16 // stats: work-items per work-group, a power of two
#endif
#ifndef TPR
#define TPR 1 // stats: work-items per row, a power of two, at most WG
#endif
#define RPW (WG / TPR) // stats: rows per work-group
#ifndef HEAD_DIM
#define HEAD_DIM 64 // pv: D, the head dimension (the host sets it per call)
#endif
#ifndef BQ
#define BQ 32 // pv: query rows per work-group (a multiple of RQ)
#endif
#ifndef BK
#define BK 32 // pv: keys per tile (a multiple of VEC)
#endif
#ifndef WL
#define WL 1 // pv: work-items along the head dimension
#endif
#ifndef RQ
#define RQ 4 // pv: query rows per work-item
#endif
#define WQ (BQ / RQ)                                   // pv: work-items along the query rows
#define PV_WG (WL * WQ)                                // pv: work-items per work-group
#define CD ((HEAD_DIM + WL * VEC - 1) / (WL * VEC))    // pv: output column vectors per work-item
#define DP (CD * WL * VEC)                             // pv: the head dimension padded (zeros in the V tile)

#include "vec.h"
#include "attention_pv.h"
#if VEC == 1
#define ZERO_FROM(p, j, seen) ((j) >= (seen) ? (REAL)0 : (p))
#else
#define ZERO_FROM(p, j, seen) select((p), (VREAL)0, isgreaterequal((j), (seen)))
#endif

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
    for (int v = t; v < nv; v += TPR) mv = fmax(mv, VLOAD(sr + v * VEC) * scale);
    REAL m = HMAX(mv);
    for (int j = nv * VEC + t; j < seen; j += TPR) m = fmax(m, sr[j] * scale);
    scratch[rl][t] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = TPR / 2; s > 0; s >>= 1) {
        if (t < s) scratch[rl][t] = fmax(scratch[rl][t], scratch[rl][t + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = scratch[rl][0];
    barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read the max before the sum's tree overwrites it

    VREAL lv = 0;
    for (int v = t; v < nv; v += TPR) lv += exp(VLOAD(sr + v * VEC) * scale - m);
    REAL l = HSUM(lv);
    for (int j = nv * VEC + t; j < seen; j += TPR) l += exp(sr[j] * scale - m);
    scratch[rl][t] = l;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = TPR / 2; s > 0; s >>= 1) {
        if (t < s) scratch[rl][t] += scratch[rl][t + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0 && row < rows) {
        stats[row * 2] = m;
        stats[row * 2 + 1] = scratch[rl][0];
    }
}

__kernel __attribute__((reqd_work_group_size(WL, WQ, 1)))
void attention_softmax_fused_pv(__global const REAL *S, __global const REAL *stats, __global const REAL *v,
                                __global REAL *o, const int H, const int Lq, const int Lk, const REAL scale,
                                const int causal)
{
    __local REAL Ps[BQ * BK];   // Ps[row*BK + j] = exp(t - m), unnormalized
    __local REAL Vs[BK * DP];   // Vs[j*DP + d] = v[k0 + j, d]

    const int lane = get_local_id(0);
    const int w = get_local_id(1);
    const int tid = w * WL + lane;
    const int bh = get_group_id(1);
    const int b = bh / H;
    const int h = bh - b * H;
    const int q0 = get_group_id(0) * BQ;
    const long HD = (long)H * HEAD_DIM;
    const __global REAL *vb = v + (long)b * Lk * HD + h * HEAD_DIM;
    const __global REAL *sb = S + (long)bh * Lq * Lk;
    const __global REAL *mb = stats + (long)bh * Lq * 2;

    VREAL acc[RQ][CD];
    #pragma unroll
    for (int r = 0; r < RQ; ++r) {
        #pragma unroll
        for (int e = 0; e < CD; ++e) acc[r][e] = 0;
    }

    const int kend = causal ? min(Lk, q0 + BQ) : Lk;   // causal: row i sees keys j <= i < q0 + BQ
    for (int k0 = 0; k0 < kend; k0 += BK) {
        // P tile: one vector of VEC keys of one row at a time
        for (int idx = tid; idx < BQ * (BK / VEC); idx += PV_WG) {
            const int row = idx / (BK / VEC);
            const int j0 = k0 + (idx - row * (BK / VEC)) * VEC;
            const int i = q0 + row;
            VREAL p = 0;
            if (i < Lq) {
                const int seen = causal ? min(i + 1, Lk) : Lk;     // keys j < seen are visible
                const REAL mi = mb[i * 2];
                const __global REAL *si = sb + (long)i * Lk + j0;
                if (j0 + VEC <= Lk) {
                    p = ZERO_FROM(exp(VLOAD(si) * scale - mi), (REAL)j0 + IOTA, (VREAL)(REAL)seen);
                } else {                    // the row's last, partial vector of keys
                    REAL tp[VEC];
                    for (int e = 0; e < VEC; ++e) tp[e] = j0 + e < seen ? exp(si[e] * scale - mi) : 0;
                    p = VLOAD(tp);
                }
            }
            VSTORE(p, Ps + row * BK + j0 - k0);
        }
        // V tile: one vector of a key's head dimension at a time
        for (int idx = tid; idx < BK * (DP / VEC); idx += PV_WG) {
            const int j = idx / (DP / VEC);
            const int d0 = (idx - j * (DP / VEC)) * VEC;
            VREAL vv = 0;
            if (k0 + j < Lk) {
                const __global REAL *vj = vb + (k0 + j) * HD + d0;
                if (d0 + VEC <= HEAD_DIM) {
                    vv = VLOAD(vj);
                } else {                    // the last, partial vector of the head dimension
                    REAL tv[VEC];
                    for (int e = 0; e < VEC; ++e) tv[e] = d0 + e < HEAD_DIM ? vj[e] : 0;
                    vv = VLOAD(tv);
                }
            }
            VSTORE(vv, Vs + j * DP + d0);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        AccumulatePV(acc, Ps, Vs, w, lane);
        barrier(CLK_LOCAL_MEM_FENCE);   // the tiles are read before the next iteration overwrites them
    }

    #pragma unroll
    for (int r = 0; r < RQ; ++r) {
        const int i = q0 + w + WQ * r;
        if (i >= Lq) continue;
        const REAL l = mb[i * 2 + 1];
        __global REAL *oi = o + ((long)b * Lq + i) * HD + h * HEAD_DIM;
        #pragma unroll
        for (int e = 0; e < CD; ++e) StoreHeadVector(oi, acc[r][e] / l, (lane + WL * e) * VEC);
    }
}
