// vecops.cl: add and mul with b broadcast to a's shape, VEC consecutive outputs per work-item with vector loads and
// stores (sdcl's naive kernels compute each output's broadcast offset with four divisions and one scalar load).
//   add_vec  y[i] = a[i] + b[FoldedOffset(i)]      a's shape and b's strides folded to 4-D by the host
//   mul_vec  y[i] = a[i] * b[FoldedOffset(i)]      (D0..D3, S0..S3: sdcl's fold_broadcast, common.h)
// Work-item g covers y[g*VEC .. g*VEC + VEC). Where the innermost folded axis D3 is a multiple of VEC, those VEC
// outputs lie in one run of it: one offset, then b's VEC elements with one vector load (S3 = 1) or b's one element
// repeated (S3 = 0). Otherwise, and for the tail of y, element by element.
// Knobs (-D): VEC  outputs per work-item: 1, 2, 4, 8 or 16;  WG  the work-group size, compiled in
// (reqd_work_group_size: without it llvmpipe allows these kernels work-groups of 32 only).
#include "common.h"
#ifndef VEC
#error "VEC (outputs per work-item: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#ifndef WG
#error "WG (the work-group size) must be set with -D"
#endif

#define BINARY_VEC(name, OP)                                                                                        \
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))                                                           \
void name(__global const REAL *a, __global const REAL *b, __global REAL *y, const long n,                 \
                   const long D1, const long D2, const long D3,                                                     \
                   const long S0, const long S1, const long S2, const long S3)                                      \
{                                                                                                                   \
    const long i0 = (long)get_global_id(0) * VEC;                                                                   \
    if (i0 >= n) return;                                                                                            \
    if (i0 + VEC <= n && D3 % VEC == 0) {                                                                           \
        const long off = FoldedOffset(i0, D1, D2, D3, S0, S1, S2, S3);                                              \
        const VREAL bv = S3 == 0 ? (VREAL)(b[off]) : VLOAD(b + off);                                                \
        VSTORE(VLOAD(a + i0) OP bv, y + i0);                                                                        \
        return;                                                                                                     \
    }                                                                                                               \
    for (long i = i0; i < min(i0 + VEC, n); ++i)                                                                    \
        y[i] = a[i] OP b[FoldedOffset(i, D1, D2, D3, S0, S1, S2, S3)];                                              \
}

BINARY_VEC(add_vec, +)
BINARY_VEC(mul_vec, *)
