// quick_gelu: y[i] = x[i] / (1 + exp(-1.702 x[i])) = x * sigmoid(1.702 x), CLIP ViT-L's activation.
// Layout: flat, n elements. naive: one work-item per element, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void quick_gelu_naive(__global const REAL *x, __global REAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    y[i] = x[i] / ((REAL)1 + exp((REAL)-1.702 * x[i]));
}
