// attention/tiles.h: the query-tile x key-tile geometry of attention/tiled.cl's kernels and the pieces they share.
// Needs common.h and the knobs BQ, BK, WL, RQ, VEC, HEAD_DIM before it. A work-group of (WL, WQ) work-items holds a
// tile of BQ query rows; work-item (lane, w) owns the query rows w + WQ*r (r < RQ) of the tile and the output column
// vectors (lane + WL*e)*VEC + [0, VEC) (e < CD) of the head dimension, padded to DP with zeros in the V tile.
// q, k, v and o are DATA (REAL, or half for float16: common.h), read and written with LOAD / STORE / VLOAD / VSTORE;
// the local tiles, private arrays and the global scratch (softmax_fused's S and statistics) are REAL, read and
// written with VLOAD_REAL / VSTORE_REAL (VLOAD / VSTORE would read them as half under DATA_HALF).
#define WQ (BQ / RQ)                                   // work-items along the query rows
#define TILE_WG (WL * WQ)                              // work-items per work-group
#define CD ((HEAD_DIM + WL * VEC - 1) / (WL * VEC))    // output column vectors per work-item
#define DP (CD * WL * VEC)                             // the head dimension padded (zeros in the V tile)

// The VEC elements of a key's (or value's) head dimension at row + d0, zeros past HEAD_DIM (the last, partial vector).
inline VREAL LoadHeadVector(const __global DATA *row, const int d0)
{
    if (d0 + VEC <= HEAD_DIM) return VLOAD(row + d0);
    REAL t[VEC];
    for (int e = 0; e < VEC; ++e) t[e] = d0 + e < HEAD_DIM ? LOAD(row, d0 + e) : 0;
    return VLOAD_REAL(t);
}

// acc[r][e] += sum_j P[w + WQ*r, j] V[j, (lane + WL*e)*VEC ...] over the BK keys of the local tiles
// Ps (BQ x BK) and Vs (BK x DP).
inline void AccumulatePV(VREAL acc[RQ][CD], __local const REAL *Ps, __local const REAL *Vs, const int w,
                         const int lane)
{
    for (int j = 0; j < BK; ++j) {
        VREAL vj[CD];
        #pragma unroll
        for (int e = 0; e < CD; ++e) vj[e] = VLOAD_REAL(Vs + j * DP + (lane + WL * e) * VEC);
        #pragma unroll
        for (int r = 0; r < RQ; ++r) {
            const REAL p = Ps[(w + WQ * r) * BK + j];
            #pragma unroll
            for (int e = 0; e < CD; ++e) acc[r][e] += p * vj[e];
        }
    }
}

// oi[d0 .. d0 + VEC) = out, the lanes past HEAD_DIM (the last, partial vector of the head dimension) not stored.
inline void StoreHeadVector(__global DATA *oi, const VREAL out, const int d0)
{
    if (d0 + VEC <= HEAD_DIM) {
        VSTORE(out, oi + d0);
    } else {
        REAL t[VEC];
        VSTORE_REAL(out, t);
        for (int x = 0; x < VEC && d0 + x < HEAD_DIM; ++x) STORE(oi, d0 + x, t[x]);
    }
}
