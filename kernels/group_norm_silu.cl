// group_norm_silu, fused variant: statistics, normalization, affine and SiLU in one launch.
// Layout as group_norm.cl: group ng = n*G + g is the contiguous block x[ng*count .. (ng+1)*count), count = (C/G)*S,
// element e of the block in channel c = g*(C/G) + e/S.
//   y = silu(v) = v / (1 + exp(-v)),  v = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]   (biased variance).
// fused: one work-group of WG work-items per (sample, group). Work-item t takes the vectors of VEC elements
// t, t + WG, ... of a range (vloadn / vstoren), then the range's tail elements t, t + WG, ...
//   1. statistics over the block: Welford per vector lane (x read once), lanes and work-items merged with Chan et
//      al.'s pairwise formula (no cancellation when |mean| >> std: see group_norm_reduce.cl), a tree of merges in
//      local memory;
//   2. the block written channel by channel (x read a second time, y written once, no division per element).
// Two reads and one write of x, against three reads and a write for group_norm followed by a read and a write
// for silu. NDRange: (WG, N*G), work-groups of (WG, 1).
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
#ifndef VEC
#define VEC 1 // elements per vector (vloadn / vstoren): 1, 2, 4, 8 or 16
#endif

#include "vec.h"
#include "moments.h"

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_silu_fused(__global const REAL *x, __global const REAL *weight, __global const REAL *bias,
                           __global REAL *y, const int C, const int G, const long S, const REAL eps)
{
    __local REAL ln[WG], lmean[WG], lm2[WG];
    const long ng = get_group_id(1);
    const int g = ng % G;
    const int cpg = C / G;
    const long count = cpg * S;
    const int lid = get_local_id(0);

    // 1. statistics
    REAL n, mean, m2;
    PartialMoments(x + ng * count, count, lid, WG, &n, &mean, &m2);
    TreeMoments(&n, &mean, &m2, ln, lmean, lm2, lid, WG);
    const REAL inv_std = (REAL)1 / sqrt(m2 / (REAL)count + eps);

    // 2. normalize, affine, SiLU, channel by channel
    const long nv = S / VEC;
    for (int c = 0; c < cpg; ++c) {
        const REAL w = HAS_WEIGHT ? weight[g * cpg + c] : (REAL)1;
        const REAL b = HAS_BIAS ? bias[g * cpg + c] : (REAL)0;
        const __global REAL *xc = x + ng * count + c * S;
        __global REAL *yc = y + ng * count + c * S;
        for (long v = lid; v < nv; v += WG) {
            VREAL val = (VLOAD(xc + v * VEC) - mean) * inv_std;
#if HAS_WEIGHT
            val *= w;
#endif
#if HAS_BIAS
            val += b;
#endif
            VSTORE(val / ((REAL)1 + exp(-val)), yc + v * VEC);
        }
        for (long e = nv * VEC + lid; e < S; e += WG) {
            REAL val = (xc[e] - mean) * inv_std;
#if HAS_WEIGHT
            val *= w;
#endif
#if HAS_BIAS
            val += b;
#endif
            yc[e] = val / ((REAL)1 + exp(-val));
        }
    }
}
