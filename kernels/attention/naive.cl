// attention/naive.cl: the naive variant and the gemm variant's scale-and-mask step; no -D knobs, one build per dtype.
// attention_naive: o = softmax(q k^T * scale [+ causal mask]) v per head, in the models' layout (no permutes):
//   q[b, i, h*D + d] = q[(b*Lq + i)*HD + h*D + d],  k, v likewise with Lk rows,  o like q;  HD = H*D.
//   One work-item per (b, h, query row i), flat index (b*H + h)*Lq + i (neighbours share a head's k, v):
//   pass 1: m = max_j s_j,  s_j = scale * q_i . k_j  over the keys j it sees (j <= i when causal);
//   pass 2: p_j = exp(s_j - m), l = sum_j p_j, o_i += p_j v_j, accumulated in o_i itself (this work-item owns it;
//           it is zeroed first), then o_i /= l. No Lq x Lk score matrix is stored.
// attention_gemm_scale_mask: the gemm variant's scores S = Q K^T of every head, from the GEMM, packed (B*H, Lq, Lk),
//   S[bh, i, j] = S[(bh*Lq + i)*Lk + j], scaled in place, S = S * scale, with -inf where a causal mask hides the
//   key (j > i), before the softmax. One work-item per element over the flat index.
// Both: NDRange rounded up by the host, the tail returns early.
#include "common.h"

__kernel void attention_naive(__global const REAL *q, __global const REAL *k, __global const REAL *v,
                              __global REAL *o, const long rows, const int H, const int Lq, const int Lk,
                              const int D, const REAL scale, const int causal)
{
    const long gid = get_global_id(0);
    if (gid >= rows) return;
    const int i = gid % Lq;
    const int h = (gid / Lq) % H;
    const long b = gid / ((long)Lq * H);
    const long HD = (long)H * D;
    const __global REAL *qi = q + (b * Lq + i) * HD + (long)h * D;
    const __global REAL *kb = k + b * Lk * HD + (long)h * D;
    const __global REAL *vb = v + b * Lk * HD + (long)h * D;
    __global REAL *oi = o + (b * Lq + i) * HD + (long)h * D;
    const int seen = causal ? min(i + 1, Lk) : Lk;

    REAL m = -INFINITY;
    for (int j = 0; j < seen; ++j) {
        REAL s = 0;
        for (int d = 0; d < D; ++d) s += qi[d] * kb[j * HD + d];
        s *= scale;
        m = s > m ? s : m;
    }
    for (int d = 0; d < D; ++d) oi[d] = 0;
    REAL l = 0;
    for (int j = 0; j < seen; ++j) {
        REAL s = 0;
        for (int d = 0; d < D; ++d) s += qi[d] * kb[j * HD + d];
        s *= scale;                        // the same rounded score as pass 1 (a separate statement: no fma)
        const REAL p = exp(s - m);
        l += p;
        for (int d = 0; d < D; ++d) oi[d] += p * vb[j * HD + d];
    }
    for (int d = 0; d < D; ++d) oi[d] /= l;
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
