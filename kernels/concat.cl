// concat: copies one input x, seen as (OUTER, LEN, INNER) packed, into y (OUTER, TOTAL, INNER) at axis offset
// OFF; the host launches once per input. With LI = LEN*INNER:
//   y[o*TOTAL*INNER + OFF*INNER + r] = x[o*LI + r],  r < LI.
// naive: one work-item per element of x over the flat index, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void concat_naive(__global const REAL *x, __global REAL *y, const long n, const long LI,
                           const long TOTAL_INNER, const long OFF_INNER)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const long o = i / LI;
    const long r = i % LI;
    y[o * TOTAL_INNER + OFF_INNER + r] = x[i];
}
