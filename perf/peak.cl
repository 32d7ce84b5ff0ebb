// Device peak microbenchmarks: arithmetic throughput (independent FMA chains) and memory bandwidth (a copy).
// Built by perf/peak.py with -D knobs; REAL comes from the build options like every sdcl kernel.
//
// peak_fma:  each work-item runs CHAINS independent chains x = fma(x, a, b) of VEC-wide vectors for ITERS trips
//            (2 * VEC * CHAINS * ITERS FLOPs per work-item) and writes one sum so nothing is optimised away.
//            x converges to b / (1 - a), so values stay normal (no denormal slow paths, no overflow).
// peak_copy: y[i] = x[i] over n VEC-wide vectors; traffic 2 * n * VEC * sizeof(REAL) bytes.
#ifndef REAL
#define REAL float
#endif
#ifndef VEC
#define VEC 8          // vector width: 1, 2, 4, 8 or 16
#endif
#ifndef CHAINS
#define CHAINS 8       // independent FMA chains per work-item (hide the FMA latency)
#endif
#ifndef ITERS
#define ITERS 512      // loop trips per work-item
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#if VEC == 1
#define VREAL REAL
#define VSUM(v) (v)
#else
#define VREAL CAT(REAL, VEC)
#endif

#if VEC == 2
#define VSUM(v) ((v).s0 + (v).s1)
#elif VEC == 4
#define VSUM(v) ((v).s0 + (v).s1 + (v).s2 + (v).s3)
#elif VEC == 8
#define VSUM(v) (VSUM4((v).lo) + VSUM4((v).hi))
#elif VEC == 16
#define VSUM(v) (VSUM8((v).lo) + VSUM8((v).hi))
#endif
#define VSUM4(v) ((v).s0 + (v).s1 + (v).s2 + (v).s3)
#define VSUM8(v) (VSUM4((v).lo) + VSUM4((v).hi))

__kernel void peak_fma(__global REAL *out, const REAL a, const REAL b)
{
    const size_t gid = get_global_id(0);
    const VREAL va = (VREAL)(a), vb = (VREAL)(b);
    VREAL x[CHAINS];
    for (int c = 0; c < CHAINS; ++c)
        x[c] = (VREAL)((REAL)(gid & 7) + (REAL)c);
    for (int i = 0; i < ITERS; ++i) {
#pragma unroll
        for (int c = 0; c < CHAINS; ++c)
            x[c] = fma(x[c], va, vb);
    }
    VREAL s = x[0];
    for (int c = 1; c < CHAINS; ++c)
        s += x[c];
    out[gid] = VSUM(s);
}

__kernel void peak_copy(__global const VREAL *x, __global VREAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) y[i] = x[i];
}
