// attention/tiled.cl: the key-tiled kernels, on one geometry (attention/tiles.h), so that one build of a tile setting
// and head dimension serves both:
//   attention_flash             the flash variant (FlashAttention: key tiles, an online softmax, no Lq x Lk matrix
//                               ever stored);
//   attention_softmax_fused_pv  the P V half of the softmax_fused variant: o_i = (sum_j exp(t_j - m) v_j) / l with
//                               the row statistics (m, l) of attention/softmax_fused_stats.cl, P made tile by tile in
//                               local memory and never written to global memory.
// Layout, the models' own (no permutes): q[b, i, h*D + d] = q[(b*Lq + i)*HD + h*D + d], k, v likewise with Lk rows,
// o like q; HD = H*D, D = HEAD_DIM. softmax_fused's raw scores S = Q K^T come from a GEMM, packed (B*H, Lq, Lk):
// S[bh, i, j] = q_i . k_j for head bh = b*H + h; t_j = S[bh, i, j] * scale; stats[row*2] = m, stats[row*2 + 1] = l.
// One work-group per (query tile of BQ rows, b*H + h): NDRange (ceil(Lq / BQ) * WL, B*H * WQ), work-groups of
// (WL, WQ). Work-item (lane, w) owns the query rows i = q0 + w + WQ*r (r < RQ) and, for them, the accumulator columns
// (lane + WL*e)*VEC + [0, VEC) (e < CD) of the output; flash also the scores of the key vectors
// k0 + (lane + WL*c)*VEC + [0, VEC) (c < CK) of each key tile.
// flash, per key tile k0 .. k0 + BK (only the tiles some row of the query tile may see when causal):
//   1. the K tile (transposed: Kt[d][j]) and the V tile (Vs[j][d]) go to local memory, zeros past Lk and past D;
//   2. s = (q_i . k_j) * scale for the work-item's rows and keys, -inf where masked (j >= Lk; j > i if causal);
//   3. the row's new max m' = max(m, max_j s) over the lanes (partials in local memory), the rescale factor
//      alpha = exp(m - m'), p = exp(s - m') into local memory, l' = alpha l + sum_j p over the lanes;
//   4. acc = alpha acc + P V from the local P and V tiles.
//   Then o_i = acc / l. Every lane of a row computes m', alpha and l' from the same partials in the same order, so
//   they agree bit for bit. The first tile holds key 0, which no row masks (0 <= i, 0 < Lk): from it on every m is
//   finite, so exp(s - m') is 0 for a masked s and alpha = exp(-inf) = 0 on the first tile (no -inf - -inf).
//   Rows past Lq read row Lq - 1 (no branch in the loops) and write nothing.
// softmax_fused_pv, per key tile: P (BQ x BK, one exp per element, 0 where masked or past Lk or Lq) and V (zeros past
//   Lk and D) go to local memory, then acc += P V; then o_i = acc / l.
// q, k, v and o are DATA (REAL, or half for float16: common.h); S, stats, the local tiles and the arithmetic REAL,
// so that for float16 the output's rounding to half is the only one (softmax_fused's launcher makes S in float32).
// GPU-style: VEC 1, WL 16 or 32 lanes share a tile's keys and head dimension. CPU-style (PoCL vectorizes explicit
// vector types, not a work-item's loop): WL 1, VEC 8 or 16, each work-item a few rows with all their keys.
// Knobs (-D):
//   BQ   query rows per work-group, a multiple of RQ
//   BK   keys per tile, a multiple of WL * VEC
//   WL   work-items along the keys of a score tile and along the head dimension of the output
//   RQ   query rows per work-item
//   VEC  elements per vector along the keys (scores, P) and the head dimension (output): 1, 2, 4, 8 or 16
//   (WL * BQ / RQ work-items and the local tiles, registry/linalg.py attention_local_bytes, must fit the device)
// Structural (-D, set by the host per call): HEAD_DIM, the head dimension D.
#include "common.h"
#ifndef BQ
#error "BQ (query rows per work-group) must be set with -D"
#endif
#ifndef BK
#error "BK (keys per tile) must be set with -D"
#endif
#ifndef WL
#error "WL (work-items along the keys and the head dimension) must be set with -D"
#endif
#ifndef RQ
#error "RQ (query rows per work-item) must be set with -D"
#endif
#ifndef VEC
#error "VEC (elements per vector: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#ifndef HEAD_DIM
#error "HEAD_DIM (the head dimension) must be set with -D"
#endif
#include "tiles.h"
#define CK (BK / (WL * VEC))                           // flash: key vectors per work-item in a score tile
#if VEC == 1
#define MASK(t, j, seen) ((j) >= (seen) ? (REAL)(-INFINITY) : (t))
#define ZERO_FROM(p, j, seen) ((j) >= (seen) ? (REAL)0 : (p))
#else
#define MASK(t, j, seen) select((t), (VREAL)(-INFINITY), isgreaterequal((j), (seen)))
#define ZERO_FROM(p, j, seen) select((p), (VREAL)0, isgreaterequal((j), (seen)))
#endif

__kernel __attribute__((reqd_work_group_size(WL, WQ, 1)))
void attention_flash(__global const DATA *q, __global const DATA *k, __global const DATA *v, __global DATA *o,
                     const int H, const int Lq, const int Lk, const REAL scale, const int causal)
{
    __local REAL Kt[HEAD_DIM * BK];     // Kt[d*BK + j] = k[k0 + j, d]
    __local REAL Vs[BK * DP];           // Vs[j*DP + d] = v[k0 + j, d]
    __local REAL Ps[BQ * BK];           // Ps[row*BK + j] = exp(s - m')
    __local REAL red_max[BQ * WL];      // per row, one partial per lane
    __local REAL red_sum[BQ * WL];

    const int lane = get_local_id(0);
    const int w = get_local_id(1);
    const int tid = w * WL + lane;
    const int bh = get_group_id(1);
    const int b = bh / H;
    const int h = bh - b * H;
    const int q0 = get_group_id(0) * BQ;
    const long HD = (long)H * HEAD_DIM;
    const __global DATA *kb = k + (long)b * Lk * HD + h * HEAD_DIM;
    const __global DATA *vb = v + (long)b * Lk * HD + h * HEAD_DIM;
    const __global DATA *qb = q + (long)b * Lq * HD + h * HEAD_DIM;

    REAL m[RQ], l[RQ];
    VREAL acc[RQ][CD];
    #pragma unroll
    for (int r = 0; r < RQ; ++r) {
        m[r] = -INFINITY;
        l[r] = 0;
        #pragma unroll
        for (int e = 0; e < CD; ++e) acc[r][e] = 0;
    }

    const __global DATA *qrow[RQ];      // the work-item's query rows (rows past Lq: row Lq - 1)
    #pragma unroll
    for (int r = 0; r < RQ; ++r) qrow[r] = qb + min(q0 + w + WQ * r, Lq - 1) * HD;

    const int kend = causal ? min(Lk, q0 + BQ) : Lk;   // causal: row i sees keys j <= i < q0 + BQ
    for (int k0 = 0; k0 < kend; k0 += BK) {
        // 1. K and V tiles to local memory, one vector of a key's head dimension at a time
        for (int idx = tid; idx < BK * (DP / VEC); idx += TILE_WG) {
            const int j = idx / (DP / VEC);
            const int d0 = (idx - j * (DP / VEC)) * VEC;
            VREAL kv = 0, vv = 0;
            if (k0 + j < Lk) {
                kv = LoadHeadVector(kb + (k0 + j) * HD, d0);
                vv = LoadHeadVector(vb + (k0 + j) * HD, d0);
            }
            VSTORE_REAL(vv, Vs + j * DP + d0);
            REAL kl[VEC];                   // the K vector's lanes, to the column j of Kt
            VSTORE_REAL(kv, kl);
            for (int e = 0; e < VEC; ++e)
                if (d0 + e < HEAD_DIM) Kt[(d0 + e) * BK + j] = kl[e];
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 2. scores, scaled and masked; each row's partial max over this work-item's keys
        VREAL s[RQ][CK];
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            #pragma unroll
            for (int c = 0; c < CK; ++c) s[r][c] = 0;
        }
        for (int d = 0; d < HEAD_DIM; ++d) {
            VREAL kd[CK];
            #pragma unroll
            for (int c = 0; c < CK; ++c) kd[c] = VLOAD_REAL(Kt + d * BK + (lane + WL * c) * VEC);
            #pragma unroll
            for (int r = 0; r < RQ; ++r) {
                const REAL qd = LOAD(qrow[r], d);
                #pragma unroll
                for (int c = 0; c < CK; ++c) s[r][c] += qd * kd[c];
            }
        }
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            const int i = q0 + w + WQ * r;
            const VREAL seen = (REAL)(causal ? min(i + 1, Lk) : Lk);    // keys j < seen are visible
            REAL pm = -INFINITY;
            #pragma unroll
            for (int c = 0; c < CK; ++c) {
                const VREAL j = (REAL)(k0 + (lane + WL * c) * VEC) + IOTA;
                s[r][c] = MASK(s[r][c] * scale, j, seen);
                pm = fmax(pm, HMAX(s[r][c]));
            }
            red_max[(w + WQ * r) * WL + lane] = pm;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 3. online softmax: new max, rescale factor, probabilities, their partial sums
        REAL alpha[RQ];
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            const int row = w + WQ * r;
            REAL mt = m[r];
            for (int x = 0; x < WL; ++x) mt = fmax(mt, red_max[row * WL + x]);
            alpha[r] = exp(m[r] - mt);
            m[r] = mt;
            REAL ps = 0;
            #pragma unroll
            for (int c = 0; c < CK; ++c) {
                const VREAL p = exp(s[r][c] - mt);
                VSTORE_REAL(p, Ps + row * BK + (lane + WL * c) * VEC);
                ps += HSUM(p);
            }
            red_sum[row * WL + lane] = ps;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 4. acc = alpha acc + P V
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            const int row = w + WQ * r;
            REAL ls = 0;
            for (int x = 0; x < WL; ++x) ls += red_sum[row * WL + x];
            l[r] = l[r] * alpha[r] + ls;
            #pragma unroll
            for (int e = 0; e < CD; ++e) acc[r][e] *= alpha[r];
        }
        AccumulatePV(acc, Ps, Vs, w, lane);
        barrier(CLK_LOCAL_MEM_FENCE);   // the tiles are read before the next iteration overwrites them
    }

    #pragma unroll
    for (int r = 0; r < RQ; ++r) {
        const int i = q0 + w + WQ * r;
        if (i >= Lq) continue;
        __global DATA *oi = o + ((long)b * Lq + i) * HD + h * HEAD_DIM;
        #pragma unroll
        for (int e = 0; e < CD; ++e) StoreHeadVector(oi, acc[r][e] / l[r], (lane + WL * e) * VEC);
    }
}

__kernel __attribute__((reqd_work_group_size(WL, WQ, 1)))
void attention_softmax_fused_pv(__global const REAL *S, __global const REAL *stats, __global const DATA *v,
                                __global DATA *o, const int H, const int Lq, const int Lk, const REAL scale,
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
    const __global DATA *vb = v + (long)b * Lk * HD + h * HEAD_DIM;
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
        for (int idx = tid; idx < BQ * (BK / VEC); idx += TILE_WG) {
            const int row = idx / (BK / VEC);
            const int j0 = k0 + (idx - row * (BK / VEC)) * VEC;
            const int i = q0 + row;
            VREAL p = 0;
            if (i < Lq) {
                const int seen = causal ? min(i + 1, Lk) : Lk;     // keys j < seen are visible
                const REAL mi = mb[i * 2];
                const __global REAL *si = sb + (long)i * Lk + j0;
                if (j0 + VEC <= Lk) {
                    p = ZERO_FROM(exp(VLOAD_REAL(si) * scale - mi), (REAL)j0 + IOTA, (VREAL)(REAL)seen);
                } else {                    // the row's last, partial vector of keys
                    REAL tp[VEC];
                    for (int e = 0; e < VEC; ++e) tp[e] = j0 + e < seen ? exp(si[e] * scale - mi) : 0;
                    p = VLOAD_REAL(tp);
                }
            }
            VSTORE_REAL(p, Ps + row * BK + j0 - k0);
        }
        // V tile: one vector of a key's head dimension at a time
        for (int idx = tid; idx < BK * (DP / VEC); idx += TILE_WG) {
            const int j = idx / (DP / VEC);
            const int d0 = (idx - j * (DP / VEC)) * VEC;
            VREAL vv = 0;
            if (k0 + j < Lk) vv = LoadHeadVector(vb + (k0 + j) * HD, d0);
            VSTORE_REAL(vv, Vs + j * DP + d0);
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
        __global DATA *oi = o + ((long)b * Lq + i) * HD + h * HEAD_DIM;
        #pragma unroll
        for (int e = 0; e < CD; ++e) StoreHeadVector(oi, acc[r][e] / l, (lane + WL * e) * VEC);
    }
}
