// attention, gemm variant: the scores S = Q K^T of every head come from the GEMM, packed (B*H, Lq, Lk):
//   S[bh, i, j] = S[(bh*Lq + i)*Lk + j].
// attention_gemm_scale_mask scales them in place, S = S * scale, and sets -inf where a causal mask hides the key
// (j > i), before the softmax. One work-item per element over the flat index, NDRange rounded up by the host.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif

__kernel void attention_gemm_scale_mask(__global REAL *S, const long n, const int Lq, const int Lk, const REAL scale,
                                        const int causal)
{
    const long idx = get_global_id(0);
    if (idx >= n) return;
    const int j = idx % Lk;
    const int i = (idx / Lk) % Lq;
    S[idx] = causal && j > i ? -INFINITY : S[idx] * scale;
}
