// gemm: the GEMM kernels shared by matmul, batched_matmul and linear (and by any op that reduces to a product:
// attention's Q K^T and P V, a 1x1 convolution). Entry points are named by technique: gemm_tiled,
// gemm_tiled_reg, gemm_cpu_reg, gemm_mma_tf32. All take the same arguments (GEMM_ARGS) and compute, for every
// batch item z < Z (the NDRange's third dimension):
//
//     C_z[m, n] = alpha * sum_k A_z[m, k] * B_z[k, n]  (+ bias)          m < M, n < N, k < K
//
// on row-major operands with leading dimensions lda, ldb, ldc, each batch item at an element offset
//     off_X(z) = (z / ZI) * sX_outer + (z % ZI) * sX_inner                X = a, b, c
// (two levels, so that the heads of a (B, L, H*D) activation are batch items: ZI = H, outer L*H*D, inner D):
//     A_z[m, k] = a[off_a(z) + m*lda + k]
//     B_z[k, n] = b[off_b(z) + k*ldb + n]      matmul, batched_matmul, P @ V
//     B_z[k, n] = b[off_b(z) + n*ldb + k]      with GEMM_TRANS_B: linear's weight (N, K), Q @ K^T
//     C_z[m, n] = c[off_c(z) + m*ldc + n]
//
// The layout is a run-time argument, so that one build of a kernel serves every op:
//     flags = [GEMM_TRANS_B] | [GEMM_BIAS_N or GEMM_BIAS_M] | [GEMM_VEC_OK]
// Branches on flags are uniform (the same for every work-item) and outside the k loops, except in gemm_cpu_reg,
// which takes one of two loop nests per work-item.
// Every kernel accepts any M, N >= 1 and K >= 0 (tails: see each kernel). Products accumulate with fma() in REAL
// (float or double, from the build options; gemm_mma_tf32: float only); alpha * acc is exact for alpha = 1.
// Half storage (A_HALF / B_HALF, for gemm_tiled, gemm_tiled_reg and gemm_cpu_reg): that operand is a half array,
// read with vload_half (no cl_khr_fp16 needed) and widened to REAL before any arithmetic; products accumulate in
// REAL as above, and C and the bias stay REAL. A weight (or a lowered activation) so stored takes half the memory
// and half the bandwidth; its values are rounded to half once, when written (vstore_half, round to nearest).
// Tuning knobs are -D macros, defined with their meaning above the kernel that reads them.
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef REAL
#define REAL float
#endif
#define GEMM_TRANS_B 1 // B is stored transposed: (N, K) row-major
#define GEMM_BIAS_N 2  // + bias[n] (linear)
#define GEMM_BIAS_M 4  // + bias[m] (a 1x1 convolution's per-output-channel bias)
#define GEMM_VEC_OK 8  // lda, ldb, ldc and every batch offset are multiples of 4 elements: rows start REAL4-aligned

#define CAT_(x, y) x##y
#define CAT(x, y) CAT_(x, y)
#define REAL4 CAT(REAL, 4)

// Element and vector reads of the operands, X = A or B: LD_X(p, i) = X[i]; LDN_X(n, p, i) = X[i .. i+n) as a REALn
// (p + i need only be element-aligned); LD4A_X(p, i) = X[i .. i+4) as a REAL4 where p + i is 4-element aligned.
#define LDN_REAL(n, p, i) CAT(vload, n)(0, (p) + (i))
#define LDN_HALF(n, p, i) CAT(convert_, CAT(REAL, n))(CAT(vload_half, n)(0, (p) + (i)))
#define LD4A_REAL(p, i) (*(const __global REAL4 *)((p) + (i)))
#define LD4A_HALF(p, i) CAT(convert_, REAL4)(vloada_half4(0, (p) + (i)))
#ifdef A_HALF
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
#ifdef B_HALF
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

#define GEMM_ARGS                                                                                               \
    const __global A_T *restrict a, const __global B_T *restrict b, const __global REAL *restrict bias,         \
    __global REAL *restrict c, const int M, const int N, const int K, const int lda, const int ldb,             \
    const int ldc, const int ZI, const long sa_outer, const long sa_inner, const long sb_outer,                 \
    const long sb_inner, const long sc_outer, const long sc_inner, const REAL alpha, const int flags

// Move a, b, c to batch item z.
#define GEMM_BATCH(z)                                                                                           \
    a += ((z) / ZI) * sa_outer + ((z) % ZI) * sa_inner;                                                         \
    b += ((z) / ZI) * sb_outer + ((z) % ZI) * sb_inner;                                                         \
    c += ((z) / ZI) * sc_outer + ((z) % ZI) * sc_inner

// The value stored at C[m, n] for an accumulated dot product.
inline REAL epilogue(const REAL acc, const REAL alpha, const __global REAL *bias, const int flags, const int m,
                     const int n)
{
    REAL v = alpha * acc;
    if (flags & GEMM_BIAS_N)
        v += bias[n];
    else if (flags & GEMM_BIAS_M)
        v += bias[m];
    return v;
}


// =============================================================================================== gemm_tiled
// Local-memory tiling: a TS x TS work-group computes a TS x TS tile of C, one element per work-item, staging
// TS x TS tiles of A and B in local memory per step of TS along k. Tails: bounds checks; out-of-range tile
// elements are staged as 0 and out-of-range C elements are not stored. NDRange (ceil(N/TS)*TS, ceil(M/TS)*TS, Z).
#ifndef TS
#define TS 16 // tile edge: work-group TS x TS, local memory 2*TS*TS REAL (e.g. 8, 16, 32)
#endif

__kernel __attribute__((reqd_work_group_size(TS, TS, 1)))
void gemm_tiled(GEMM_ARGS)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int n0 = get_group_id(0) * TS, m0 = get_group_id(1) * TS;
    const int n = n0 + tx, m = m0 + ty;
    GEMM_BATCH(get_global_id(2));
    const bool trans_b = flags & GEMM_TRANS_B;
    __local REAL As[TS][TS];  // As[i][kk] = A[m0 + i, k0 + kk]
    __local REAL Bs[TS][TS];  // Bs[kk][j] = B[k0 + kk, n0 + j]
    REAL acc = 0;
    for (int k0 = 0; k0 < K; k0 += TS) {
        As[ty][tx] = (m < M && k0 + tx < K) ? LD_A(a, (long)m * lda + k0 + tx) : 0;
        if (trans_b)  // work-item (tx, ty) reads B[k0 + tx, n0 + ty]: neighbours in tx read neighbouring addresses
            Bs[tx][ty] = (n0 + ty < N && k0 + tx < K) ? LD_B(b, (long)(n0 + ty) * ldb + k0 + tx) : 0;
        else
            Bs[ty][tx] = (k0 + ty < K && n < N) ? LD_B(b, (long)(k0 + ty) * ldb + n) : 0;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TS; ++kk)
            acc = fma(As[ty][kk], Bs[kk][tx], acc);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (m < M && n < N)
        c[(long)m * ldc + n] = epilogue(acc, alpha, bias, flags, m, n);
}


// =========================================================================================== gemm_tiled_reg
// GPU-style register blocking. A work-group of NDIMC x MDIMC work-items computes an MWG x NWG tile of C; each
// work-item holds MWI x NWI accumulators (e.g. 8 x 8) in registers. Per step of KWG along k, the work-group stages
// the MWG x KWG tile of A and the KWG x NWG tile of B in local memory, both k-major:
//     Al[kk*MWG + i] = A[m0 + i, k0 + kk],   Bl[kk*NWG + j] = B[k0 + kk, n0 + j]
// (A, and B with GEMM_TRANS_B, are read from global memory along k and written transposed; B otherwise is copied
// as is). A work-item's rows are runs of VWM consecutive rows, the runs MDIMC*VWM apart, and its columns likewise:
//     m = m0 + (i / VWM) * (MDIMC*VWM) + ty*VWM + i % VWM,   n = n0 + (j / VWN) * (NDIMC*VWN) + tx*VWN + j % VWN
// so each run is one vector read from local memory, neighbouring work-items read neighbouring vectors, and the
// C stores of neighbouring work-items are contiguous.
// Tails: bounds checks, no host-side padding. A tile wholly inside A (or B) is staged with REAL4 global loads when
// GEMM_VEC_OK; a tile crossing an edge is staged element by element with 0 outside; C elements outside (M, N) are
// not stored. NDRange (ceil(N/NWG)*NDIMC, ceil(M/MWG)*MDIMC, Z), work-group (NDIMC, MDIMC, 1).
#ifndef MWG
#define MWG 64    // rows of C per work-group (e.g. 64, 128)
#endif
#ifndef NWG
#define NWG 64    // columns of C per work-group (e.g. 64, 128)
#endif
#ifndef KWG
#define KWG 16    // depth of the staged tiles along k, a multiple of 4 (e.g. 8, 16, 32)
#endif
#ifndef MDIMC
#define MDIMC 8   // work-items along M per work-group (local size in dimension 1)
#endif
#ifndef NDIMC
#define NDIMC 8   // work-items along N per work-group (local size in dimension 0)
#endif
#ifndef VWM
#define VWM 4     // a work-item's rows come in runs of VWM (1, 2 or 4): one local-memory vector read per run
#endif
#ifndef VWN
#define VWN 4     // a work-item's columns come in runs of VWN (1, 2 or 4): one local read, one C store per run
#endif
#define MWI (MWG / MDIMC)   // rows of C per work-item
#define NWI (NWG / NDIMC)   // columns of C per work-item
#define WGS (MDIMC * NDIMC) // work-items per work-group
#if defined(A_HALF) || defined(B_HALF)
#define PREFETCH 0          // half storage: tiles staged as they come, in k runs (see DEFINE_STAGE_KMAJOR)
#define K_RUNS 1
#else
#define PREFETCH 1          // register prefetch of the next whole tile (gemm_tiled_reg below)
#define K_RUNS 0
#endif
#define PF_A ((MWG * (KWG / 4) + WGS - 1) / WGS)   // REAL4 registers per work-item for a prefetched A tile
#define PF_B ((NWG * (KWG / 4) + WGS - 1) / WGS)   // and for B

#if VWM == 1
#define REALVM REAL
#define UNPACK_M(dst, v) dst[0] = (v)
#elif VWM == 2
#define REALVM CAT(REAL, 2)
#define UNPACK_M(dst, v) dst[0] = (v).s0; dst[1] = (v).s1
#else
#define REALVM REAL4
#define UNPACK_M(dst, v) dst[0] = (v).s0; dst[1] = (v).s1; dst[2] = (v).s2; dst[3] = (v).s3
#endif
#if VWN == 1
#define REALVN REAL
#define UNPACK_N(dst, v) dst[0] = (v)
#elif VWN == 2
#define REALVN CAT(REAL, 2)
#define UNPACK_N(dst, v) dst[0] = (v).s0; dst[1] = (v).s1
#else
#define REALVN REAL4
#define UNPACK_N(dst, v) dst[0] = (v).s0; dst[1] = (v).s1; dst[2] = (v).s2; dst[3] = (v).s3
#endif

// Stage the ROWS x KWG tile at src (row-major, k contiguous, leading dimension ld) into dst transposed:
// dst[kk*ROWS + r] = src[r*ld + kk], 0 where r >= rows_left or kk >= k_left. Defined once per operand (its element
// type T and reads LD, LD4A: REAL or half storage). A whole tile goes in 4-element reads along k. With prefetch
// (K_RUNS 0), element e of the work-group's loop is row e % ROWS, k offset (e / ROWS) * 4: neighbouring work-items
// store to neighbouring local addresses (with rows e / (KWG/4), a warp's transposing stores fell in one bank, KWG/4
// ways). The half-storage kernels (K_RUNS 1, no prefetch) take row e / (KWG/4), k offset (e % (KWG/4)) * 4:
// neighbouring work-items read one row's contiguous runs, which the other order scatters over 32 rows, and without
// the prefetch nothing hides that (half-storage UNet step on the H200: 148 ms this way, as before the prefetch
// came (137 .. 152 ms over three runs), 179 ms the other).
// The row and the k offset of a whole tile's element e (a 4-element read along k), in the order above.
#define KMAJOR_ROW(e, ROWS) (K_RUNS ? (e) / (KWG / 4) : (e) % (ROWS))
#define KMAJOR_K(e, ROWS) ((K_RUNS ? (e) % (KWG / 4) : (e) / (ROWS)) * 4)

// dst[(kk + i)*ROWS + r] = v.si: four consecutive k of row r, stored k-major.
inline void store_kmajor4(__local REAL *dst, const int ROWS, const int r, const int kk, const REAL4 v)
{
    dst[(kk + 0) * ROWS + r] = v.s0;
    dst[(kk + 1) * ROWS + r] = v.s1;
    dst[(kk + 2) * ROWS + r] = v.s2;
    dst[(kk + 3) * ROWS + r] = v.s3;
}

#define DEFINE_STAGE_KMAJOR(NAME, T, LD, LD4A)                                                                 \
inline void NAME(__local REAL *dst, const __global T *src, const int ld, const int ROWS, const int rows_left,  \
                 const int k_left, const bool vec, const int tid)                                              \
{                                                                                                               \
    if (vec && rows_left >= ROWS && k_left >= KWG) {                                                            \
        for (int e = tid; e < ROWS * (KWG / 4); e += WGS) {                                                     \
            const int r = KMAJOR_ROW(e, ROWS), kk = KMAJOR_K(e, ROWS);                                          \
            store_kmajor4(dst, ROWS, r, kk, LD4A(src, (long)r * ld + kk));                                      \
        }                                                                                                       \
    } else {                                                                                                    \
        for (int e = tid; e < ROWS * KWG; e += WGS) {                                                           \
            const int r = e / KWG, kk = e % KWG;                                                                \
            dst[kk * ROWS + r] = (r < rows_left && kk < k_left) ? LD(src, (long)r * ld + kk) : 0;               \
        }                                                                                                       \
    }                                                                                                           \
}
DEFINE_STAGE_KMAJOR(stage_a_kmajor, A_T, LD_A, LD4A_A)
DEFINE_STAGE_KMAJOR(stage_b_kmajor, B_T, LD_B, LD4A_B)

// Stage the KWG x COLS tile of B at src (row-major, n contiguous) into dst as is: dst[kk*COLS + j] = src[kk*ld + j],
// 0 where kk >= k_left or j >= cols_left.
inline void stage_b_nmajor(__local REAL *dst, const __global B_T *src, const int ld, const int COLS,
                           const int cols_left, const int k_left, const bool vec, const int tid)
{
    if (vec && cols_left >= COLS && k_left >= KWG) {
        for (int e = tid; e < KWG * (COLS / 4); e += WGS) {
            const int kk = e / (COLS / 4), j = (e % (COLS / 4)) * 4;
            *(__local REAL4 *)(dst + kk * COLS + j) = LD4A_B(src, (long)kk * ld + j);
        }
    } else {
        for (int e = tid; e < KWG * COLS; e += WGS) {
            const int kk = e / COLS, j = e % COLS;
            dst[kk * COLS + j] = (kk < k_left && j < cols_left) ? LD_B(src, (long)kk * ld + j) : 0;
        }
    }
}

__kernel __attribute__((reqd_work_group_size(NDIMC, MDIMC, 1)))
void gemm_tiled_reg(GEMM_ARGS)
{
    const int tx = get_local_id(0), ty = get_local_id(1), tid = ty * NDIMC + tx;
    const int n0 = get_group_id(0) * NWG, m0 = get_group_id(1) * MWG;
    GEMM_BATCH(get_global_id(2));
    const bool vec = flags & GEMM_VEC_OK;
    // Declared as REAL4 so that the REAL4, REALVM and REALVN accesses below are aligned.
    __local REAL4 Al4[KWG * MWG / 4];
    __local REAL4 Bl4[KWG * NWG / 4];
    __local REAL *Al = (__local REAL *)Al4;
    __local REAL *Bl = (__local REAL *)Bl4;

    REAL acc[MWI][NWI];
#pragma unroll
    for (int i = 0; i < MWI; ++i)
#pragma unroll
        for (int j = 0; j < NWI; ++j)
            acc[i][j] = 0;

    const bool trans_b = flags & GEMM_TRANS_B;
    // Tiles wholly inside A and B (and rows REAL4-aligned) are prefetched: their REAL4 reads for step k0 + KWG are
    // issued into registers before step k0's products and stored to local memory after them, so the global
    // latency hides behind the fma of the same work-item. Other tiles are staged as they come (edges, tails).
    const bool rows_in = vec && m0 + MWG <= M && n0 + NWG <= N;
    stage_a_kmajor(Al, a + (long)m0 * lda, lda, MWG, M - m0, K, vec, tid);
    if (trans_b)
        stage_b_kmajor(Bl, b + (long)n0 * ldb, ldb, NWG, N - n0, K, vec, tid);
    else
        stage_b_nmajor(Bl, b + n0, ldb, NWG, N - n0, K, vec, tid);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k0 = 0; k0 < K; k0 += KWG) {
        const int k1 = k0 + KWG;
        const bool prefetch = PREFETCH && rows_in && K - k1 >= KWG;
        REAL4 ra[PF_A], rb[PF_B];
        if (prefetch) {
#pragma unroll
            for (int p = 0; p < PF_A; ++p) {
                const int e = tid + p * WGS;
                if (e < MWG * (KWG / 4))
                    ra[p] = LD4A_A(a, (long)(m0 + KMAJOR_ROW(e, MWG)) * lda + k1 + KMAJOR_K(e, MWG));
            }
#pragma unroll
            for (int p = 0; p < PF_B; ++p) {
                const int e = tid + p * WGS;
                if (e < NWG * (KWG / 4))
                    rb[p] = trans_b ? LD4A_B(b, (long)(n0 + KMAJOR_ROW(e, NWG)) * ldb + k1 + KMAJOR_K(e, NWG))
                                    : LD4A_B(b, (long)(k1 + e / (NWG / 4)) * ldb + n0 + (e % (NWG / 4)) * 4);
            }
        }
#pragma unroll
        for (int kk = 0; kk < KWG; ++kk) {
            REAL ar[MWI], br[NWI];
#pragma unroll
            for (int ri = 0; ri < MWI / VWM; ++ri) {
                const REALVM v = ((__local REALVM *)Al)[kk * (MWG / VWM) + ri * MDIMC + ty];
                UNPACK_M((ar + ri * VWM), v);
            }
#pragma unroll
            for (int rj = 0; rj < NWI / VWN; ++rj) {
                const REALVN v = ((__local REALVN *)Bl)[kk * (NWG / VWN) + rj * NDIMC + tx];
                UNPACK_N((br + rj * VWN), v);
            }
#pragma unroll
            for (int i = 0; i < MWI; ++i)
#pragma unroll
                for (int j = 0; j < NWI; ++j)
                    acc[i][j] = fma(ar[i], br[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k1 >= K)
            break;
        if (prefetch) {
#pragma unroll
            for (int p = 0; p < PF_A; ++p) {
                const int e = tid + p * WGS;
                if (e < MWG * (KWG / 4))
                    store_kmajor4(Al, MWG, KMAJOR_ROW(e, MWG), KMAJOR_K(e, MWG), ra[p]);
            }
#pragma unroll
            for (int p = 0; p < PF_B; ++p) {
                const int e = tid + p * WGS;
                if (e >= NWG * (KWG / 4))
                    continue;
                if (trans_b) {
                    store_kmajor4(Bl, NWG, KMAJOR_ROW(e, NWG), KMAJOR_K(e, NWG), rb[p]);
                } else {
                    Bl4[e] = rb[p];    // kk * NWG + j with kk = e / (NWG/4), j = (e % (NWG/4)) * 4
                }
            }
        } else {
            stage_a_kmajor(Al, a + (long)m0 * lda + k1, lda, MWG, M - m0, K - k1, vec, tid);
            if (trans_b)
                stage_b_kmajor(Bl, b + (long)n0 * ldb + k1, ldb, NWG, N - n0, K - k1, vec, tid);
            else
                stage_b_nmajor(Bl, b + (long)k1 * ldb + n0, ldb, NWG, N - n0, K - k1, vec, tid);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    const bool full = rows_in;
#pragma unroll
    for (int i = 0; i < MWI; ++i) {
        const int m = m0 + (i / VWM) * (MDIMC * VWM) + ty * VWM + i % VWM;
#pragma unroll
        for (int rj = 0; rj < NWI / VWN; ++rj) {
            const int n = n0 + rj * (NDIMC * VWN) + tx * VWN;
#if VWN == 4
            if (full) {   // n is a multiple of 4 and ldc too: one aligned REAL4 store
                *(__global REAL4 *)(c + (long)m * ldc + n) =
                    (REAL4)(epilogue(acc[i][rj * 4 + 0], alpha, bias, flags, m, n + 0),
                            epilogue(acc[i][rj * 4 + 1], alpha, bias, flags, m, n + 1),
                            epilogue(acc[i][rj * 4 + 2], alpha, bias, flags, m, n + 2),
                            epilogue(acc[i][rj * 4 + 3], alpha, bias, flags, m, n + 3));
                continue;
            }
#endif
#pragma unroll
            for (int jv = 0; jv < VWN; ++jv)
                if (m < M && n + jv < N)
                    c[(long)m * ldc + n + jv] = epilogue(acc[i][rj * VWN + jv], alpha, bias, flags, m, n + jv);
        }
    }
}


// ============================================================================================= gemm_cpu_reg
// CPU-style (PoCL): no local memory, no barriers. Each work-item computes an MR x NR block of C in registers,
// streaming along k; the work-group size is the driver's choice. NDRange (ceil(N/NR), ceil(M/MR), Z).
//  B (K, N): the NR columns are one REALNR vector: per k, one vector load of B's row segment and MR fma with
//            A's elements broadcast (an AVX-512 fma with a broadcast memory operand each).
//  B^T (N, K) (GEMM_TRANS_B): B's rows are contiguous along k, so each of the MR x NR outputs is a dot product
//            vectorised along k in REALKV vectors (MR + NR vector loads per MR*NR vector fma), its lanes summed at
//            the end.
// Tails, with no branch in the k loop: rows of A (and of B^T) past M (N) are clamped to the last one and their
// results are not stored; with B (K, N) the last column block slides left to end at N (when N >= NR) and stores
// only the columns it owns, and N < NR takes a scalar path. The k remainder (K % KU, K % KV) runs scalar.
#ifndef MR
#define MR 8      // rows of C per work-item
#endif
#ifndef NR
#define NR 16     // columns of C per work-item; with B (K, N) also the vector width (4, 8 or 16)
#endif
#ifndef KU
#define KU 4      // B (K, N): the k loop unrolled KU times
#endif
#ifndef KV
#define KV 16     // B^T (N, K): the vector width along k (4, 8 or 16)
#endif

#if NR == 4 || NR == 8 || NR == 16
#define REALNR CAT(REAL, NR)
#else
#define NR_NOT_A_VECTOR // B (K, N) then runs scalar: NR in 4, 8, 16 is the vector path
#endif
#define REALKV CAT(REAL, KV)

// The sum of a vector's lanes, as a tree: lane i + lane i + KV/2, and so on. Written with named lanes, not .lo/.hi:
// Oclgrind's uninitialized-value checker takes unoptimized .lo/.hi shuffles for reads of undefined lanes.
inline REAL hsum4(const REAL4 v) { return (v.s0 + v.s2) + (v.s1 + v.s3); }
inline REAL hsum8(const CAT(REAL, 8) v) { return hsum4((REAL4)(v.s0 + v.s4, v.s1 + v.s5, v.s2 + v.s6, v.s3 + v.s7)); }
inline REAL hsum16(const CAT(REAL, 16) v)
{
    return hsum8((CAT(REAL, 8))(v.s0 + v.s8, v.s1 + v.s9, v.s2 + v.sa, v.s3 + v.sb,
                                v.s4 + v.sc, v.s5 + v.sd, v.s6 + v.se, v.s7 + v.sf));
}

// C rows m0 .. m0+MR of B (K, N) columns n0 .. n0+NR.
inline void cpu_reg_nn(const __global A_T *const ar[MR], const __global B_T *b, const __global REAL *bias,
                       __global REAL *c, const int M, const int N, const int K, const int ldb, const int ldc,
                       const REAL alpha, const int flags, const int m0, const int n0)
{
#ifdef NR_NOT_A_VECTOR
    const bool scalar = true;
#else
    const bool scalar = N < NR;      // narrower than one vector: one work-item computes all N columns
#endif
    if (scalar) {
        for (int r = 0; r < MR && m0 + r < M; ++r)
            for (int n = n0; n < min(n0 + NR, N); ++n) {
                REAL s = 0;
                for (int k = 0; k < K; ++k)
                    s = fma(LD_A(ar[r], k), LD_B(b, (long)k * ldb + n), s);
                c[(long)(m0 + r) * ldc + n] = epilogue(s, alpha, bias, flags, m0 + r, n);
            }
        return;
    }
#ifndef NR_NOT_A_VECTOR
    const int ns = min(n0, N - NR);    // the block's first column: the last block slides left to end at N
    const __global B_T *bp = b + ns;
    REALNR acc[MR];
#pragma unroll
    for (int r = 0; r < MR; ++r)
        acc[r] = 0;
    int k = 0;
    for (; k + KU <= K; k += KU) {
#pragma unroll
        for (int u = 0; u < KU; ++u) {
            const REALNR bv = LDN_B(NR, bp, (long)(k + u) * ldb);
#pragma unroll
            for (int r = 0; r < MR; ++r)
                acc[r] = fma((REALNR)(LD_A(ar[r], k + u)), bv, acc[r]);
        }
    }
    for (; k < K; ++k) {
        const REALNR bv = LDN_B(NR, bp, (long)k * ldb);
#pragma unroll
        for (int r = 0; r < MR; ++r)
            acc[r] = fma((REALNR)(LD_A(ar[r], k)), bv, acc[r]);
    }
    for (int r = 0; r < MR && m0 + r < M; ++r) {
        const int m = m0 + r;
        __global REAL *crow = c + (long)m * ldc;
        if (ns == n0) {
            REALNR v = (REALNR)(alpha) * acc[r];
            if (flags & GEMM_BIAS_N)
                v += CAT(vload, NR)(0, bias + n0);
            else if (flags & GEMM_BIAS_M)
                v += (REALNR)(bias[m]);
            CAT(vstore, NR)(v, 0, crow + n0);
        } else {
            REAL t[NR];
            CAT(vstore, NR)(acc[r], 0, t);
            for (int j = n0 - ns; j < NR; ++j)
                crow[ns + j] = epilogue(t[j], alpha, bias, flags, m, ns + j);
        }
    }
#endif
}

// C rows m0 .. m0+MR of B^T (N, K) rows n0 .. n0+NR.
inline void cpu_reg_nt(const __global A_T *const ar[MR], const __global B_T *b, const __global REAL *bias,
                       __global REAL *c, const int M, const int N, const int K, const int ldb, const int ldc,
                       const REAL alpha, const int flags, const int m0, const int n0)
{
    const __global B_T *br[NR];
    for (int j = 0; j < NR; ++j)
        br[j] = b + (long)min(n0 + j, N - 1) * ldb;
    REALKV acc[MR][NR];
#pragma unroll
    for (int r = 0; r < MR; ++r)
#pragma unroll
        for (int j = 0; j < NR; ++j)
            acc[r][j] = 0;
    int k = 0;
    for (; k + KV <= K; k += KV) {
        REALKV av[MR], bv[NR];
#pragma unroll
        for (int r = 0; r < MR; ++r)
            av[r] = LDN_A(KV, ar[r], k);
#pragma unroll
        for (int j = 0; j < NR; ++j)
            bv[j] = LDN_B(KV, br[j], k);
#pragma unroll
        for (int r = 0; r < MR; ++r)
#pragma unroll
            for (int j = 0; j < NR; ++j)
                acc[r][j] = fma(av[r], bv[j], acc[r][j]);
    }
    for (int r = 0; r < MR && m0 + r < M; ++r)
        for (int j = 0; j < NR && n0 + j < N; ++j) {
            REAL s = CAT(hsum, KV)(acc[r][j]);
            for (int kk = k; kk < K; ++kk)
                s = fma(LD_A(ar[r], kk), LD_B(br[j], kk), s);
            c[(long)(m0 + r) * ldc + n0 + j] = epilogue(s, alpha, bias, flags, m0 + r, n0 + j);
        }
}

__kernel void gemm_cpu_reg(GEMM_ARGS)
{
    const int n0 = get_global_id(0) * NR, m0 = get_global_id(1) * MR;
    GEMM_BATCH(get_global_id(2));
    if (m0 >= M || n0 >= N)
        return;
    const __global A_T *ar[MR];
    for (int r = 0; r < MR; ++r)
        ar[r] = a + (long)min(m0 + r, M - 1) * lda;
    if (flags & GEMM_TRANS_B)
        cpu_reg_nt(ar, b, bias, c, M, N, K, ldb, ldc, alpha, flags, m0, n0);
    else
        cpu_reg_nn(ar, b, bias, c, M, N, K, ldb, ldc, alpha, flags, m0, n0);
}


// ============================================================================================ gemm_mma_tf32
// NVIDIA tensor cores through inline PTX: mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (sm_80 or newer),
// float only; built only when the launcher defines GEMM_MMA (the PTX does not compile for other devices).
// A work-group of WARPS_N x WARPS_M warps (local size (32*WARPS_N, WARPS_M): a warp is 32 work-items of one
// local row) computes an MWG x NWG tile of C; each warp a WM x WN tile (WM = MWG/WARPS_M, WN = NWG/WARPS_N) as
// MI x NI mma tiles of 16 x 8. Per step of KWG along k the work-group stages, both k-contiguous,
//     As[i*LDS + kk] = A[m0 + i, k0 + kk],   Bs[j*LDS + kk] = B[k0 + kk, n0 + j],   LDS = KWG + 4
// (the row pitch KWG + 4 makes the fragment reads below hit 32 different banks). Fragments of one m16n8k8, with
// lane = 4*g + t (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32):
//     a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4];   b0 = B[t][g], b1 = B[t+4][g]
//     c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
// Precision: SPLIT 1 rounds A and B to TF32 (cvt.rna: 10 explicit mantissa bits, relative error <= 2^-11 per
// operand, ~2^-10 per product). SPLIT 3 ("3xTF32") writes x = hi + lo with hi = tf32(x), lo = tf32(x - hi) and
// sums lo*hi + hi*lo + hi*hi (the dropped lo*lo is ~2^-22 relative): float32-level products. The tensor cores'
// own accumulation is not IEEE round-to-nearest (it truncates), so each KWG step accumulates from zero in the
// mma and is then added to float32 accumulators with ordinary rounded adds.
// Tails: bounds checks while staging (0 outside) and on the stores. MMA_EMULATE 1 replaces the PTX by a
// work-group-synchronous emulation in OpenCL C (local memory, barriers), so that the fragment layouts, tiling and
// tails can be verified on any device; it is for tests, not speed.
// NDRange (ceil(N/NWG)*32*WARPS_N, ceil(M/MWG)*WARPS_M, Z).
// MWG, NWG and KWG are the knobs of gemm_tiled_reg above (KWG here: a multiple of 8).
#ifdef GEMM_MMA
#ifndef WARPS_M
#define WARPS_M 2     // warps along M per work-group
#endif
#ifndef WARPS_N
#define WARPS_N 2     // warps along N per work-group
#endif
#ifndef SPLIT
#define SPLIT 3       // 1: TF32 products; 3: 3xTF32 (float32-level accuracy, three mma per product tile)
#endif
#ifndef MMA_EMULATE
#define MMA_EMULATE 0 // 1: emulate mma.sync in OpenCL C (tests on devices without NVIDIA PTX)
#endif
#define WM (MWG / WARPS_M)        // rows of C per warp, a multiple of 16
#define WN (NWG / WARPS_N)        // columns of C per warp, a multiple of 8
#define MI (WM / 16)              // mma tiles along M per warp
#define NI (WN / 8)               // mma tiles along N per warp
#define MMA_WGS (32 * WARPS_M * WARPS_N)
#define LDS (KWG + 4)             // local row pitch: k-contiguous rows, padded against bank conflicts
#if MMA_EMULATE
#define MMA_UNROLL                // the emulation's barriers inside unrolled loops make PoCL's compile very slow
#else
#define MMA_UNROLL _Pragma("unroll")
#endif

// The TF32 bit pattern nearest to x (ties away from zero), as cvt.rna.tf32.f32.
inline uint to_tf32(const float x)
{
#if MMA_EMULATE
    const uint u = as_uint(x);
    return ((u & 0x7f800000u) == 0x7f800000u) ? u : ((u + 0x1000u) & 0xffffe000u);
#else
    uint r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#endif
}

#if MMA_EMULATE
// d += A (16x8) B (8x8) for the fragments the 32 lanes of one warp hold; every work-item of the work-group must
// call it together (it synchronizes with barriers). sa: 128 floats, sb: 64 floats, this warp's own.
inline void mma_m16n8k8(float d[4], const uint fa[4], const uint fb[2], __local float *sa, __local float *sb,
                        const int lane)
{
    const int g = lane >> 2, t = lane & 3;
    sa[g * 8 + t] = as_float(fa[0]);
    sa[(g + 8) * 8 + t] = as_float(fa[1]);
    sa[g * 8 + t + 4] = as_float(fa[2]);
    sa[(g + 8) * 8 + t + 4] = as_float(fa[3]);
    sb[t * 8 + g] = as_float(fb[0]);
    sb[(t + 4) * 8 + g] = as_float(fb[1]);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
        float s = d[i];
        for (int k = 0; k < 8; ++k)
            s = fma(sa[row * 8 + k], sb[k * 8 + col], s);
        d[i] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
#define MMA(d, fa, fb) mma_m16n8k8(d, fa, fb, emu_a + warp * 128, emu_b + warp * 64, lane)
#else
#define MMA(d, fa, fb)                                                                                          \
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "                                          \
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};"                          \
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                               \
                 : "r"(fa[0]), "r"(fa[1]), "r"(fa[2]), "r"(fa[3]), "r"(fb[0]), "r"(fb[1]),                      \
                   "f"(d[0]), "f"(d[1]), "f"(d[2]), "f"(d[3]))
#endif

// Stage ROWS x KWG of a k-contiguous matrix (A, or B^T) as is: dst[r*LDS + kk] = src[r*ld + kk], 0 outside.
inline void mma_stage_rows(__local float *dst, const __global float *src, const int ld, const int ROWS,
                           const int rows_left, const int k_left, const bool vec, const int tid)
{
    if (vec && rows_left >= ROWS && k_left >= KWG) {
        for (int e = tid; e < ROWS * (KWG / 4); e += MMA_WGS) {
            const int r = e / (KWG / 4), kk = (e % (KWG / 4)) * 4;
            *(__local float4 *)(dst + r * LDS + kk) = *(const __global float4 *)(src + (long)r * ld + kk);
        }
    } else {
        for (int e = tid; e < ROWS * KWG; e += MMA_WGS) {
            const int r = e / KWG, kk = e % KWG;
            dst[r * LDS + kk] = (r < rows_left && kk < k_left) ? src[(long)r * ld + kk] : 0.0f;
        }
    }
}

// Stage KWG x COLS of an n-contiguous B transposed: dst[j*LDS + kk] = src[kk*ld + j], 0 outside.
inline void mma_stage_cols(__local float *dst, const __global float *src, const int ld, const int COLS,
                           const int cols_left, const int k_left, const bool vec, const int tid)
{
    if (vec && cols_left >= COLS && k_left >= KWG) {
        for (int e = tid; e < KWG * (COLS / 4); e += MMA_WGS) {
            const int kk = e / (COLS / 4), j = (e % (COLS / 4)) * 4;
            const float4 v = *(const __global float4 *)(src + (long)kk * ld + j);
            dst[(j + 0) * LDS + kk] = v.s0;
            dst[(j + 1) * LDS + kk] = v.s1;
            dst[(j + 2) * LDS + kk] = v.s2;
            dst[(j + 3) * LDS + kk] = v.s3;
        }
    } else {
        for (int e = tid; e < KWG * COLS; e += MMA_WGS) {
            const int kk = e / COLS, j = e % COLS;
            dst[j * LDS + kk] = (kk < k_left && j < cols_left) ? src[(long)kk * ld + j] : 0.0f;
        }
    }
}

__kernel __attribute__((reqd_work_group_size(32 * WARPS_N, WARPS_M, 1)))
void gemm_mma_tf32(GEMM_ARGS)
{
    const int tid = get_local_id(1) * (32 * WARPS_N) + get_local_id(0);
    const int lane = get_local_id(0) % 32, warp = tid / 32;
    const int wn = get_local_id(0) / 32, wm = get_local_id(1);     // this warp's tile in the work-group's
    const int g = lane >> 2, t = lane & 3;
    const int n0 = get_group_id(0) * NWG, m0 = get_group_id(1) * MWG;
    GEMM_BATCH(get_global_id(2));
    const bool vec = flags & GEMM_VEC_OK;
    __local float4 As4[MWG * LDS / 4];
    __local float4 Bs4[NWG * LDS / 4];
    __local float *As = (__local float *)As4;
    __local float *Bs = (__local float *)Bs4;
#if MMA_EMULATE
    __local float emu_a[WARPS_M * WARPS_N * 128];
    __local float emu_b[WARPS_M * WARPS_N * 64];
#endif

    float acc[MI][NI][4];
MMA_UNROLL
    for (int i = 0; i < MI; ++i)
MMA_UNROLL
        for (int j = 0; j < NI; ++j)
MMA_UNROLL
            for (int q = 0; q < 4; ++q)
                acc[i][j][q] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += KWG) {
        mma_stage_rows(As, a + (long)m0 * lda + k0, lda, MWG, M - m0, K - k0, vec, tid);
        if (flags & GEMM_TRANS_B)
            mma_stage_rows(Bs, b + (long)n0 * ldb + k0, ldb, NWG, N - n0, K - k0, vec, tid);
        else
            mma_stage_cols(Bs, b + (long)k0 * ldb + n0, ldb, NWG, N - n0, K - k0, vec, tid);
        barrier(CLK_LOCAL_MEM_FENCE);

        float d[MI][NI][4];   // this step's sums, from zero (see "Precision" above)
MMA_UNROLL
        for (int i = 0; i < MI; ++i)
MMA_UNROLL
            for (int j = 0; j < NI; ++j)
MMA_UNROLL
                for (int q = 0; q < 4; ++q)
                    d[i][j][q] = 0.0f;
MMA_UNROLL
        for (int ks = 0; ks < KWG; ks += 8) {
            uint ahi[MI][4], bhi[NI][2];
#if SPLIT == 3
            uint alo[MI][4], blo[NI][2];
#endif
MMA_UNROLL
            for (int i = 0; i < MI; ++i) {
                const __local float *p = As + (wm * WM + i * 16 + g) * LDS + ks + t;
                const float x[4] = {p[0], p[8 * LDS], p[4], p[8 * LDS + 4]};
MMA_UNROLL
                for (int q = 0; q < 4; ++q) {
                    ahi[i][q] = to_tf32(x[q]);
#if SPLIT == 3
                    alo[i][q] = to_tf32(x[q] - as_float(ahi[i][q]));
#endif
                }
            }
MMA_UNROLL
            for (int j = 0; j < NI; ++j) {
                const __local float *p = Bs + (wn * WN + j * 8 + g) * LDS + ks + t;
                const float x[2] = {p[0], p[4]};
MMA_UNROLL
                for (int q = 0; q < 2; ++q) {
                    bhi[j][q] = to_tf32(x[q]);
#if SPLIT == 3
                    blo[j][q] = to_tf32(x[q] - as_float(bhi[j][q]));
#endif
                }
            }
MMA_UNROLL
            for (int i = 0; i < MI; ++i)
MMA_UNROLL
                for (int j = 0; j < NI; ++j) {
#if SPLIT == 3
                    MMA(d[i][j], alo[i], bhi[j]);
                    MMA(d[i][j], ahi[i], blo[j]);
#endif
                    MMA(d[i][j], ahi[i], bhi[j]);
                }
        }
MMA_UNROLL
        for (int i = 0; i < MI; ++i)
MMA_UNROLL
            for (int j = 0; j < NI; ++j)
MMA_UNROLL
                for (int q = 0; q < 4; ++q)
                    acc[i][j][q] += d[i][j][q];
        barrier(CLK_LOCAL_MEM_FENCE);
    }

MMA_UNROLL
    for (int i = 0; i < MI; ++i)
MMA_UNROLL
        for (int j = 0; j < NI; ++j)
MMA_UNROLL
            for (int q = 0; q < 4; ++q) {
                const int m = m0 + wm * WM + i * 16 + g + (q >> 1) * 8;
                const int n = n0 + wn * WN + j * 8 + 2 * t + (q & 1);
                if (m < M && n < N)
                    c[(long)m * ldc + n] = epilogue(acc[i][j][q], alpha, bias, flags, m, n);
            }
}
#endif
