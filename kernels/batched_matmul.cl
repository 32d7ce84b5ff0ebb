// batched_matmul: C[i] (M, N) = A[i] (M, K) @ B[i] (K, N) for i < batch, all row-major and packed:
//   A[i, m, k] = a[(i*M + m)*K + k],  B[i, k, n] = b[(i*K + k)*N + n],  C[i, m, n] = c[(i*M + m)*N + n].
// naive: one work-item per C element; NDRange (N, M, batch), N and M rounded up by the host, tails return early.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void batched_matmul_naive(__global const REAL *a, __global const REAL *b, __global REAL *c,
                                   const int M, const int N, const int K)
{
    const int n = get_global_id(0);
    const int m = get_global_id(1);
    const long i = get_global_id(2);
    if (m >= M || n >= N) return;
    const __global REAL *arow = a + (i * M + m) * K;
    const __global REAL *bmat = b + i * K * N;
    REAL acc = 0;
    for (int k = 0; k < K; ++k) acc += arow[k] * bmat[(long)k * N + n];
    c[(i * M + m) * N + n] = acc;
}
