// attention/flash_reg.cl, the flash_reg variant: FlashAttention (key tiles, online softmax, no Lq x Lk matrix in
// global memory) with both products register-blocked as in gemm_tiled_reg, for GPUs. Layout, the models' own (no
// permutes): q[b, i, h*D + d] = q[(b*Lq + i)*HD + h*D + d],  k, v likewise with Lk rows,  o like q;  HD = H*D,
// D = HEAD_DIM.
// What it changes against attention_flash (attention/tiled.cl, whose GPU form reads q from global memory inside
// the score loop and gives a work-item 4 rows x 2 keys, 8 fma per 6 loads): the query tile sits in local memory for
// the whole key loop, and a work-item owns RQ contiguous query rows x CK keys of a score tile (RQ x CK fma per
// RQ/4 + CK local loads) and RQ rows x CD output columns (RQ x CD fma per RQ/4 + CD local loads per key).
// One work-group per (query tile of BQ rows, b*H + h): NDRange (ceil(Lq / BQ) * WL, B*H * WQ), work-groups of
// (WL, WQ), WQ = BQ / RQ. Work-item (lane, w) owns the query rows q0 + w*RQ + r (r < RQ), the keys
// k0 + lane + WL*c (c < CK = BK / WL) of each key tile and the output columns lane + WL*e (e < CD).
// Local memory (row strides padded: QS = BQ + 4 keeps REAL4 alignment and spreads a warp's rows over the banks;
// KS = BK + 1 makes the transposing stores of the K tile hit distinct banks):
//   Qt[d*QS + i] = q[q0 + i, d]   staged once;  Kt[d*KS + j] = k[k0 + j, d];  Vs[j*DP + d] = v[k0 + j, d] (0 for
//   d >= D);  Pt[j*QS + i] = exp(s_ij - m_i);  per row and lane the partial max and sum.
// Per key tile (only the tiles some row of the query tile may see when causal):
//   1. K and V tiles to local memory, zeros past Lk;
//   2. s = (q_i . k_j) * scale, -inf where masked (j >= Lk; j > i if causal), each row's partial max;
//   3. m' = max(m, max_j s) over the WL lanes, alpha = exp(m - m'), p = exp(s - m') to Pt, partial sums;
//   4. l' = alpha l + sum_j p; acc = alpha acc + P V.
// Then o_i = acc / l. Every lane of a row computes m', alpha and l' from the same partials in the same order, so
// they agree bit for bit. The first tile holds key 0, which no row masks (0 <= i, 0 < Lk): from it on every m is
// finite, so exp(s - m') is 0 for a masked s and alpha = exp(-inf) = 0 on the first tile (no -inf - -inf).
// Rows past Lq are staged from row Lq - 1 (no branch in the loops) and write nothing.
// q, k, v and o are DATA (REAL, or half for float16: common.h), read with LOAD as they are staged and o written with
// STORE once; the tiles, the softmax and the accumulators are REAL (for float16: o's rounding is the only one).
// Knobs (-D):
//   BQ   query rows per work-group, a multiple of RQ
//   BK   keys per tile, a multiple of WL
//   WL   work-items along the keys of a score tile and along the head dimension of the output
//   RQ   contiguous query rows per work-item, a multiple of 4 (read as REAL4 vectors)
//   (32 <= WL * BQ / RQ <= the device's max work-group size; the local tiles, registry/linalg.py
//   attention_local_bytes, must fit the device)
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
#error "RQ (query rows per work-item, a multiple of 4) must be set with -D"
#endif
#ifndef HEAD_DIM
#error "HEAD_DIM (the head dimension) must be set with -D"
#endif
#define WQ (BQ / RQ)                          // work-items along the query rows
#define WG (WL * WQ)                          // work-items per work-group
#define CK (BK / WL)                          // keys per work-item in a score tile
#define CD ((HEAD_DIM + WL - 1) / WL)         // output columns per work-item
#define DP (CD * WL)                          // the head dimension padded (zeros in the V tile)
#define QS (BQ + 4)                           // row stride of Qt and Pt
#define KS (BK + 1)                           // row stride of Kt

// The RQ values at p (REAL4-aligned) into dst[0 .. RQ).
inline void LoadRows(REAL *dst, __local const REAL *p)
{
    #pragma unroll
    for (int t = 0; t < RQ / 4; ++t) {
        const REAL4 x = ((__local const REAL4 *)p)[t];
        dst[4 * t + 0] = x.s0;
        dst[4 * t + 1] = x.s1;
        dst[4 * t + 2] = x.s2;
        dst[4 * t + 3] = x.s3;
    }
}

__kernel __attribute__((reqd_work_group_size(WL, WQ, 1)))
void attention_flash_reg(__global const DATA *q, __global const DATA *k, __global const DATA *v, __global DATA *o,
                         const int H, const int Lq, const int Lk, const REAL scale, const int causal)
{
    __local REAL4 Qt4[HEAD_DIM * QS / 4];
    __local REAL4 Pt4[BK * QS / 4];
    __local REAL Kt[HEAD_DIM * KS];
    __local REAL Vs[BK * DP];
    __local REAL red_max[BQ * WL];      // [row*WL + lane]
    __local REAL red_sum[BQ * WL];
    __local REAL *Qt = (__local REAL *)Qt4;
    __local REAL *Pt = (__local REAL *)Pt4;

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

    for (int idx = tid; idx < BQ * HEAD_DIM; idx += WG) {     // the query tile, transposed, once
        const int i = idx / HEAD_DIM, d = idx - i * HEAD_DIM;
        Qt[d * QS + i] = LOAD(qb, min(q0 + i, Lq - 1) * HD + d);
    }

    REAL m[RQ], l[RQ], acc[RQ][CD];
    #pragma unroll
    for (int r = 0; r < RQ; ++r) {
        m[r] = -INFINITY;
        l[r] = 0;
        #pragma unroll
        for (int e = 0; e < CD; ++e) acc[r][e] = 0;
    }

    const int kend = causal ? min(Lk, q0 + BQ) : Lk;   // causal: row i sees keys j <= i < q0 + BQ
    for (int k0 = 0; k0 < kend; k0 += BK) {
        // 1. K (transposed) and V tiles; the V tile's columns D .. DP are zeros
        for (int idx = tid; idx < BK * DP; idx += WG) {
            const int j = idx / DP, d = idx - j * DP;
            const bool in = k0 + j < Lk && d < HEAD_DIM;
            const long at = (long)(k0 + j) * HD + d;
            if (d < HEAD_DIM) Kt[d * KS + j] = in ? LOAD(kb, at) : 0;
            Vs[j * DP + d] = in ? LOAD(vb, at) : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 2. scores, scaled and masked; each row's partial max over this work-item's keys
        REAL s[RQ][CK];
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            #pragma unroll
            for (int c = 0; c < CK; ++c) s[r][c] = 0;
        }
        for (int d = 0; d < HEAD_DIM; ++d) {
            REAL qd[RQ], kd[CK];
            LoadRows(qd, Qt + d * QS + w * RQ);
            #pragma unroll
            for (int c = 0; c < CK; ++c) kd[c] = Kt[d * KS + lane + WL * c];
            #pragma unroll
            for (int r = 0; r < RQ; ++r) {
                #pragma unroll
                for (int c = 0; c < CK; ++c) s[r][c] = fma(qd[r], kd[c], s[r][c]);
            }
        }
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            const int i = q0 + w * RQ + r;
            const int seen = causal ? min(i + 1, Lk) : Lk;     // keys j < seen are visible
            REAL pm = -INFINITY;
            #pragma unroll
            for (int c = 0; c < CK; ++c) {
                s[r][c] = k0 + lane + WL * c < seen ? s[r][c] * scale : -INFINITY;
                pm = fmax(pm, s[r][c]);
            }
            red_max[(w * RQ + r) * WL + lane] = pm;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 3. online softmax: new max, rescale factor, probabilities, their partial sums
        REAL alpha[RQ];
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            const int row = w * RQ + r;
            REAL mt = m[r];
            for (int x = 0; x < WL; ++x) mt = fmax(mt, red_max[row * WL + x]);
            alpha[r] = exp(m[r] - mt);
            m[r] = mt;
            REAL ps = 0;
            #pragma unroll
            for (int c = 0; c < CK; ++c) {
                const REAL p = exp(s[r][c] - mt);
                Pt[(lane + WL * c) * QS + row] = p;
                ps += p;
            }
            red_sum[row * WL + lane] = ps;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // 4. l = alpha l + sum p; acc = alpha acc + P V
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            const int row = w * RQ + r;
            REAL ls = 0;
            for (int x = 0; x < WL; ++x) ls += red_sum[row * WL + x];
            l[r] = l[r] * alpha[r] + ls;
            #pragma unroll
            for (int e = 0; e < CD; ++e) acc[r][e] *= alpha[r];
        }
        for (int j = 0; j < BK; ++j) {
            REAL p[RQ], vj[CD];
            LoadRows(p, Pt + j * QS + w * RQ);
            #pragma unroll
            for (int e = 0; e < CD; ++e) vj[e] = Vs[j * DP + lane + WL * e];
            #pragma unroll
            for (int r = 0; r < RQ; ++r) {
                #pragma unroll
                for (int e = 0; e < CD; ++e) acc[r][e] = fma(p[r], vj[e], acc[r][e]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);   // the tiles are read before the next iteration overwrites them
    }

    #pragma unroll
    for (int r = 0; r < RQ; ++r) {
        const int i = q0 + w * RQ + r;
        if (i >= Lq) continue;
        __global DATA *oi = o + ((long)b * Lq + i) * HD + h * HEAD_DIM;
        #pragma unroll
        for (int e = 0; e < CD; ++e)
            if (lane + WL * e < HEAD_DIM) STORE(oi, lane + WL * e, acc[r][e] / l[r]);
    }
}
