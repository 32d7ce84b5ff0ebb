// layer_norm: x seen as R rows of D values, x[r, e] = x[r*D + e]; per row: mean, then biased variance of
// (x - mean) (two passes), then y = (x - mean) / sqrt(var + eps) * weight[e] + bias[e].
// naive: one work-group of WG work-items per row; each work-item sums a strided share of the row, a tree in
// local memory adds the WG partial sums. The host launches exactly WG work-items per row.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif
#ifndef WG
#define WG 256 // work-items per row: a power of two, at most the device's max work-group size
#endif
#ifndef HAS_WEIGHT
#define HAS_WEIGHT 0 // 1: multiply by weight[e]; 0: the weight argument is not read
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0 // 1: add bias[e]; 0: the bias argument is not read
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
void layer_norm_naive(__global const REAL *x, __global const REAL *weight, __global const REAL *bias,
                      __global REAL *y, const int D, const REAL eps)
{
    __local REAL scratch[WG];
    const long r = get_group_id(0);
    const int lid = get_local_id(0);
    const __global REAL *xr = x + r * D;
    __global REAL *yr = y + r * D;

    REAL s = 0;
    for (int e = lid; e < D; e += WG) s += xr[e];
    const REAL mean = WorkGroupSum(s, scratch) / (REAL)D;

    REAL q = 0;
    for (int e = lid; e < D; e += WG) {
        const REAL d = xr[e] - mean;
        q += d * d;
    }
    const REAL var = WorkGroupSum(q, scratch) / (REAL)D;
    const REAL inv_std = (REAL)1 / sqrt(var + eps);

    for (int e = lid; e < D; e += WG) {
        REAL v = (xr[e] - mean) * inv_std;
#if HAS_WEIGHT
        v *= weight[e];
#endif
#if HAS_BIAS
        v += bias[e];
#endif
        yr[e] = v;
    }
}
