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

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#if VEC == 1
#define VREAL REAL
#define VLOAD(p) (*(p))
#define VSTORE(v, p) (*(p) = (v))
#else
#define VREAL CAT(REAL, VEC)
#define VLOAD(p) CAT(vload, VEC)(0, p)
#define VSTORE(v, p) CAT(vstore, VEC)(v, 0, p)
#endif

// (n, mean, m2) += (nb, mean_b, m2_b): Chan et al.'s pairwise merge of two sets of moments.
void MergeMoments(REAL *n, REAL *mean, REAL *m2, const REAL nb, const REAL mean_b, const REAL m2_b)
{
    if (nb == 0) return;
    const REAL na = *n;
    const REAL total = na + nb;
    const REAL d = mean_b - *mean;
    const REAL f = nb / total;
    *mean += d * f;                 // na = 0: mean = mean_b exactly (d * 1)
    *m2 += m2_b + d * d * na * f;
    *n = total;
}

// The moments (count, mean, M2) of a work-item's share of the len elements at xs, shared by TP work-items:
// the vectors of VEC elements t, t + TP, ... (each vector lane runs Welford's update: one read of x), merged lane
// by lane, then the tail elements (len not a multiple of VEC) nv*VEC + t, nv*VEC + t + TP, ...
void PartialMoments(const __global REAL *xs, const long len, const int t, const int TP,
                    REAL *n, REAL *mean, REAL *m2)
{
    const long nv = len / VEC;
    VREAL vmean = 0, vm2 = 0;
    REAL count = 0;
    for (long v = t; v < nv; v += TP) {
        const VREAL xv = VLOAD(xs + v * VEC);
        count += 1;
        const VREAL d = xv - vmean;
        vmean += d / count;
        vm2 += d * (xv - vmean);
    }
    REAL lane_mean[VEC], lane_m2[VEC];
    VSTORE(vmean, lane_mean);
    VSTORE(vm2, lane_m2);
    *n = 0;
    *mean = 0;
    *m2 = 0;
    for (int k = 0; k < VEC; ++k) MergeMoments(n, mean, m2, count, lane_mean[k], lane_m2[k]);
    for (long e = nv * VEC + t; e < len; e += TP) MergeMoments(n, mean, m2, 1, xs[e], 0);
}

// The moments of the whole work-group, returned to every work-item: a tree of merges in local memory.
void WorkGroupMoments(REAL *n, REAL *mean, REAL *m2, __local REAL *ln, __local REAL *lmean, __local REAL *lm2)
{
    const int lid = get_local_id(0);
    ln[lid] = *n;
    lmean[lid] = *mean;
    lm2[lid] = *m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) {
            REAL a = ln[lid], b = lmean[lid], c = lm2[lid];
            MergeMoments(&a, &b, &c, ln[lid + s], lmean[lid + s], lm2[lid + s]);
            ln[lid] = a;
            lmean[lid] = b;
            lm2[lid] = c;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *n = ln[0];
    *mean = lmean[0];
    *m2 = lm2[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read [0] before the next call overwrites it
}

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
    WorkGroupMoments(&n, &mean, &m2, ln, lmean, lm2);
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
    WorkGroupMoments(&n, &mean, &m2, ln, lmean, lm2);
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
