// gemm/mma_f16.cl, gemm_mma_f16: the GEMM of gemm/gemm.h (layout, arguments, flags) on NVIDIA tensor cores in
// float16 through inline PTX: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (sm_80 or newer): float16
// products, float32 accumulation, float32 C. The PTX compiles for NVIDIA devices only: the launcher builds this file
// only for them, or with MMA_EMULATE 1. NVIDIA's OpenCL has no cl_khr_fp16; half is used as storage only
// (vstore_half / vload_half, which need no extension), the arithmetic is the PTX's.
// A and B are read as REAL (float) or, with A_HALF / B_HALF, as half, and staged in local memory as half, both
// k-contiguous (the conversion rounds to nearest even, as vstore_half does):
//     As[i*LDS + kk] = half(A[m0 + i, k0 + kk]),   Bs[j*LDS + kk] = half(B[k0 + kk, n0 + j]),   LDS = KWG + 8
// (a row pitch of KWG/2 + 4 words makes the 32-bit fragment reads below hit 32 different banks). Fragments of one
// m16n8k16, with lane = 4*g + t (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), each
// register two halves, the lower-numbered column (or row of B) in the low 16 bits:
//     a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, 2t+1], a2 = A[g][2t+8, 2t+9], a3 = A[g+8][2t+8, 2t+9]
//     b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]
//     c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
// Precision: each operand is rounded once to half (11 significant bits, u = 2^-11; the products of two halves are
// exact in float32); the tensor cores accumulate in float32 (truncating, see registry/linalg.py _F16_TOL). Values
// beyond half's range (|x| > 65504) become infinite, as in every float16 pipeline.
// float16 (-DDATA_HALF, gemm/gemm.h): A and B are half already and staged as they are (no conversion); the bias,
// the residual and C are half (LOAD / STORE), the epilogue in float and C rounded to half once; split-K's partial
// sums stay float (REAL scratch), so gemm_splitk_sum rounds to half only the final sum.
// Tails: bounds checks while staging (0 outside) and on the stores. MMA_EMULATE 1 replaces the PTX by a
// work-group-synchronous emulation in OpenCL C (local memory, barriers), so that the fragment layouts, tiling and
// tails can be verified on any device; it is for tests, not speed.
// NDRange (ceil(N/NWG)*32*WARPS_N, ceil(M/MWG)*WARPS_M, Z).
// Knobs (-D): those of gemm/mma_f16.h (MWG, NWG, KWG, WARPS_M, WARPS_N, MMA_EMULATE, STAGES, LDSM), with their
// constraints, ASYNC (below) and PREFETCH: 1, the next step's tiles are read into registers before this step's mma (as
// conv2d/implicit_mma_f16.cl always does); 0, each step's tiles are read and stored into local memory just before its
// barrier, no registers live across the mma (the order of c7ab9b7's staging). H100, float16 linear at the SD shapes,
// one call (docs/results/ab-knobs-mma-f16-nvidia-h100.txt): the register prefetch took 0.729 ms where c7ab9b7's
// kernel took 0.520 (ff_proj 0.388 against 0.238); likely its 16 more live registers a work-item cost the tiles
// occupancy (the implicit conv's gather gains from the overlap). PREFETCH 0 took 0.733 ms, PREFETCH 1 0.729 and
// c7ab9b7's kernel 0.524 in the next call (docs/results/ab-knobs-nvidia-h100-2.txt): what holds the tiles back is
// the staging through registers itself, not its order.
// ASYNC 1 (where both operands are half, B^T k-contiguous and every row 16-byte aligned: linear in the float16 dtype)
// copies the tiles global -> local with cp.async, STAGES (2 to 4) buffers deep, no registers between; other calls
// take the path through registers. Same call: 0.371 ms at the default tiles (0.50x), 0.348 with 128 x 64 tiles three
// buffers deep.
#include "common.h"
#include "gemm.h"
#include "mma_f16.h"
#ifndef PREFETCH
#error "PREFETCH (1: the next step's tiles read into registers during the mma; 0: read when staged) must be set with -D"
#endif
#if !defined(ASYNC) || (ASYNC != 0 && ASYNC != 1) || (ASYNC && STAGES < 2) || (!ASYNC && STAGES > 2)
#error "ASYNC (1: half tiles copied with cp.async, STAGES 2 to 4; 0: through registers, STAGES 1 or 2) must be set"
#endif
// The cp.async path: both operands half (the float16 dtype, or both half-stored); the host's GEMM_VEC8_OK and
// GEMM_TRANS_B say at run time whether this call's rows are 16-byte aligned and B is k-contiguous (else the path
// through registers runs).
#if ASYNC && (defined(DATA_HALF) || (defined(A_HALF) && defined(B_HALF)))
#define ASYNC_COPY 1
#else
#define ASYNC_COPY 0
#endif

PREFETCH_ROWS(a, A_T, MWG, KIND_A)
PREFETCH_ROWS(b, B_T, NWG, KIND_B)

// The prefetch of a KWG x NWG tile of an n-contiguous B, transposed: group e = tid + s*MMA_WGS holds rows
// 4*(e / NWG) .. + 3 of column e % NWG (consecutive work-items read consecutive columns), 0 outside, and is put at
// Bs[j*LDS + kk] as put_rows_b puts its groups.
inline void fetch_cols_b(B_T4 *regs, const __global B_T *src, const int ld, const int cols_left, const int k_left,
                         const int tid)
{
MMA_UNROLL
    for (int s = 0; s < PF_GROUPS(NWG); ++s) {
        const int e = tid + s * MMA_WGS, kk = (e / NWG) * 4, j = e % NWG;
        const long at = (long)kk * ld + j;
        if (kk >= KWG || j >= cols_left)
            regs[s] = 0;
        else
            regs[s] = (B_T4)(kk < k_left ? B_LD1(src, at) : (B_S)0, kk + 1 < k_left ? B_LD1(src, at + ld) : (B_S)0,
                             kk + 2 < k_left ? B_LD1(src, at + 2 * ld) : (B_S)0,
                             kk + 3 < k_left ? B_LD1(src, at + 3 * ld) : (B_S)0);
    }
}

inline void put_cols_b(__local ushort *dst, const B_T4 *regs, const int tid)
{
MMA_UNROLL
    for (int s = 0; s < PF_GROUPS(NWG); ++s) {
        const int e = tid + s * MMA_WGS;
        if (e < NWG * (KWG / 4))
            B_PUT4(dst + (e % NWG) * LDS + (e / NWG) * 4, regs[s]);
    }
}

// C[m, n] with the epilogue (gemm.h), inside C
#define GEMM_STORE(m, n, v)                                                                                     \
    if ((m) < M && (n) < N)                                                                                     \
        STORE(c, (long)(m) * ldc + (n), EPILOGUE((v), (m), (n)))

// Split-K (narrow products over a long K: the text encoder's 154 rows, the UNet's 8x8 level, a few work-groups for
// the device's compute units): NDRange z = batch item * splits + split; split s takes k in [s*k_chunk, (s+1)*k_chunk)
// (k_chunk a multiple of KWG) and, with splits > 1, stores its raw partial product in part[s, item, m, n] (dense);
// gemm_splitk_sum adds the splits in order (deterministic) with the epilogue. splits == 1: k_chunk = K, C in place.
__kernel __attribute__((reqd_work_group_size(32 * WARPS_N, WARPS_M, 1)))
void gemm_mma_f16(GEMM_ARGS, const int splits, const int k_chunk, __global REAL *restrict part)
{
    MMA_IDS;
    const int item = get_global_id(2) / splits, split = get_global_id(2) % splits;
    GEMM_BATCH(item);
    const bool vec = flags & GEMM_VEC_OK;
    __local uint4 As4[STAGES * MWG * LDS / 8];
    __local uint4 Bs4[STAGES * NWG * LDS / 8];
    MMA_SCRATCH;

    float acc[MI][NI][4];
    MMA_ZERO(acc);
    const int k_begin = split * k_chunk, k_end = min(K, (split + 1) * k_chunk);
    const bool trans_b = flags & GEMM_TRANS_B;
    const __global A_T *am0 = a + (long)m0 * lda;
    const __global B_T *bn0 = trans_b ? b + (long)n0 * ldb : b + n0;
    // Software pipeline (PREFETCH 1), as in conv2d/implicit_mma_f16.cl: step k0 + KWG's global reads are in registers
    // during step k0's mma; STAGES 2 alternates two local buffers (one barrier a step), STAGES 1 waits for the mma.
    A_T4 ra[PF_GROUPS(MWG)];
    B_T4 rb[PF_GROUPS(NWG)];
#define GEMM_FETCH(k0)                                                                                          \
    fetch_rows_a(ra, am0 + (k0), lda, M - m0, k_end - (k0), vec, tid);                                          \
    if (trans_b)                                                                                                \
        fetch_rows_b(rb, bn0 + (k0), ldb, N - n0, k_end - (k0), vec, tid);                                      \
    else                                                                                                        \
        fetch_cols_b(rb, bn0 + (long)(k0) * ldb, ldb, N - n0, k_end - (k0), tid)
#if ASYNC_COPY
    // cp.async, STAGES deep: steps step+1 .. step+STAGES-1 are in flight during step's mma, in the buffers
    // (step+1) % STAGES ...; step s + STAGES - 1 is issued after the barrier of step s, into the buffer step s - 1's
    // mma read (every warp has left that mma to reach the barrier). One commit group a step, empty past the end, so
    // that CP_WAIT_STAGE (at most STAGES - 2 groups in flight) always means "step's copies are done".
    if ((flags & GEMM_VEC8_OK) && trans_b) {
        const int steps = (k_end - k_begin + KWG - 1) / KWG;
#define GEMM_COPY(s)                                                                                            \
        copy_rows((__local ushort *)As4 + ((s) % STAGES) * MWG * LDS,                                           \
                  (const __global ushort *)am0 + k_begin + (s) * KWG, lda, MWG, M - m0, k_end - k_begin - (s) * KWG, \
                  tid);                                                                                         \
        copy_rows((__local ushort *)Bs4 + ((s) % STAGES) * NWG * LDS,                                           \
                  (const __global ushort *)bn0 + k_begin + (s) * KWG, ldb, NWG, N - n0, k_end - k_begin - (s) * KWG, \
                  tid)
        for (int s = 0; s < STAGES - 1; ++s) {
            if (s < steps) {
                GEMM_COPY(s);
            }
            CP_COMMIT();
        }
        for (int step = 0; step < steps; ++step) {
            CP_WAIT_STAGE();
            barrier(CLK_LOCAL_MEM_FENCE);
            if (step + STAGES - 1 < steps) {
                GEMM_COPY(step + STAGES - 1);
            }
            CP_COMMIT();
            MMA_STEP(acc, (__local ushort *)As4 + (step % STAGES) * MWG * LDS,
                     (__local ushort *)Bs4 + (step % STAGES) * NWG * LDS, wm, wn, lane, warp);
        }
    } else
#endif
    {
#if PREFETCH
        if (k_begin < k_end) {
            GEMM_FETCH(k_begin);
        }
#endif
        for (int k0 = k_begin, step = 0; k0 < k_end; k0 += KWG, ++step) {
            __local ushort *As = (__local ushort *)As4 + (step % STAGES) * MWG * LDS;
            __local ushort *Bs = (__local ushort *)Bs4 + (step % STAGES) * NWG * LDS;
#if !PREFETCH
            GEMM_FETCH(k0);
#endif
            put_rows_a(As, ra, tid);
            if (trans_b)
                put_rows_b(Bs, rb, tid);
            else
                put_cols_b(Bs, rb, tid);
            barrier(CLK_LOCAL_MEM_FENCE);
#if PREFETCH
            if (k0 + KWG < k_end) {
                GEMM_FETCH(k0 + KWG);
            }
#endif
            MMA_STEP(acc, As, Bs, wm, wn, lane, warp);
#if STAGES == 1
            barrier(CLK_LOCAL_MEM_FENCE);
#endif
        }
    }
    if (splits > 1) {
        __global REAL *pz = part + ((long)split * (get_global_size(2) / splits) + item) * M * N;
#define PART_STORE(m, n, v) if ((m) < M && (n) < N) pz[(long)(m) * N + (n)] = (v);
        MMA_STORE_ALL(acc, PART_STORE);
    } else {
        MMA_STORE_ALL(acc, GEMM_STORE);
    }
}

// C_z = epilogue(sum_s part[s, z]) for split-K: NDRange (N, M, batch), the splits added in order (REAL partials; C
// of DATA, rounded to half once in float16).
__kernel void gemm_splitk_sum(const __global REAL *restrict part, const __global DATA *restrict bias,
                              __global const DATA *restrict res, __global DATA *restrict c, const int M, const int N,
                              const int ldc, const int ZI, const long sc_outer, const long sc_inner, const REAL alpha,
                              const int flags, const int splits)
{
    const int n = get_global_id(0), m = get_global_id(1), z = get_global_id(2);
    if (n >= N || m >= M)
        return;
    c += (z / ZI) * sc_outer + (z % ZI) * sc_inner;
    res += (z / ZI) * sc_outer + (z % ZI) * sc_inner;
    REAL v = 0;
    for (int s = 0; s < splits; ++s)
        v += part[((long)s * get_global_size(2) + z) * M * N + (long)m * N + n];
    STORE(c, (long)m * ldc + n, epilogue(v, alpha, bias, res, flags, ldc, m, n));
}
