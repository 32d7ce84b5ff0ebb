// geglu: x (R, 2F) -> y (R, F), y[r, f] = h * gelu(g) with h = x[r*2F + f], g = x[r*2F + F + f]
// (the first half of the last axis is the value, the second the gate).
// naive (unfused, as a framework runs it: split, then gelu, then multiply, each a launch of its own with its
// intermediate in global memory): geglu_split writes the halves h and g, each (R, F) packed; then gelu_naive
// (gelu.cl) turns g into gelu(g) and mul_naive (mul.cl) multiplies. One work-item per element of h over the flat
// index i = r*F + f, NDRange rounded up by the host. The fused variant is geglu_fused.cl.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void geglu_split(__global const REAL *x, __global REAL *h, __global REAL *g, const long n, const long F)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const long r = i / F;
    const long f = i % F;
    h[i] = x[r * 2 * F + f];
    g[i] = x[r * 2 * F + F + f];
}
