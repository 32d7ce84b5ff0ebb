// to_half: y[i] = x[i] rounded to half (IEEE binary16, round to nearest even; |x| > 65504 -> inf), the storage of
// the half-storage variants' weights and lowered activations. vstore_half needs no cl_khr_fp16.
// Layout: flat, n elements. REAL (float or double) comes from the build options; REAL_IS_DOUBLE enables fp64.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void to_half(__global const REAL *x, __global half *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) vstore_half(x[i], i, y);
}
