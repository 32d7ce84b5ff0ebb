// gemm/gemm.h: what the GEMM kernels share (gemm/tiled.cl, tiled_reg.cl, cpu_reg.cl, mma_tf32.cl): the layout, the
// arguments, the batch offsets, the epilogue and the operand reads. Needs common.h before it.
// The kernels serve matmul, batched_matmul and linear (and any op that reduces to a product: attention's Q K^T and
// P V, a 1x1 convolution). Entry points are named by technique: gemm_tiled, gemm_tiled_reg, gemm_cpu_reg,
// gemm_mma_tf32, one file each (the naive kernels, gemm/naive.cl, have their own). All take the same arguments
// (GEMM_ARGS) and compute, for every batch item z < Z (the NDRange's third dimension):
//
//     C_z[m, n] = alpha * sum_k A_z[m, k] * B_z[k, n]  (+ bias) (+ R_z[m, n])          m < M, n < N, k < K
//
// on row-major operands with leading dimensions lda, ldb, ldc, each batch item at an element offset
//     off_X(z) = (z / ZI) * sX_outer + (z % ZI) * sX_inner                X = a, b, c
// (two levels, so that the heads of a (B, L, H*D) activation are batch items: ZI = H, outer L*H*D, inner D):
//     A_z[m, k] = a[off_a(z) + m*lda + k]
//     B_z[k, n] = b[off_b(z) + k*ldb + n]      matmul, batched_matmul, P @ V
//     B_z[k, n] = b[off_b(z) + n*ldb + k]      with GEMM_TRANS_B: linear's weight (N, K), Q @ K^T
//     C_z[m, n] = c[off_c(z) + m*ldc + n]
//     R_z[m, n] = res[off_c(z) + m*ldc + n]    with GEMM_RES: a residual added in the epilogue (C's layout), which
//                                              saves the separate add kernel after a linear or a convolution
//
// The layout is a run-time argument, so that one build of a kernel serves every op:
//     flags = [GEMM_TRANS_B] | [GEMM_BIAS_N or GEMM_BIAS_M] | [GEMM_VEC_OK] | [GEMM_RES] | [GEMM_VEC8_OK]
// Branches on flags are uniform (the same for every work-item) and outside the k loops, except in gemm_cpu_reg,
// which takes one of two loop nests per work-item.
// Every kernel accepts any M, N >= 1 and K >= 0 (tails: see each kernel). Products accumulate with fma() in REAL
// (float or double, from the build options; gemm_mma_tf32: float only); alpha * acc is exact for alpha = 1.
// Half storage (-D A_HALF / B_HALF, structural, set by the host; read by every kernel but gemm_mma_tf32): that
// operand is a half array, read with vload_half (no cl_khr_fp16 needed) and widened to REAL before any arithmetic;
// products accumulate in REAL as above, and C and the bias stay REAL. A weight (or a lowered activation) so stored
// takes half the memory and half the bandwidth; its values are rounded to half once, when written (vstore_half,
// round to nearest).
// The float16 dtype (-DDATA_HALF, common.h; read by gemm_cpu_reg, gemm_tiled_reg and gemm_mma_f16): every array is
// half: A and B as with A_HALF and B_HALF (whether or not those are set), the bias, the residual and C of type DATA,
// read with LOAD and written with STORE (C rounded to half once, from the REAL result of the epilogue). Without
// DATA_HALF, DATA is REAL and every line below reads as it did.

#define GEMM_TRANS_B 1 // B is stored transposed: (N, K) row-major
#define GEMM_BIAS_N 2  // + bias[n] (linear)
#define GEMM_BIAS_M 4  // + bias[m] (a 1x1 convolution's per-output-channel bias)
#define GEMM_VEC_OK 8  // lda, ldb, ldc and every batch offset are multiples of 4 elements: rows start REAL4-aligned
#define GEMM_RES 16    // + res[m, n] (a residual in C's layout)
#define GEMM_VEC8_OK 32 // lda, ldb and A's and B's batch offsets are multiples of 8 elements (rows of A and B start
                        // 16-byte aligned in half: gemm/mma_f16.cl's cp.async)

// Element and vector reads of the operands, X = A or B: LD_X(p, i) = X[i]; LDN_X(n, p, i) = X[i .. i+n) as a REALn
// (p + i need only be element-aligned); LD4A_X(p, i) = X[i .. i+4) as a REAL4 where p + i is 4-element aligned.
#define LDN_REAL(n, p, i) CAT(vload, n)(0, (p) + (i))
#define LDN_HALF(n, p, i) CAT(convert_, CAT(REAL, n))(CAT(vload_half, n)(0, (p) + (i)))
#define LD4A_REAL(p, i) (*(const __global REAL4 *)((p) + (i)))
#define LD4A_HALF(p, i) CAT(convert_, REAL4)(vloada_half4(0, (p) + (i)))
#if defined(A_HALF) || defined(DATA_HALF)
#define A_T half
#define LD_A(p, i) ((REAL)vload_half(0, (p) + (i)))
#define LDN_A LDN_HALF
#define LD4A_A LD4A_HALF
#else
#define A_T REAL
#define LD_A(p, i) ((p)[i])
#define LDN_A LDN_REAL
#define LD4A_A LD4A_REAL
#endif
#if defined(B_HALF) || defined(DATA_HALF)
#define B_T half
#define LD_B(p, i) ((REAL)vload_half(0, (p) + (i)))
#define LDN_B LDN_HALF
#define LD4A_B LD4A_HALF
#else
#define B_T REAL
#define LD_B(p, i) ((p)[i])
#define LDN_B LDN_REAL
#define LD4A_B LD4A_REAL
#endif
// Vector reads and writes of the DATA arrays (bias, residual, C), n of REAL: LDN_D(n, p, i) = p[i .. i+n);
// STN_D(n, v, p, i): p[i .. i+n) = v (element alignment suffices); ST4A_D(v, p, i): the same for n = 4 where p + i is
// 4-element aligned (half: rounded to nearest even, vstore_half_rte).
#ifdef DATA_HALF
#define LDN_D(n, p, i) CAT(vload_half, n)(0, (p) + (i))
#define STN_D(n, v, p, i) CAT(CAT(vstore_half, n), _rte)((v), 0, (p) + (i))
#define ST4A_D(v, p, i) vstorea_half4_rte((v), 0, (p) + (i))
#else
#define LDN_D(n, p, i) CAT(vload, n)(0, (p) + (i))
#define STN_D(n, v, p, i) CAT(vstore, n)((v), 0, (p) + (i))
#define ST4A_D(v, p, i) (*(__global REAL4 *)((p) + (i)) = (v))
#endif

#define GEMM_ARGS                                                                                               \
    const __global A_T *restrict a, const __global B_T *restrict b, const __global DATA *restrict bias,         \
    const __global DATA *restrict res, __global DATA *restrict c, const int M, const int N, const int K,        \
    const int lda, const int ldb, const int ldc, const int ZI, const long sa_outer, const long sa_inner,        \
    const long sb_outer, const long sb_inner, const long sc_outer, const long sc_inner, const REAL alpha,       \
    const int flags

// Move a, b, c and res to batch item z.
#define GEMM_BATCH(z)                                                                                           \
    a += ((z) / ZI) * sa_outer + ((z) % ZI) * sa_inner;                                                         \
    b += ((z) / ZI) * sb_outer + ((z) % ZI) * sb_inner;                                                         \
    c += ((z) / ZI) * sc_outer + ((z) % ZI) * sc_inner;                                                         \
    res += ((z) / ZI) * sc_outer + ((z) % ZI) * sc_inner

// The value stored at C[m, n] for an accumulated dot product, added to in the order of the reference: (alpha * acc
// + bias) + residual, in REAL (the caller STOREs it: the only rounding to half of the float16 dtype).
inline REAL epilogue(const REAL acc, const REAL alpha, const __global DATA *bias, const __global DATA *res,
                     const int flags, const int ldc, const int m, const int n)
{
    REAL v = alpha * acc;
    if (flags & GEMM_BIAS_N)
        v += LOAD(bias, n);
    else if (flags & GEMM_BIAS_M)
        v += LOAD(bias, m);
    if (flags & GEMM_RES)
        v += LOAD(res, (long)m * ldc + n);
    return v;
}
// epilogue() inside a GEMM kernel (its GEMM_ARGS in scope).
#define EPILOGUE(acc, m, n) epilogue((acc), alpha, bias, res, flags, ldc, (m), (n))
