// matmul: C (M, N) = A (M, K) @ B (K, N), all row-major:
//   A[m, k] = a[m*K + k],  B[k, n] = b[k*N + n],  C[m, n] = c[m*N + n].
// naive: one work-item per C element; the NDRange (N, M) is rounded up by the host, the tail returns early.
// REAL (float or double) comes from the build options; REAL_IS_DOUBLE enables fp64.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void matmul_naive(__global const REAL *a, __global const REAL *b, __global REAL *c,
                           const int M, const int N, const int K)
{
    const int n = get_global_id(0);
    const int m = get_global_id(1);
    if (m >= M || n >= N) return;
    const __global REAL *arow = a + (long)m * K;
    REAL acc = 0;
    for (int k = 0; k < K; ++k) acc += arow[k] * b[(long)k * N + n];
    c[(long)m * N + n] = acc;
}
