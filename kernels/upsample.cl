// upsample_nearest2x_rows: x (N, C, H, W) -> y (N, C, 2H, 2W), y[p, oy, ox] = x[p, oy/2, ox/2], as
// upsample_nearest2x_naive (layout.cl) computes it, with the work turned around: work-item i reads VEC neighbours
// x[r, VEC*j ...] of input row r = i / (W/VEC) (r = (n*C + c)*H + iy) and writes each of them four times, at
// columns 2(VEC*j + v) and 2(VEC*j + v) + 1 of output rows 2r and 2r + 1. Why: the naive kernel pays three 64-bit
// divisions per output element (slow on a GPU, where 64-bit division is a software routine), this kernel one 32-bit
// division per VEC inputs; its stores stay contiguous across a warp. The host checks the 32-bit bound.
// NDRange (ceil(N*C*H*W/VEC / WG) * WG), any work-group size. Knobs (-D):
//   VEC  inputs per work-item along a row, 1, 2 or 4: W % VEC == 0 (the host takes VEC 1 where it is not)
#include "common.h"
#ifndef VEC
#error "VEC (inputs per work-item along a row: 1, 2 or 4) must be set with -D"
#endif

__kernel void upsample_nearest2x_rows(__global const DATA *x, __global DATA *y, const int n, const int WV)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    const int r = i / WV, j = i - r * WV;                      // input row, group of VEC along it
    const int W = WV * VEC;
    const __global DATA *src = x + (long)r * W + j * VEC;
    __global DATA *dst = y + (long)r * 4 * W + 2 * j * VEC;    // output row 2r, column 2*VEC*j
    for (int v = 0; v < VEC; ++v) {
        const REAL a = LOAD(src, v);
        STORE(dst, 2 * v, a);
        STORE(dst, 2 * v + 1, a);
        STORE(dst, 2 * W + 2 * v, a);
        STORE(dst, 2 * W + 2 * v + 1, a);
    }
}
