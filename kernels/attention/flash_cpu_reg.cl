// attention/flash_cpu_reg.cl: FlashAttention for CPUs (PoCL): the online softmax of attention/tiled.cl's flash with
// no local memory and no barriers, each work-item a GEMM-like register block, as gemm/cpu_reg.cl's. Two kernels:
//   attention_pack_kv        K and V of each head copied once into the layouts the blocks read as whole vectors:
//                            kp (B*H, LkP/VEC, HEAD_DIM, VEC): a block of VEC keys, one vector per d (the scores of
//                            VEC keys are then VEC-wide fmas with q's element broadcast, no horizontal sums), and
//                            vp (B*H, LkP, DP): a key's values padded to DP; zeros past Lk and past HEAD_DIM; of REAL,
//                            so float16's k and v are widened once. LkP = Lk rounded up to VEC.
//   attention_flash_cpu_reg  one work-item per (BQ query rows, b*H + h), over chunks of KC keys (which every group of
//                            the work-item's rows reads from cache), for each group of RQ rows:
//                              1. s_r = (q_r . k_j) * scale for the chunk's keys, a block of VEC keys at a time,
//                                 -inf where masked (j >= Lk; j > i if causal), and the row's running max
//                              2. once a chunk: m_r' = max(m_r, max_j s_r), alpha = exp(m_r - m_r'),
//                                 p = exp(s_r - m_r'), l_r' = alpha l_r + sum_j p, acc_r = alpha acc_r
//                              3. acc_r += sum_j p_j v_j
//                            then o_r = acc_r / l_r. The first chunk holds key 0, which no row masks, so every m is
//                            finite from it on (alpha = exp(-inf) = 0 there). The last group's rows past Lq read
//                            row Lq - 1 and write nothing.
// Layout of q, k, v, o: the models' own, as attention/tiled.cl's: q[(b*Lq + i)*H*D + h*D + d].
// NDRange (ceil(Lq / BQ), B*H) in work-groups of one work-item (one work-group function for every shape on PoCL).
// float16 (-DDATA_HALF): q and o half, read and written with LOAD / STORE; kp, vp, the state and the arithmetic REAL.
// Knobs (-D):
//   VEC  keys per block and the vector width along the head dimension: 4, 8 or 16
//   RQ   query rows per register block (RQ score vectors, RQ output vectors per slice of VEC columns)
//   BQ   query rows per work-item, a multiple of RQ (their m, l and output rows kept in private arrays)
//   KC   keys per chunk, a multiple of VEC: the K and V rows every row group of the work-item reads from cache
// Structural (-D, set by the host per call): HEAD_DIM, the head dimension D.
#include "common.h"
#ifndef VEC
#error "VEC (keys per block and vector width: 4, 8 or 16) must be set with -D"
#endif
#ifndef RQ
#error "RQ (query rows per register block) must be set with -D"
#endif
#ifndef BQ
#error "BQ (query rows per work-item, a multiple of RQ) must be set with -D"
#endif
#ifndef KC
#error "KC (keys per chunk, a multiple of VEC) must be set with -D"
#endif
#ifndef HEAD_DIM
#error "HEAD_DIM (the head dimension) must be set with -D"
#endif
#if VEC < 4
#error "VEC must be 4, 8 or 16"
#endif
#define ND ((HEAD_DIM + VEC - 1) / VEC)                 // vectors of VEC along the head dimension
#define DP (ND * VEC)                                  // the head dimension padded (zeros in vp)

__kernel __attribute__((reqd_work_group_size(VEC, 1, 1)))
void attention_pack_kv(__global const DATA *k, __global const DATA *v, __global REAL *kp, __global REAL *vp,
                       const int H, const int Lk)
{
    const int j = get_global_id(0);             // key, 0 .. LkP - 1 (the NDRange is LkP wide)
    const int bh = get_global_id(1);
    const int b = bh / H, h = bh - b * H;
    const int lkp = get_global_size(0);
    const long HD = (long)H * HEAD_DIM;
    const long row = ((long)b * Lk + min(j, Lk - 1)) * HD + h * HEAD_DIM;
    const bool real_key = j < Lk;
    __global REAL *kb = kp + ((long)bh * lkp + (j - j % VEC)) * HEAD_DIM + j % VEC;
    __global REAL *vr = vp + ((long)bh * lkp + j) * DP;
    for (int d = 0; d < HEAD_DIM; ++d) {
        kb[d * VEC] = real_key ? LOAD(k, row + d) : (REAL)0;
        vr[d] = real_key ? LOAD(v, row + d) : (REAL)0;
    }
    for (int d = HEAD_DIM; d < DP; ++d) vr[d] = 0;
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void attention_flash_cpu_reg(__global const DATA *q, __global const REAL *kp, __global const REAL *vp,
                             __global DATA *o, const int H, const int Lq, const int Lk, const REAL scale,
                             const int causal)
{
    const int q0 = get_global_id(0) * BQ;
    const int bh = get_global_id(1);
    const int b = bh / H, h = bh - b * H;
    const int lkp = (Lk + VEC - 1) / VEC * VEC;
    const long HD = (long)H * HEAD_DIM;
    const __global REAL *kb = kp + (long)bh * lkp * HEAD_DIM;
    const __global REAL *vb = vp + (long)bh * lkp * DP;
    const __global DATA *qb = q + (long)b * Lq * HD + h * HEAD_DIM;

    REAL m[BQ], l[BQ];
    VREAL acc[BQ * ND];
    for (int r = 0; r < BQ; ++r) {
        m[r] = -INFINITY;
        l[r] = 0;
        for (int e = 0; e < ND; ++e) acc[r * ND + e] = 0;
    }

    const int rows = min(BQ, Lq - q0);                     // the tile's rows (its groups past Lq are not run)
    const int tile_end = causal ? min(Lk, q0 + BQ) : Lk;   // causal: row i sees keys j <= i < q0 + BQ
    for (int c0 = 0; c0 < tile_end; c0 += KC) {
        for (int g = 0; g < rows; g += RQ) {
            REAL qs[RQ * HEAD_DIM];             // the group's query rows (past Lq: row Lq - 1)
            for (int r = 0; r < RQ; ++r) {
                const __global DATA *qr = qb + min(q0 + g + r, Lq - 1) * HD;
                for (int d = 0; d < HEAD_DIM; ++d) qs[r * HEAD_DIM + d] = LOAD(qr, d);
            }
            const int kend = min(c0 + KC, causal ? min(Lk, q0 + g + RQ) : Lk);
            const int nk = kend - c0;           // the chunk's keys for this group (its blocks: ceil(nk / VEC))
            if (nk <= 0) continue;
            // 1. scores of the chunk, a block of VEC keys at a time (one vector per row, fma over d with q's
            //    element broadcast), scaled and masked, and each row's running max as a vector
            REAL ps[RQ * KC];                   // the scores, then their exp(s - m')
            VREAL mv[RQ];
#pragma unroll
            for (int r = 0; r < RQ; ++r) mv[r] = -INFINITY;
            for (int k0 = c0; k0 < kend; k0 += VEC) {
                const __global REAL *kt = kb + (long)k0 * HEAD_DIM;
                VREAL s[RQ];
#pragma unroll
                for (int r = 0; r < RQ; ++r) s[r] = 0;
                for (int d = 0; d < HEAD_DIM; ++d) {
                    const VREAL kd = VLOAD_REAL(kt + d * VEC);
#pragma unroll
                    for (int r = 0; r < RQ; ++r) s[r] = fma((VREAL)(qs[r * HEAD_DIM + d]), kd, s[r]);
                }
                const VREAL j = (REAL)k0 + IOTA;
#pragma unroll
                for (int r = 0; r < RQ; ++r) {
                    const VREAL seen = (REAL)(causal ? min(q0 + g + r + 1, Lk) : Lk);   // keys j < seen visible
                    const VREAL t = select(s[r] * scale, (VREAL)(-INFINITY), isgreaterequal(j, seen));
                    mv[r] = fmax(mv[r], t);
                    VSTORE_REAL(t, ps + r * KC + k0 - c0);
                }
            }
            // 2. online softmax, once a chunk: the new max, rescale factor, probabilities and their sum
            const int nb = (nk + VEC - 1) / VEC * VEC;
#pragma unroll
            for (int r = 0; r < RQ; ++r) {
                const REAL mt = fmax(m[g + r], HMAX(mv[r]));
                const REAL alpha = exp(m[g + r] - mt);
                VREAL sum = 0;
                for (int x = 0; x < nb; x += VEC) {
                    const VREAL pv = exp(VLOAD_REAL(ps + r * KC + x) - mt);
                    sum += pv;
                    VSTORE_REAL(pv, ps + r * KC + x);
                }
                m[g + r] = mt;
                l[g + r] = l[g + r] * alpha + HSUM(sum);
                if (alpha != (REAL)1)           // the max moved: rescale (skipped once it settles)
                    for (int e = 0; e < ND; ++e) acc[(g + r) * ND + e] *= alpha;
            }
            // 3. acc += P V over the chunk, one slice of VEC columns at a time: RQ accumulators, V's row vector
            //    broadcast-fma'd (the padded keys past nk have p = 0 and zero rows in vp)
            for (int e = 0; e < ND; ++e) {
                VREAL a[RQ];
#pragma unroll
                for (int r = 0; r < RQ; ++r) a[r] = acc[(g + r) * ND + e];
                const __global REAL *vc = vb + (long)c0 * DP + e * VEC;
                for (int x = 0; x < nb; ++x) {
                    const VREAL vx = VLOAD_REAL(vc + x * DP);
#pragma unroll
                    for (int r = 0; r < RQ; ++r) a[r] = fma((VREAL)(ps[r * KC + x]), vx, a[r]);
                }
#pragma unroll
                for (int r = 0; r < RQ; ++r) acc[(g + r) * ND + e] = a[r];
            }
        }
    }

    for (int r = 0; r < BQ && q0 + r < Lq; ++r) {
        __global DATA *oi = o + ((long)b * Lq + q0 + r) * HD + h * HEAD_DIM;
        for (int e = 0; e < ND; ++e) {
            REAL t[VEC];
            VSTORE_REAL(acc[r * ND + e] / l[r], t);
            for (int x = 0; x < VEC && e * VEC + x < HEAD_DIM; ++x) STORE(oi, e * VEC + x, t[x]);
        }
    }
}
