// norm/layer_norm.cl: layer_norm's reduce variant (the naive one is norm/naive.cl). x seen as R rows of D values,
// x[r, e] = x[r*D + e]; per row
//   y = (x - mean) / sqrt(M2/D + eps) * weight[e] + bias[e]   (biased variance).
// Rows packed into work-groups of (TPR, WG/TPR): TPR work-items per row, RPW = WG/TPR rows per work-group, so that
// SD's short rows (D = 320 ... 1280) keep every work-item busy (the naive kernel gives each row a whole work-group
// of 256). Work-item t of a row takes the vectors of VEC elements t, t + TPR, ... (vloadn / vstoren: element
// alignment suffices), then the tail elements (D not a multiple of VEC) t, t + TPR, ... Moments (norm/moments.h):
// Welford per vector lane (x read once), lanes and work-items merged pairwise, a tree over the row's TPR work-items
// in local memory; then the row is written (x read again). GPU-style: TPR 16 ... 128, VEC 1 ... 4; CPU-style (PoCL
// vectorizes explicit vector types): TPR 1 ... 4, VEC 8 or 16.
// NDRange: (TPR, ceil(R / RPW) * RPW); the rows past R compute nothing and write nothing.
// Knobs (-D):
//   WG   work-items per work-group: a power of two, at most the device's max work-group size
//   TPR  work-items per row: a power of two, TPR <= WG <= 64 TPR
//   VEC  elements per vector: 1, 2, 4, 8 or 16
// has_weight / has_bias (0 or 1): whether the weight / bias argument is read (the host passes any buffer for a
// missing one); uniform branches, which cost nothing measured on PoCL in either form.
// Arrays of DATA (REAL, or half for float16: common.h), the arithmetic and the local arrays in REAL.
#include "common.h"
#ifndef WG
#error "WG (work-items per work-group, a power of two) must be set with -D"
#endif
#ifndef TPR
#error "TPR (work-items per row, a power of two at most WG) must be set with -D"
#endif
#ifndef VEC
#error "VEC (elements per vector: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#define RPW (WG / TPR) // rows per work-group
#include "moments.h"

__kernel __attribute__((reqd_work_group_size(TPR, RPW, 1)))
void layer_norm_reduce(__global const DATA *x, __global const DATA *weight, __global const DATA *bias,
                       __global DATA *y, const long R, const int D, const REAL eps,
                       const int has_weight, const int has_bias)
{
    __local REAL ln[RPW][TPR], lmean[RPW][TPR], lm2[RPW][TPR];
    const int t = get_local_id(0);
    const int rl = get_local_id(1);
    const long r = get_global_id(1);
    const int len = r < R ? D : 0;        // rows past R: no elements, but every barrier is still reached
    const __global DATA *xr = x + r * D;
    __global DATA *yr = y + r * D;

    REAL n, mean, m2;
    PartialMoments(xr, len, t, TPR, &n, &mean, &m2);
    TreeMoments(&n, &mean, &m2, ln[rl], lmean[rl], lm2[rl], t, TPR);
    const REAL inv_std = (REAL)1 / sqrt(m2 / (REAL)D + eps);

    const int nv = len / VEC;
    for (int v = t; v < nv; v += TPR) {
        VREAL val = (VLOAD(xr + v * VEC) - mean) * inv_std;
        if (has_weight) val *= VLOAD(weight + v * VEC);
        if (has_bias) val += VLOAD(bias + v * VEC);
        VSTORE(val, yr + v * VEC);
    }
    for (int e = nv * VEC + t; e < len; e += TPR) {
        REAL val = (LOAD(xr, e) - mean) * inv_std;
        if (has_weight) val *= LOAD(weight, e);
        if (has_bias) val += LOAD(bias, e);
        STORE(yr, e, val);
    }
}
