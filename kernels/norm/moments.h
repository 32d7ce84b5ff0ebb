// norm/moments.h: the moments (count, mean, M2 = sum (x - mean)^2) of the norm kernels' reduce and fused variants
// (norm/group_norm.cl, norm/layer_norm.cl). Needs common.h and VEC before it. x of DATA (common.h), moments REAL.
//
// Moments, not sum and sum of squares: var = E[x^2] - mean^2 cancels when |mean| >> std and loses
// log2(1 + mean^2/var) bits (a channel with mean 100 and std 1 keeps only ~10 of float32's 24). Each vector lane
// runs Welford's update over its elements (one read of x), and lanes, work-items and chunks are merged with Chan,
// Golub and LeVeque's pairwise formula M2 = M2a + M2b + d^2 na nb / n, d = mean_b - mean_a: every term is
// non-negative, so nothing cancels, and the error does not grow with mean/std.

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

// The moments of a work-item's share of the len elements at xs, shared by TP work-items: the vectors of VEC
// elements t, t + TP, ... (each vector lane runs Welford's update: one read of x), merged lane by lane, then the
// tail elements (len not a multiple of VEC) nv*VEC + t, nv*VEC + t + TP, ...
void PartialMoments(const __global DATA *xs, const long len, const int t, const int TP,
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
    VSTORE_REAL(vmean, lane_mean);
    VSTORE_REAL(vm2, lane_m2);
    *n = 0;
    *mean = 0;
    *m2 = 0;
    for (int k = 0; k < VEC; ++k) MergeMoments(n, mean, m2, count, lane_mean[k], lane_m2[k]);
    for (long e = nv * VEC + t; e < len; e += TP) MergeMoments(n, mean, m2, 1, LOAD(xs, e), 0);
}

// The moments of TP work-items t = 0 .. TP-1 (TP a power of two), each holding its own in (n, mean, m2), merged as
// a tree in the local arrays ln, lmean, lm2 (TP elements each) and returned to every one of them. Every work-item of
// the work-group calls it (it has barriers); several groups of TP work-items may each pass their own arrays. It does
// not end with a barrier (every caller uses the arrays once): a caller that writes them again must put one first.
// A trailing barrier cost group_norm_silu_fused 8-12% on an H200 at WG = 4 (scripts/ab_perf.py-style overlay A/B).
void TreeMoments(REAL *n, REAL *mean, REAL *m2, __local REAL *ln, __local REAL *lmean, __local REAL *lm2,
                 const int t, const int TP)
{
    ln[t] = *n;
    lmean[t] = *mean;
    lm2[t] = *m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = TP / 2; s > 0; s >>= 1) {
        if (t < s) {
            REAL a = ln[t], b = lmean[t], c = lm2[t];
            MergeMoments(&a, &b, &c, ln[t + s], lmean[t + s], lm2[t + s]);
            ln[t] = a;
            lmean[t] = b;
            lm2[t] = c;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *n = ln[0];
    *mean = lmean[0];
    *m2 = lm2[0];
}
