// group_norm: x (N, C, S...) packed, S = product of the spatial sizes (1 for (N, C)); G groups of C/G channels.
// Group ng = n*G + g is the contiguous block x[ng*count .. (ng+1)*count), count = (C/G)*S; element e of the block
// belongs to channel c = g*(C/G) + e/S. Per group: mean, then biased variance of (x - mean) (two passes, so a
// large mean does not cancel the variance away), then y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c].
// naive: one work-group of WG work-items per (sample, group); each work-item sums a strided share of the block,
// a tree in local memory adds the WG partial sums. The host launches exactly WG work-items per group.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif
#ifndef WG
#define WG 256 // work-items per (sample, group): a power of two, at most the device's max work-group size
#endif
#ifndef HAS_WEIGHT
#define HAS_WEIGHT 0 // 1: multiply by weight[c]; 0: the weight argument is not read
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0 // 1: add bias[c]; 0: the bias argument is not read
#endif

// The sum of v over the work-group, returned to every work-item (scratch: WG REALs of local memory).
REAL WorkGroupSum(REAL v, __local REAL *scratch)
{
    const int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const REAL total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read scratch[0] before the next call overwrites it
    return total;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_naive(__global const REAL *x, __global const REAL *weight, __global const REAL *bias,
                      __global REAL *y, const int C, const int G, const long S, const REAL eps)
{
    __local REAL scratch[WG];
    const long ng = get_group_id(0);
    const int g = ng % G;
    const int cpg = C / G;
    const long count = cpg * S;
    const int lid = get_local_id(0);
    const __global REAL *xs = x + ng * count;
    __global REAL *ys = y + ng * count;

    REAL s = 0;
    for (long e = lid; e < count; e += WG) s += xs[e];
    const REAL mean = WorkGroupSum(s, scratch) / (REAL)count;

    REAL q = 0;
    for (long e = lid; e < count; e += WG) {
        const REAL d = xs[e] - mean;
        q += d * d;
    }
    const REAL var = WorkGroupSum(q, scratch) / (REAL)count;
    const REAL inv_std = (REAL)1 / sqrt(var + eps);

    for (long e = lid; e < count; e += WG) {
        REAL v = (xs[e] - mean) * inv_std;
#if HAS_WEIGHT || HAS_BIAS
        const int c = g * cpg + (int)(e / S);
#endif
#if HAS_WEIGHT
        v *= weight[c];
#endif
#if HAS_BIAS
        v += bias[c];
#endif
        ys[e] = v;
    }
}
