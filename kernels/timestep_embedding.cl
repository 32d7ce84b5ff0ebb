// timestep_embedding: y (N, dim), packed; half = dim/2, f_k = exp(-log(max_period) * k / denom) with
// denom = half - downscale_freq_shift. Columns [0, half) hold sin(t f_k) and [half, 2 half) cos(t f_k) (k = column
// mod half); flip swaps the halves (cos first); an odd dim leaves a last column of zeros.
// naive: one work-item per output element over the flat index, NDRange rounded up by the host.
// -D TIME_T: the element type of the timesteps array (int, long, uint, float, double, ...), set by the host from
// the array it is given; half for the float16 dtype (-DDATA_HALF: float16 timesteps, read with vload_half, and y
// in half, computed in float as for float32).
// y is DATA (REAL, or half for float16: common.h), the arithmetic REAL.
#include "common.h"
#ifndef TIME_T
#error "TIME_T (the timesteps' element type) must be set with -D"
#endif
#ifdef DATA_HALF
#define TIME_AT(n) LOAD(t, n)       // TIME_T half: a half pointer is never dereferenced
#else
#define TIME_AT(n) ((REAL)t[n])
#endif

__kernel void timestep_embedding_naive(__global const TIME_T *t, __global DATA *y, const long total,
                                       const int dim, const int nhalf, const REAL log_max_period,
                                       const REAL denom, const int flip)
{
    const long i = get_global_id(0);
    if (i >= total) return;
    const long n = i / dim;
    const int j = i % dim;
    if (j >= 2 * nhalf) {   // the zero column of an odd dim
        STORE(y, i, (REAL)0);
        return;
    }
    const int first = j < nhalf;
    const int k = first ? j : j - nhalf;
    const REAL freq = exp(-log_max_period * (REAL)k / denom);
    const REAL arg = TIME_AT(n) * freq;
    const int is_sin = flip ? !first : first;
    STORE(y, i, is_sin ? sin(arg) : cos(arg));
}
