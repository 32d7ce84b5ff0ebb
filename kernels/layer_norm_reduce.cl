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
    ln[rl][t] = n;
    lmean[rl][t] = mean;
    lm2[rl][t] = m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = TPR / 2; s > 0; s >>= 1) {
        if (t < s) {
            REAL a = ln[rl][t], b = lmean[rl][t], c = lm2[rl][t];
            MergeMoments(&a, &b, &c, ln[rl][t + s], lmean[rl][t + s], lm2[rl][t + s]);
            ln[rl][t] = a;
            lmean[rl][t] = b;
            lm2[rl][t] = c;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    mean = lmean[rl][0];
    const REAL inv_std = (REAL)1 / sqrt(lm2[rl][0] / (REAL)D + eps);

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
