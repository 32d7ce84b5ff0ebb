// gemm/naive.cl: the naive variants of matmul, batched_matmul and linear, the baselines of the GEMM kernels of this
// folder: one work-item per output element and a plain loop over k. No -D knobs: one build per dtype serves the three.
// All row-major and packed:
//   matmul_naive          C (M, N) = A (M, K) @ B (K, N):  A[m, k] = a[m*K + k], B[k, n] = b[k*N + n],
//                         C[m, n] = c[m*N + n]; NDRange (N, M)
//   batched_matmul_naive  C[i] = A[i] @ B[i] for i < batch:  A[i, m, k] = a[(i*M + m)*K + k],
//                         B[i, k, n] = b[(i*K + k)*N + n], C[i, m, n] = c[(i*M + m)*N + n]; NDRange (N, M, batch)
//   linear_naive          y = x W^T (+ bias) (+ res) over the last axis, x seen as R rows of IN values:
//                         x[r, i] = x[r*IN + i], W[o, i] = w[o*IN + i], y[r, o] = y[r*OUT + o], res as y; both
//                         operands of the dot product are read along contiguous rows; has_bias, has_res (0 or 1):
//                         whether bias[o], res[r, o] are added (the host passes any buffer without one);
//                         NDRange (OUT, R)
// Arrays of DATA (REAL, or half for float16: common.h), read and written through LOAD / STORE; the sums in REAL.
// The host rounds N (OUT) and M (R) up to 16; the tails return early. (One kernel over gemm/gemm.h's run-time layout
// serves the three as well, but it ran the H200's matmul at half this kernel's speed, 87 against 40 us at 77x1024x1024:
// the baseline stays the plain loop.)
#include "common.h"

__kernel void matmul_naive(__global const DATA *a, __global const DATA *b, __global DATA *c,
                           const int M, const int N, const int K)
{
    const int n = get_global_id(0);
    const int m = get_global_id(1);
    if (m >= M || n >= N) return;
    const __global DATA *arow = a + (long)m * K;
    REAL acc = 0;
    for (int k = 0; k < K; ++k) acc += LOAD(arow, k) * LOAD(b, (long)k * N + n);
    STORE(c, (long)m * N + n, acc);
}

__kernel void batched_matmul_naive(__global const DATA *a, __global const DATA *b, __global DATA *c,
                                   const int M, const int N, const int K)
{
    const int n = get_global_id(0);
    const int m = get_global_id(1);
    const long i = get_global_id(2);
    if (m >= M || n >= N) return;
    const __global DATA *arow = a + (i * M + m) * K;
    const __global DATA *bmat = b + i * K * N;
    REAL acc = 0;
    for (int k = 0; k < K; ++k) acc += LOAD(arow, k) * LOAD(bmat, (long)k * N + n);
    STORE(c, (i * M + m) * N + n, acc);
}

__kernel void linear_naive(__global const DATA *x, __global const DATA *w, __global const DATA *bias,
                           __global const DATA *res, __global DATA *y, const int R, const int IN, const int OUT,
                           const int has_bias, const int has_res)
{
    const int o = get_global_id(0);
    const int r = get_global_id(1);
    if (r >= R || o >= OUT) return;
    const __global DATA *xrow = x + (long)r * IN;
    const __global DATA *wrow = w + (long)o * IN;
    REAL acc = 0;
    for (int i = 0; i < IN; ++i) acc += LOAD(xrow, i) * LOAD(wrow, i);
    if (has_bias) acc += LOAD(bias, o);
    if (has_res) acc += LOAD(res, (long)r * OUT + o);
    STORE(y, (long)r * OUT + o, acc);
}
