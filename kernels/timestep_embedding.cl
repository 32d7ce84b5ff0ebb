// timestep_embedding: y (N, dim), packed; half = dim/2, f_k = exp(-log(max_period) * k / denom) with
// denom = half - downscale_freq_shift. Columns [0, half) hold sin(t f_k) and [half, 2 half) cos(t f_k) (k = column
// mod half); flip swaps the halves (cos first); an odd dim leaves a last column of zeros.
// naive: one work-item per output element over the flat index, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif
#ifndef TIME_T
#define TIME_T REAL // the element type of the timesteps array (int, long, uint, float, double, ...)
#endif

__kernel void timestep_embedding_naive(__global const TIME_T *t, __global REAL *y, const long total,
                                       const int dim, const int nhalf, const REAL log_max_period,
                                       const REAL denom, const int flip)
{
    const long i = get_global_id(0);
    if (i >= total) return;
    const long n = i / dim;
    const int j = i % dim;
    if (j >= 2 * nhalf) {   // the zero column of an odd dim
        y[i] = 0;
        return;
    }
    const int first = j < nhalf;
    const int k = first ? j : j - nhalf;
    const REAL freq = exp(-log_max_period * (REAL)k / denom);
    const REAL arg = (REAL)t[n] * freq;
    const int is_sin = flip ? !first : first;
    y[i] = is_sin ? sin(arg) : cos(arg);
}
