// mul: y = a * b with b broadcast to a's shape. The host folds the shapes to 4-D, (D0, D1, D2, D3) packed for a
// and y, and gives b's element strides per axis (0 on an axis where b has size 1):
//   y[i] = a[i] * b[c0*S0 + c1*S1 + c2*S2 + c3*S3],  i = ((c0*D1 + c1)*D2 + c2)*D3 + c3.
// naive: one work-item per element over the flat index, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void mul_naive(__global const REAL *a, __global const REAL *b, __global REAL *y, const long n,
                        const long D1, const long D2, const long D3,
                        const long S0, const long S1, const long S2, const long S3)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    long r = i;
    const long c3 = r % D3;
    r /= D3;
    const long c2 = r % D2;
    r /= D2;
    const long c1 = r % D1;
    const long c0 = r / D1;
    y[i] = a[i] * b[c0 * S0 + c1 * S1 + c2 * S2 + c3 * S3];
}
