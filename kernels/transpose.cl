// permute_tiled: the permutations that fold to a batched transpose (opencl_impl/shapes.py fold_permute):
// x (B, Q, P) row-major -> y (B, P, Q), y[b, p, q] = x[b, q, p] (NCHW <-> N(HW)C around a UNet transformer: B = N,
// Q = C, P = H*W; and back).
// A work-group stages a TS x TS tile of x in local memory (rows q0.., columns p0.., read along p: coalesced) and
// writes it transposed (rows p0.., columns q0.., written along q: coalesced); the tile's rows are padded by one
// element so that the column reads hit TS different banks. Where the naive kernel reads x with a stride of Q and
// pays three 64-bit divisions per element, this one reads and writes contiguous runs with no division.
// NDRange (ceil(P/TS)*TS, ceil(Q/TS)*ROWS, B), work-group (TS, ROWS, 1): each work-item moves TS/ROWS elements.
// Knobs (-D):
//   TS    the tile's side, 16 or 32
//   ROWS  work-item rows per work-group, dividing TS (TS * ROWS work-items)
#include "common.h"
#ifndef TS
#error "TS (the tile's side: 16 or 32) must be set with -D"
#endif
#ifndef ROWS
#error "ROWS (work-item rows per work-group, dividing TS) must be set with -D"
#endif
#if TS % ROWS
#error "ROWS must divide TS"
#endif

__kernel __attribute__((reqd_work_group_size(TS, ROWS, 1)))
void permute_tiled(__global const DATA *x, __global DATA *y, const int Q, const int P)
{
    __local REAL tile[TS][TS + 1];
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int p0 = get_group_id(0) * TS, q0 = get_group_id(1) * TS;
    const long base = (long)get_global_id(2) * Q * P;
    for (int r = ty; r < TS; r += ROWS) {                      // read x rows q0 + r, column p0 + tx
        const int q = q0 + r, p = p0 + tx;
        if (q < Q && p < P) tile[r][tx] = LOAD(x, base + (long)q * P + p);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = ty; r < TS; r += ROWS) {                      // write y rows p0 + r, column q0 + tx
        const int p = p0 + r, q = q0 + tx;
        if (p < P && q < Q) STORE(y, base + (long)p * Q + q, tile[tx][r]);
    }
}
