// attention/naive.cl: the naive variant, the gemm variant's scale-and-mask step and softmax_fused's widening of
// float16 q, k; no -D knobs, one build per dtype. q, k, v and o are DATA (REAL, or half for float16: common.h), the
// arithmetic and every scratch array REAL.
// attention_naive: o = softmax(q k^T * scale [+ causal mask]) v per head, in the models' layout (no permutes):
//   q[b, i, h*D + d] = q[(b*Lq + i)*HD + h*D + d],  k, v likewise with Lk rows,  o like q;  HD = H*D.
//   One work-item per (b, h, query row i), flat index (b*H + h)*Lq + i (neighbours share a head's k, v):
//   pass 1: m = max_j s_j,  s_j = scale * q_i . k_j  over the keys j it sees (j <= i when causal);
//   pass 2: p_j = exp(s_j - m), l = sum_j p_j, acc_i += p_j v_j, accumulated in the work-item's row of the REAL
//           scratch acc (rows x D, packed: acc[gid*D + d]; zeroed first), then o_i = acc_i / l, the only rounding
//           to DATA. No Lq x Lk score matrix is stored.
// attention_gemm_scale_mask: the gemm variant's scores S = Q K^T of every head, from the GEMM, packed (B*H, Lq, Lk),
//   S[bh, i, j] = S[(bh*Lq + i)*Lk + j], scaled in place, S = S * scale, with -inf where a causal mask hides the
//   key (j > i), before the softmax. One work-item per element over the flat index. S is REAL.
// All: NDRange rounded up by the host, the tail returns early.
#include "common.h"

__kernel void attention_naive(__global const DATA *q, __global const DATA *k, __global const DATA *v,
                              __global DATA *o, __global REAL *acc, const long rows, const int H, const int Lq,
                              const int Lk, const int D, const REAL scale, const int causal)
{
    const long gid = get_global_id(0);
    if (gid >= rows) return;
    const int i = gid % Lq;
    const int h = (gid / Lq) % H;
    const long b = gid / ((long)Lq * H);
    const long HD = (long)H * D;
    const __global DATA *qi = q + (b * Lq + i) * HD + (long)h * D;
    const __global DATA *kb = k + b * Lk * HD + (long)h * D;
    const __global DATA *vb = v + b * Lk * HD + (long)h * D;
    __global DATA *oi = o + (b * Lq + i) * HD + (long)h * D;
    __global REAL *ai = acc + gid * D;
    const int seen = causal ? min(i + 1, Lk) : Lk;

    REAL m = -INFINITY;
    for (int j = 0; j < seen; ++j) {
        REAL s = 0;
        for (int d = 0; d < D; ++d) s += LOAD(qi, d) * LOAD(kb, j * HD + d);
        s *= scale;
        m = s > m ? s : m;
    }
    for (int d = 0; d < D; ++d) ai[d] = 0;
    REAL l = 0;
    for (int j = 0; j < seen; ++j) {
        REAL s = 0;
        for (int d = 0; d < D; ++d) s += LOAD(qi, d) * LOAD(kb, j * HD + d);
        s *= scale;                        // the same rounded score as pass 1 (a separate statement: no fma)
        const REAL p = exp(s - m);
        l += p;
        for (int d = 0; d < D; ++d) ai[d] += p * LOAD(vb, j * HD + d);
    }
    for (int d = 0; d < D; ++d) STORE(oi, d, ai[d] / l);
}

__kernel void attention_gemm_scale_mask(__global REAL *S, const long n, const int Lq, const int Lk, const REAL scale,
                                        const int causal)
{
    const long idx = get_global_id(0);
    if (idx >= n) return;
    const int j = idx % Lk;
    const int i = (idx / Lk) % Lq;
    S[idx] = causal && j > i ? -INFINITY : S[idx] * scale;
}
