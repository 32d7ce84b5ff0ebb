// elementwise: the flat kernels, one work-item per element of a flat index i < n (the host rounds the NDRange up,
// the tail returns early). They have no knobs, and the operation is the entry point, not a define, so one build
// per dtype serves every one of them:
//   silu_naive         y[i] = x[i] / (1 + exp(-x[i]))
//   gelu_naive         y[i] = x[i] (1 + erf(x[i] / sqrt 2)) / 2
//   gelu_tanh_naive    y[i] = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),  x = x[i]
//   quick_gelu_naive   y[i] = x[i] / (1 + exp(-1.702 x[i])) = x sigmoid(1.702 x), CLIP ViT-L's activation
//   add_naive          y[i] = a[i] + b[FoldedOffset(i)]   b broadcast to a's shape (D0, D1, D2, D3), folded to 4-D
//   mul_naive          y[i] = a[i] * b[FoldedOffset(i)]   by the host, S0..S3 b's strides (common.h)
//   geglu_split        x (R, 2F) -> h, g (R, F): h[r*F + f] = x[r*2F + f], g[r*F + f] = x[r*2F + F + f]; geglu's
//                      naive variant, unfused as a framework runs it: then gelu_naive(g) and mul_naive(h, gelu(g)),
//                      each launch with its intermediate in global memory (the fused variant is geglu.cl)
//   to_half            y[i] = x[i] rounded to half (IEEE binary16, round to nearest even; |x| > 65504 -> inf), the
//                      storage of the half-storage variants' operands; vstore_half needs no cl_khr_fp16
//   from_half          y[i] = x[i] (half) as REAL: exact
// All arrays are packed, of DATA (REAL, or half for float16: common.h; the arithmetic in REAL).
#include "common.h"

__kernel void silu_naive(__global const DATA *x, __global DATA *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) STORE(y, i, SILU(LOAD(x, i)));
}

__kernel void gelu_naive(__global const DATA *x, __global DATA *y, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const REAL v = LOAD(x, i);
    STORE(y, i, GELU(v));
}

__kernel void gelu_tanh_naive(__global const DATA *x, __global DATA *y, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const REAL v = LOAD(x, i);
    const REAL u = (REAL)0.79788456080286535588 * (v + (REAL)0.044715 * v * v * v);  // sqrt(2/pi)
    STORE(y, i, (REAL)0.5 * v * ((REAL)1 + tanh(u)));
}

__kernel void quick_gelu_naive(__global const DATA *x, __global DATA *y, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const REAL v = LOAD(x, i);
    STORE(y, i, v / ((REAL)1 + exp((REAL)-1.702 * v)));
}

__kernel void add_naive(__global const DATA *a, __global const DATA *b, __global DATA *y, const long n,
                        const long D1, const long D2, const long D3,
                        const long S0, const long S1, const long S2, const long S3)
{
    const long i = get_global_id(0);
    if (i < n) STORE(y, i, LOAD(a, i) + LOAD(b, FoldedOffset(i, D1, D2, D3, S0, S1, S2, S3)));
}

__kernel void mul_naive(__global const DATA *a, __global const DATA *b, __global DATA *y, const long n,
                        const long D1, const long D2, const long D3,
                        const long S0, const long S1, const long S2, const long S3)
{
    const long i = get_global_id(0);
    if (i < n) STORE(y, i, LOAD(a, i) * LOAD(b, FoldedOffset(i, D1, D2, D3, S0, S1, S2, S3)));
}

__kernel void geglu_split(__global const DATA *x, __global DATA *h, __global DATA *g, const long n, const long F)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const long r = i / F;
    const long f = i % F;
    STORE(h, i, LOAD(x, r * 2 * F + f));        // copies: exact in any DATA (half -> float -> half)
    STORE(g, i, LOAD(x, r * 2 * F + F + f));
}

__kernel void to_half(__global const REAL *x, __global half *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) vstore_half(x[i], i, y);
}

__kernel void from_half(__global const half *x, __global REAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) y[i] = vload_half(i, x);
}
