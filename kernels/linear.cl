// linear: y = x W^T (+ bias) over the last axis, x seen as R rows of IN values:
//   x[r, i] = x[r*IN + i],  W[o, i] = w[o*IN + i],  bias[o],  y[r, o] = y[r*OUT + o].
// naive: one work-item per y element, NDRange (OUT, R) rounded up by the host, tails return early.
// Both operands of the dot product are read along contiguous rows.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0 // 1: add bias[o]; 0: the bias argument is not read (the host passes any buffer)
#endif

__kernel void linear_naive(__global const REAL *x, __global const REAL *w, __global const REAL *bias,
                           __global REAL *y, const int R, const int IN, const int OUT)
{
    const int o = get_global_id(0);
    const int r = get_global_id(1);
    if (r >= R || o >= OUT) return;
    const __global REAL *xrow = x + (long)r * IN;
    const __global REAL *wrow = w + (long)o * IN;
    REAL acc = 0;
    for (int i = 0; i < IN; ++i) acc += xrow[i] * wrow[i];
#if HAS_BIAS
    acc += bias[o];
#endif
    y[(long)r * OUT + o] = acc;
}
