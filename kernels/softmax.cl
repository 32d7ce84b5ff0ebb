// softmax along one axis of a packed array seen as (OUTER, L, INNER): the axis has length L and stride INNER
// (INNER = 1 for the last axis). Line (o, i) holds x[(o*L + l)*INNER + i] for l < L.
//   y = exp(x - max) / sum(exp(x - max)); -inf entries give 0; a line of only -inf gives NaN (-inf - -inf),
//   as the reference and torch do.
// naive: one work-item per line, three passes over it (max, sum, write); flat NDRange over OUTER*INNER lines,
// rounded up by the host, the tail returns early.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void softmax_naive(__global const REAL *x, __global REAL *y, const long lines, const int L,
                            const long INNER)
{
    const long line = get_global_id(0);
    if (line >= lines) return;
    const long o = line / INNER;
    const long i = line % INNER;
    const __global REAL *xl = x + o * L * INNER + i;
    __global REAL *yl = y + o * L * INNER + i;

    REAL m = -INFINITY;
    for (int l = 0; l < L; ++l) {
        const REAL v = xl[l * INNER];
        m = v > m ? v : m;
    }
    REAL s = 0;
    for (int l = 0; l < L; ++l) s += exp(xl[l * INNER] - m);
    for (int l = 0; l < L; ++l) yl[l * INNER] = exp(xl[l * INNER] - m) / s;
}
