// geglu, fused variant: x (R, 2F) -> y (R, F), y[r, f] = h * gelu(g) with h = x[r*2F + f], g = x[r*2F + F + f]
// (gelu: the reference's erf formula, GELU in common.h): split, GELU and product in one launch, h and g read once,
// y written once, no intermediate in global memory (arrays of DATA: REAL, or half for float16, common.h). (The naive variant is elementwise.cl's geglu_split.)
// Work-item (j, r) of the 2-D NDRange (ceil(ceil(F / VEC) / WG) * WG, R) computes y[r, VEC*j .. VEC*j + VEC) with
// vector loads and stores (vloadn / vstoren: element alignment suffices) when the whole vector lies inside the
// row, element by element for the row's tail (F not a multiple of VEC); work-items past the row return.
// Knobs (-D):
//   VEC  outputs per work-item along a row: 1, 2, 4, 8 or 16
//   WG   work-items per work-group along a row, at most the device's max work-group size
#include "common.h"
#ifndef VEC
#error "VEC (outputs per work-item: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#ifndef WG
#error "WG (work-items per work-group) must be set with -D"
#endif

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void geglu_fused(__global const DATA *x, __global DATA *y, const long F)
{
    const long f0 = (long)get_global_id(0) * VEC;
    const long r = get_global_id(1);
    if (f0 >= F) return;
    const __global DATA *h = x + r * 2 * F + f0;
    const __global DATA *g = h + F;
    __global DATA *yr = y + r * F + f0;
    if (f0 + VEC <= F) {
        const VREAL gv = VLOAD(g);
        VSTORE(VLOAD(h) * GELU(gv), yr);
    } else {
        for (int k = 0; k < F - f0; ++k) {
            const REAL gs = LOAD(g, k);
            STORE(yr, k, LOAD(h, k) * GELU(gs));
        }
    }
}
