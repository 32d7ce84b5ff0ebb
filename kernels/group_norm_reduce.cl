// group_norm, reduce variant: each (sample, group) is spread over several work-groups, in two launches.
// Layout as group_norm.cl: group ng = n*G + g is the contiguous block x[ng*count .. (ng+1)*count), count = (C/G)*S,
// S = product of the spatial sizes; element e of the block belongs to channel c = g*(C/G) + e/S.
// The host cuts every block into `split` chunks of `chunk` elements (the last one shorter, none empty):
//   pass 1, group_norm_reduce_stats: work-group (chunk i, group ng) writes the moments of its chunk,
//           partial[(ng*split + i)*2 + 0] = mean,  partial[(ng*split + i)*2 + 1] = M2 = sum (x - mean)^2;
//   pass 2, group_norm_reduce_apply: work-group (chunk i, group ng) combines the `split` partials of its group
//           (every work-group of a group in the same fixed order, so all of them get the same mean and variance),
//           then writes y = (x - mean) / sqrt(M2/count + eps) * weight[c] + bias[c] over its own chunk, channel
//           by channel (no division per element).
// NDRange of both: (split * WG, N*G), work-groups of (WG, 1). Work-item t of a work-group takes the vectors of VEC
// elements t, t + WG, ... of its range (vloadn / vstoren: element alignment suffices), then the range's tail
// elements (a length not a multiple of VEC) t, t + WG, ... GPU-style: WG 64 ... 256, VEC 1 ... 4; CPU-style (PoCL
// vectorizes explicit vector types, not a work-item's loop): small WG, VEC 8 or 16.
//
// Moments, not sum and sum of squares: var = E[x^2] - mean^2 cancels when |mean| >> std and loses
// log2(1 + mean^2/var) bits (a channel with mean 100 and std 1 keeps only ~10 of float32's 24). Each vector lane
// runs Welford's update over its elements (one read of x), and lanes, work-items and chunks are merged with Chan,
// Golub and LeVeque's pairwise formula M2 = M2a + M2b + d^2 na nb / n, d = mean_b - mean_a: every term is
// non-negative, so nothing cancels, and the error does not grow with mean/std.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif
#ifndef WG
#define WG 256 // work-items per work-group: a power of two, at most the device's max work-group size
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
void group_norm_reduce_stats(__global const REAL *x, __global REAL *partial, const long count, const long chunk,
                             const int split)
{
    __local REAL ln[WG], lmean[WG], lm2[WG];
    const long ng = get_group_id(1);
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    const long start = i * chunk;

    REAL n, mean, m2;
    PartialMoments(x + ng * count + start, min(count - start, chunk), lid, WG, &n, &mean, &m2);
    TreeMoments(&n, &mean, &m2, ln, lmean, lm2, lid, WG);
    if (lid == 0) {
        partial[(ng * split + i) * 2] = mean;
        partial[(ng * split + i) * 2 + 1] = m2;
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_reduce_apply(__global const REAL *x, __global const REAL *partial, __global const REAL *weight,
                             __global const REAL *bias, __global REAL *y, const int C, const int G, const long S,
                             const long chunk, const int split, const REAL eps)
{
    __local REAL ln[WG], lmean[WG], lm2[WG];
    const long ng = get_group_id(1);
    const int g = ng % G;
    const int cpg = C / G;
    const long count = cpg * S;
    const int i = get_group_id(0);
    const int lid = get_local_id(0);

    REAL n = 0, mean = 0, m2 = 0;
    for (int p = lid; p < split; p += WG)
        MergeMoments(&n, &mean, &m2, (REAL)min(count - p * chunk, chunk), partial[(ng * split + p) * 2],
                     partial[(ng * split + p) * 2 + 1]);
    TreeMoments(&n, &mean, &m2, ln, lmean, lm2, lid, WG);
    const REAL inv_std = (REAL)1 / sqrt(m2 / (REAL)count + eps);

    const long start = i * chunk;
    const long end = min(start + chunk, count);
    for (long c = start / S; c * S < end; ++c) {      // the channels this chunk overlaps
        const REAL w = HAS_WEIGHT ? weight[g * cpg + c] : (REAL)1;
        const REAL b = HAS_BIAS ? bias[g * cpg + c] : (REAL)0;
        const long lo = max(start, c * S);
        const long nv = (min(end, (c + 1) * S) - lo) / VEC;
        const __global REAL *xs = x + ng * count + lo;
        __global REAL *ys = y + ng * count + lo;
        for (long v = lid; v < nv; v += WG) {
            VREAL val = (VLOAD(xs + v * VEC) - mean) * inv_std;
#if HAS_WEIGHT
            val *= w;
#endif
#if HAS_BIAS
            val += b;
#endif
            VSTORE(val, ys + v * VEC);
        }
        for (long e = nv * VEC + lid; e < min(end, (c + 1) * S) - lo; e += WG) {
            REAL val = (xs[e] - mean) * inv_std;
#if HAS_WEIGHT
            val *= w;
#endif
#if HAS_BIAS
            val += b;
#endif
            ys[e] = val;
        }
    }
}
