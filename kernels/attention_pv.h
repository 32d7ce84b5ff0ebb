// attention_pv.h: the P V product and the output store shared by attention_flash.cl and attention_softmax_fused.cl,
// pasted in place of their `#include "attention_pv.h"` line by the runtime (opencl_impl/runtime.py kernel_source).
// Needs vec.h and the kernels' tile macros (BQ, BK, WL, WQ, RQ, CD, DP, VEC, HEAD_DIM) before it. Work-item
// (lane, w) owns the query rows w + WQ*r (r < RQ) of the tile and the output column vectors (lane + WL*e)*VEC
// + [0, VEC) (e < CD).

// acc[r][e] += sum_j P[w + WQ*r, j] V[j, (lane + WL*e)*VEC ...] over the BK keys of the local tiles
// Ps (BQ x BK) and Vs (BK x DP).
inline void AccumulatePV(VREAL acc[RQ][CD], __local const REAL *Ps, __local const REAL *Vs, const int w,
                         const int lane)
{
    for (int j = 0; j < BK; ++j) {
        VREAL vj[CD];
        #pragma unroll
        for (int e = 0; e < CD; ++e) vj[e] = VLOAD(Vs + j * DP + (lane + WL * e) * VEC);
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            const REAL p = Ps[(w + WQ * r) * BK + j];
            #pragma unroll
            for (int e = 0; e < CD; ++e) acc[r][e] += p * vj[e];
        }
    }
}

// oi[d0 .. d0 + VEC) = out, the lanes past HEAD_DIM (the last, partial vector of the head dimension) not stored.
inline void StoreHeadVector(__global REAL *oi, const VREAL out, const int d0)
{
    if (d0 + VEC <= HEAD_DIM) {
        VSTORE(out, oi + d0);
    } else {
        REAL t[VEC];
        VSTORE(out, t);
        for (int x = 0; x < VEC && d0 + x < HEAD_DIM; ++x) oi[d0 + x] = t[x];
    }
}
