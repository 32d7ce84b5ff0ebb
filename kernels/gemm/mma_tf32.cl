// gemm/mma_tf32.cl, gemm_mma_tf32: the GEMM of gemm/gemm.h (layout, arguments, flags) on NVIDIA tensor cores
// through inline PTX: mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (sm_80 or newer), float only. The PTX
// compiles for NVIDIA devices only: the launcher builds this file only for them, or with MMA_EMULATE 1.
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
// Knobs (-D):
//   MWG, NWG  rows / columns of C per work-group: MWG a multiple of 16*WARPS_M, NWG of 8*WARPS_N
//   KWG       depth of the staged tiles along k, a multiple of 8
//   WARPS_M   warps along M per work-group
//   WARPS_N   warps along N per work-group (at most 16 mma tiles per warp; the work-group and the local tiles
//             (MWG + NWG) * (KWG + 4) floats must fit the device: registry/linalg.py _mma_fits)
//   SPLIT     1: TF32 products; 3: 3xTF32 (float32-level accuracy, three mma per product tile)
//   MMA_EMULATE  1: emulate mma.sync in OpenCL C (tests on devices without NVIDIA PTX); 0: the PTX
#include "common.h"
#ifndef MWG
#error "MWG (rows of C per work-group) must be set with -D"
#endif
#ifndef NWG
#error "NWG (columns of C per work-group) must be set with -D"
#endif
#ifndef KWG
#error "KWG (depth of the staged tiles along k, a multiple of 8) must be set with -D"
#endif
#ifndef WARPS_M
#error "WARPS_M (warps along M per work-group) must be set with -D"
#endif
#ifndef WARPS_N
#error "WARPS_N (warps along N per work-group) must be set with -D"
#endif
#ifndef SPLIT
#error "SPLIT (1: TF32 products, 3: 3xTF32) must be set with -D"
#endif
#ifndef MMA_EMULATE
#error "MMA_EMULATE (1: emulate mma.sync, 0: the PTX) must be set with -D"
#endif
#include "gemm.h"

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
                    c[(long)m * ldc + n] = EPILOGUE(acc[i][j][q], m, n);
            }
}
