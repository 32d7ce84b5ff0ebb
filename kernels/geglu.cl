// geglu: x (R, 2F) -> y (R, F), y[r, f] = h * gelu(g) with h = x[r*2F + f], g = x[r*2F + F + f]
// (the first half of the last axis is the value, the second the gate); gelu as in gelu.cl.
// naive: one work-item per output element over the flat index, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void geglu_naive(__global const REAL *x, __global REAL *y, const long n, const long F)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const long r = i / F;
    const long f = i % F;
    const REAL h = x[r * 2 * F + f];
    const REAL g = x[r * 2 * F + F + f];
    y[i] = h * ((REAL)0.5 * g * ((REAL)1 + erf(g * (REAL)0.70710678118654752440)));  // 1/sqrt(2)
}
