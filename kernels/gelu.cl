// gelu: y[i] = x[i] * (1 + erf(x[i] / sqrt 2)) / 2, the reference's formula with OpenCL's erf.
// Layout: flat, n elements. naive: one work-item per element, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void gelu_naive(__global const REAL *x, __global REAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const REAL v = x[i];
    y[i] = (REAL)0.5 * v * ((REAL)1 + erf(v * (REAL)0.70710678118654752440));  // 1/sqrt(2)
}
