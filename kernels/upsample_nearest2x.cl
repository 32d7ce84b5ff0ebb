// upsample_nearest2x: x (N, C, H, W) -> y (N, C, 2H, 2W), packed; y[p, oy, ox] = x[p, oy/2, ox/2] with p = n*C + c.
// naive: one work-item per output element over the flat index, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void upsample_nearest2x_naive(__global const REAL *x, __global REAL *y, const long n,
                                       const int H, const int W)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const int OW = 2 * W;
    const int OH = 2 * H;
    const int ox = i % OW;
    const int oy = (i / OW) % OH;
    const long p = i / ((long)OW * OH);
    y[i] = x[(p * H + oy / 2) * W + ox / 2];
}
