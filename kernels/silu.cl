// silu: y[i] = x[i] / (1 + exp(-x[i])).  Layout: flat, n elements.
// REAL (float or double) comes from the build options; REAL_IS_DOUBLE enables fp64.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void silu_naive(__global const REAL *x, __global REAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) y[i] = x[i] / ((REAL)1 + exp(-x[i]));
}
