// layer_norm, reduce variant: x seen as R rows of D values, x[r, e] = x[r*D + e]; per row
//   y = (x - mean) / sqrt(var + eps) * weight[e] + bias[e]   (biased variance).
// reduce: rows packed into work-groups of (TPR, WG/TPR): TPR work-items per row, WG/TPR rows per work-group, so
// that SD's short rows (D = 320 ... 1280) keep every work-item busy (the naive kernel gives each row a whole
// work-group of 256). Work-item t of a row takes the vectors of VEC elements t, t + TPR, ... (vloadn / vstoren),
// then the tail elements (D not a multiple of VEC) t, t + TPR, ... Statistics: Welford per vector lane (x read
// once), lanes and work-items merged with Chan et al.'s pairwise formula (no cancellation when |mean| >> std: see
// group_norm_reduce.cl), a tree over the row's TPR work-items in local memory; then the row is written (x read
// again). GPU-style: TPR 16 ... 128, VEC 1 ... 4; CPU-style (PoCL vectorizes explicit vector types): TPR 1 ... 4,
// VEC 8 or 16. NDRange: (TPR, ceil(R / RPW) * RPW); the rows past R compute nothing and write nothing.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif
#ifndef WG
#define WG 256 // work-items per work-group: a power of two, at most the device's max work-group size
#endif
#ifndef TPR
#define TPR 32 // work-items per row: a power of two, at most WG
#endif
#define RPW (WG / TPR) // rows per work-group
#ifndef HAS_WEIGHT
#define HAS_WEIGHT 0 // 1: multiply by weight[e]; 0: the weight argument is not read
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0 // 1: add bias[e]; 0: the bias argument is not read
#endif
#ifndef VEC
#define VEC 1 // elements per vector (vloadn / vstoren): 1, 2, 4, 8 or 16
#endif

#include "vec.h"
#include "moments.h"

__kernel __attribute__((reqd_work_group_size(TPR, RPW, 1)))
void layer_norm_reduce(__global const REAL *x, __global const REAL *weight, __global const REAL *bias,
                       __global REAL *y, const long R, const int D, const REAL eps)
{
    __local REAL ln[RPW][TPR], lmean[RPW][TPR], lm2[RPW][TPR];
    const int t = get_local_id(0);
    const int rl = get_local_id(1);
    const long r = get_global_id(1);
    const int len = r < R ? D : 0;        // rows past R: no elements, but every barrier is still reached
    const __global REAL *xr = x + r * D;
    __global REAL *yr = y + r * D;

    REAL n, mean, m2;
    PartialMoments(xr, len, t, TPR, &n, &mean, &m2);
    TreeMoments(&n, &mean, &m2, ln[rl], lmean[rl], lm2[rl], t, TPR);
    const REAL inv_std = (REAL)1 / sqrt(m2 / (REAL)D + eps);

    const int nv = len / VEC;
    for (int v = t; v < nv; v += TPR) {
        VREAL val = (VLOAD(xr + v * VEC) - mean) * inv_std;
#if HAS_WEIGHT
        val *= VLOAD(weight + v * VEC);
#endif
#if HAS_BIAS
        val += VLOAD(bias + v * VEC);
#endif
        VSTORE(val, yr + v * VEC);
    }
    for (int e = nv * VEC + t; e < len; e += TPR) {
        REAL val = (xr[e] - mean) * inv_std;
#if HAS_WEIGHT
        val *= weight[e];
#endif
#if HAS_BIAS
        val += bias[e];
#endif
        yr[e] = val;
    }
}
