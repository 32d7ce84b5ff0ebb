// norm/group_norm.cl: group_norm's reduce variant and group_norm_silu's fused variant, which share their moments and
// their normalization (the naive variant is norm/naive.cl).
// Layout: x (N, C, S...) packed, S = the product of the spatial sizes, G groups of C/G channels; group ng = n*G + g
// is the contiguous block x[ng*count .. (ng+1)*count), count = (C/G)*S; element e of the block is in channel
// c = g*(C/G) + e/S.  y = (x - mean) / sqrt(M2/count + eps) * weight[c] + bias[c]  (biased variance),
// then silu(y) = y / (1 + exp(-y)) for group_norm_silu.
//
// reduce: each (sample, group) spread over several work-groups, in two launches. The host cuts every block into
// `split` chunks of `chunk` elements (the last one shorter, none empty):
//   group_norm_reduce_stats: work-group (chunk i, group ng) writes the moments of its chunk (norm/moments.h),
//       partial[(ng*split + i)*2 + 0] = mean,  partial[(ng*split + i)*2 + 1] = M2;
//   group_norm_reduce_apply: work-group (chunk i, group ng) merges the `split` partials of its group (every
//       work-group of a group in the same fixed order, so all of them get the same mean and variance), then
//       normalizes its own chunk, and applies SiLU where silu is 1 (group_norm_silu's fused variant with SPLIT > 1).
//   NDRange of both: (split * WG, N*G), work-groups of (WG, 1).
// fused (group_norm_silu_fused): one work-group of WG work-items per (sample, group) does the moments of the whole
//   block, then normalizes it and applies SiLU: x read twice and y written once, against three reads and a write for
//   group_norm followed by a read and a write for silu. NDRange (WG, N*G), work-groups of (WG, 1). It fills a GPU
//   only where N*G work-groups do (the VAE's 32 groups of a million elements at 512x512 leave most compute units
//   idle); the variant's SPLIT > 1 runs the reduce kernels above instead, SiLU fused into the apply pass (the same
//   reads and writes, in two launches).
// A work-item t takes the vectors of VEC elements t, t + WG, ... of a range (vloadn / vstoren: element alignment
// suffices), then the range's tail elements t, t + WG, ...; the normalization goes channel by channel (weight[c] and
// bias[c] read once per channel, no division per element). GPU-style: WG 64 ... 256, VEC 1 ... 4; CPU-style (PoCL
// vectorizes explicit vector types, not a work-item's loop): small WG, VEC 8 or 16.
// has_weight / has_bias (0 or 1): whether the weight / bias argument is read (the host passes any buffer for a
// missing one); without them the per-channel factor is 1 and the offset 0, which change nothing.
// Arrays of DATA (REAL, or half for float16: common.h); partial (the moments between the launches) stays REAL.
//
// Knobs (-D):
//   WG   work-items per work-group: a power of two, at most the device's max work-group size
//   VEC  elements per vector (vloadn / vstoren): 1, 2, 4, 8 or 16; WG*VEC >= 64 (the registry's constraint: the
//        moments' error averages over the lanes, see registry/norm.py)
#include "common.h"
#ifndef WG
#error "WG (work-items per work-group, a power of two) must be set with -D"
#endif
#ifndef VEC
#error "VEC (elements per vector: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#include "moments.h"

// y = (x - mean) * inv_std * weight[c] + bias[c], then SiLU when silu, over the elements [start, end) of the block
// at x + base (channel c = c0 + e/S), channel by channel; work-item lid of WG.
inline void Normalize(const __global DATA *x, const __global DATA *weight, const __global DATA *bias, __global DATA *y,
                      const long base, const int c0, const long S, const long start, const long end, const REAL mean,
                      const REAL inv_std, const int has_weight, const int has_bias, const bool silu, const int lid)
{
    for (long c = start / S; c * S < end; ++c) {      // the channels the range overlaps
        const REAL w = has_weight ? LOAD(weight, c0 + c) : (REAL)1;
        const REAL b = has_bias ? LOAD(bias, c0 + c) : (REAL)0;
        const long lo = max(start, c * S);
        const long len = min(end, (c + 1) * S) - lo;
        const long nv = len / VEC;
        const __global DATA *xs = x + base + lo;
        __global DATA *ys = y + base + lo;
        for (long v = lid; v < nv; v += WG) {
            VREAL val = (VLOAD(xs + v * VEC) - mean) * inv_std;
            val *= w;
            val += b;
            if (silu) val = SILU(val);
            VSTORE(val, ys + v * VEC);
        }
        for (long e = nv * VEC + lid; e < len; e += WG) {
            REAL val = (LOAD(xs, e) - mean) * inv_std;
            val *= w;
            val += b;
            if (silu) val = SILU(val);
            STORE(ys, e, val);
        }
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_reduce_stats(__global const DATA *x, __global REAL *partial, const long count, const long chunk,
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
void group_norm_reduce_apply(__global const DATA *x, __global const REAL *partial, __global const DATA *weight,
                             __global const DATA *bias, __global DATA *y, const int C, const int G, const long S,
                             const long chunk, const int split, const REAL eps, const int has_weight,
                             const int has_bias, const int silu)
{
    __local REAL ln[WG], lmean[WG], lm2[WG];
    const long ng = get_group_id(1);
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
    Normalize(x, weight, bias, y, ng * count, (ng % G) * cpg, S, i * chunk, min((i + 1) * chunk, count), mean,
              inv_std, has_weight, has_bias, silu, lid);
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_silu_fused(__global const DATA *x, __global const DATA *weight, __global const DATA *bias,
                           __global DATA *y, const int C, const int G, const long S, const REAL eps,
                           const int has_weight, const int has_bias)
{
    __local REAL ln[WG], lmean[WG], lm2[WG];
    const long ng = get_group_id(1);
    const int cpg = C / G;
    const long count = cpg * S;
    const int lid = get_local_id(0);

    REAL n, mean, m2;
    PartialMoments(x + ng * count, count, lid, WG, &n, &mean, &m2);
    TreeMoments(&n, &mean, &m2, ln, lmean, lm2, lid, WG);
    const REAL inv_std = (REAL)1 / sqrt(m2 / (REAL)count + eps);
    Normalize(x, weight, bias, y, ng * count, (ng % G) * cpg, S, 0, count, mean, inv_std, has_weight, has_bias,
              true, lid);
}
