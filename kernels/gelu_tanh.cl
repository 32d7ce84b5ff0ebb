// gelu_tanh: y[i] = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), the reference's formula.
// Layout: flat, n elements. naive: one work-item per element, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void gelu_tanh_naive(__global const REAL *x, __global REAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const REAL v = x[i];
    const REAL u = (REAL)0.79788456080286535588 * (v + (REAL)0.044715 * v * v * v);  // sqrt(2/pi)
    y[i] = (REAL)0.5 * v * ((REAL)1 + tanh(u));
}
