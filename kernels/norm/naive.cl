// norm/naive.cl: the naive variants of group_norm and layer_norm (and so of group_norm_silu, group_norm then silu),
// the baselines of norm/group_norm.cl and norm/layer_norm.cl. One build of a WG serves both ops, with or without
// weight and bias.
//
// group_norm_naive: x (N, C, S...) packed, S = the product of the spatial sizes (1 for (N, C)), G groups of C/G
//   channels. Group ng = n*G + g is the contiguous block x[ng*count .. (ng+1)*count), count = (C/G)*S; element e of
//   the block is in channel c = g*(C/G) + e/S. Per group: the mean, then the biased variance of (x - mean) (two
//   passes, so that a large mean does not cancel the variance away), then
//   y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c].
// layer_norm_naive: x seen as R rows of D values, x[r, e] = x[r*D + e]; the same per row, with weight[e], bias[e].
// Both: one work-group of WG work-items per group (row): NDRange groups*WG, work-groups of WG. Each work-item sums a
// strided share of the block, a tree in local memory adds the WG partial sums. has_weight / has_bias (0 or 1):
// whether the weight / bias argument is read (the host passes any buffer for a missing one).
// Arrays of DATA (REAL, or half for float16: common.h), the arithmetic and the local scratch in REAL.
// Knobs (-D):
//   WG   work-items per group (row): a power of two, at most the device's max work-group size
#include "common.h"
#ifndef WG
#error "WG (work-items per group or row, a power of two) must be set with -D"
#endif

// The mean of the count values at xs and 1 / sqrt(their biased variance + eps), in every work-item of the
// work-group: the sum, then the sum of squared deviations from the mean (two passes, so that a large mean does not
// cancel the variance away), each a strided share per work-item and a tree in scratch.
void TwoPassMoments(const __global DATA *xs, const long count, const REAL eps, __local REAL *scratch, const int lid,
                    REAL *mean, REAL *inv_std)
{
    REAL s = 0;
    for (long e = lid; e < count; e += WG) s += LOAD(xs, e);
    const REAL m = TreeSum(s, scratch, lid, WG) / (REAL)count;
    barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read the sum before the next tree overwrites scratch

    REAL q = 0;
    for (long e = lid; e < count; e += WG) {
        const REAL d = LOAD(xs, e) - m;
        q += d * d;
    }
    *mean = m;
    *inv_std = (REAL)1 / sqrt(TreeSum(q, scratch, lid, WG) / (REAL)count + eps);
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_naive(__global const DATA *x, __global const DATA *weight, __global const DATA *bias,
                      __global DATA *y, const int C, const int G, const long S, const REAL eps,
                      const int has_weight, const int has_bias)
{
    __local REAL scratch[WG];
    const long ng = get_group_id(0);
    const int g = ng % G;
    const int cpg = C / G;
    const long count = cpg * S;
    const int lid = get_local_id(0);
    const __global DATA *xs = x + ng * count;
    __global DATA *ys = y + ng * count;

    REAL mean, inv_std;
    TwoPassMoments(xs, count, eps, scratch, lid, &mean, &inv_std);

    for (long e = lid; e < count; e += WG) {
        REAL v = (LOAD(xs, e) - mean) * inv_std;
        if (has_weight || has_bias) {
            const int c = g * cpg + (int)(e / S);
            if (has_weight) v *= LOAD(weight, c);
            if (has_bias) v += LOAD(bias, c);
        }
        STORE(ys, e, v);
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void layer_norm_naive(__global const DATA *x, __global const DATA *weight, __global const DATA *bias,
                      __global DATA *y, const int D, const REAL eps, const int has_weight, const int has_bias)
{
    __local REAL scratch[WG];
    const long r = get_group_id(0);
    const int lid = get_local_id(0);
    const __global DATA *xr = x + r * D;
    __global DATA *yr = y + r * D;

    REAL mean, inv_std;
    TwoPassMoments(xr, D, eps, scratch, lid, &mean, &inv_std);

    for (int e = lid; e < D; e += WG) {
        REAL v = (LOAD(xr, e) - mean) * inv_std;
        if (has_weight) v *= LOAD(weight, e);
        if (has_bias) v += LOAD(bias, e);
        STORE(yr, e, v);
    }
}
