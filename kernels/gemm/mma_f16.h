// gemm/mma_f16.h: what the tensor-core float16 GEMM kernels share (gemm/mma_f16.cl, conv2d/implicit_mma_f16.cl): the
// tile knobs, the staging of operands into local memory as half and one KWG step of the warp tiles' products, with
// the mma.sync m16n8k16 float16 instruction (or its emulation) of gemm/mma_sync_f16.h. The includer defines A_T and B_T, the stored types of
// the operands (REAL, or half with A_HALF / B_HALF or the float16 dtype's DATA_HALF: gemm/gemm.h does), and ONE_B /
// FOUR_B where it stages B itself.
// Layouts, fragments and precision: gemm/mma_f16.cl. Knobs (-D):
//   MWG, NWG  rows / columns of C per work-group: MWG a multiple of 16*WARPS_M, NWG of 8*WARPS_N
//   KWG       depth of the staged tiles along k, a multiple of 16
//   WARPS_M   warps along M per work-group
//   WARPS_N   warps along N per work-group (at most 32 mma tiles per warp: 128 float32 accumulators; the
//             work-group and the local tiles (MWG + NWG) * (KWG + 8) halves must fit the device:
//             registry/linalg.py _mma_f16_fits)
//   MMA_EMULATE  1: emulate mma.sync in OpenCL C (tests on devices without NVIDIA PTX); 0: the PTX
#ifndef MWG
#error "MWG (rows of C per work-group) must be set with -D"
#endif
#ifndef NWG
#error "NWG (columns of C per work-group) must be set with -D"
#endif
#ifndef KWG
#error "KWG (depth of the staged tiles along k, a multiple of 16) must be set with -D"
#endif
#ifndef WARPS_M
#error "WARPS_M (warps along M per work-group) must be set with -D"
#endif
#ifndef WARPS_N
#error "WARPS_N (warps along N per work-group) must be set with -D"
#endif
#define WM (MWG / WARPS_M)        // rows of C per warp, a multiple of 16
#define WN (NWG / WARPS_N)        // columns of C per warp, a multiple of 8
#define MI (WM / 16)              // mma tiles along M per warp
#define NI (WN / 8)               // mma tiles along N per warp
#define MMA_WGS (32 * WARPS_M * WARPS_N)
#define LDS (KWG + 8)             // local row pitch in halves: k-contiguous rows, padded against bank conflicts
#define MMA_WARPS (WARPS_M * WARPS_N)   // warps per work-group, for gemm/mma_sync_f16.h
#include "gemm/mma_sync_f16.h"
#if MMA_EMULATE
#define MMA_STEP(acc, As, Bs, wm, wn, lane, warp) mma_step(acc, As, Bs, wm, wn, lane, warp, emu_a, emu_b)
#else
#define MMA_STEP(acc, As, Bs, wm, wn, lane, warp) mma_step(acc, As, Bs, wm, wn, lane, warp, 0, 0)
#endif

// One element (ONE) or four aligned elements (FOUR) of a stored operand into local memory as half bits: a half
// operand's bits as they are (half storage, A_HALF / B_HALF, or the float16 dtype, DATA_HALF, where every array is
// half), a REAL one rounded to nearest even (vstore_half).
#define HALF_ONE(dst, p, i) (*(dst) = ((const __global ushort *)(p))[i])
#define HALF_FOUR(dst, p, i) (*(__local uint2 *)(dst) = *(const __global uint2 *)((const __global ushort *)(p) + (i)))
#define REAL_ONE(dst, p, i) vstore_half((p)[i], 0, (__local half *)(dst))
#define REAL_FOUR(dst, p, i) vstore_half4(*(const __global float4 *)((p) + (i)), 0, (__local half *)(dst))
#if defined(A_HALF) || defined(DATA_HALF)
#define ONE_A HALF_ONE
#define FOUR_A HALF_FOUR
#else
#define ONE_A REAL_ONE
#define FOUR_A REAL_FOUR
#endif
#if defined(B_HALF) || defined(DATA_HALF)
#define ONE_B HALF_ONE
#define FOUR_B HALF_FOUR
#else
#define ONE_B REAL_ONE
#define FOUR_B REAL_FOUR
#endif

// stage_rows_X: ROWS x KWG of a k-contiguous operand (A, or linear's B^T) as half: dst[r*LDS + kk] = src[r*ld + kk],
// 0 outside.
#define STAGE_ROWS(X, T, ONE, FOUR)                                                                             \
    inline void stage_rows_##X(__local ushort *dst, const __global T *src, const int ld, const int ROWS,        \
                               const int rows_left, const int k_left, const bool vec, const int tid)            \
    {                                                                                                           \
        if (vec && rows_left >= ROWS && k_left >= KWG) {                                                        \
            for (int e = tid; e < ROWS * (KWG / 4); e += MMA_WGS) {                                             \
                const int r = e / (KWG / 4), kk = (e % (KWG / 4)) * 4;                                          \
                FOUR(dst + r * LDS + kk, src, (long)r * ld + kk);                                               \
            }                                                                                                   \
        } else {                                                                                                \
            for (int e = tid; e < ROWS * KWG; e += MMA_WGS) {                                                   \
                const int r = e / KWG, kk = e % KWG;                                                            \
                if (r < rows_left && kk < k_left)                                                               \
                    ONE(dst + r * LDS + kk, src, (long)r * ld + kk);                                            \
                else                                                                                            \
                    dst[r * LDS + kk] = 0;                                                                      \
            }                                                                                                   \
        }                                                                                                       \
    }
STAGE_ROWS(a, A_T, ONE_A, FOUR_A)

// One KWG step: acc[i][j] += A_tile (rows wm*WM + i*16 ..) x B_tile (columns wn*WN + j*8 ..) from the staged tiles.
// emu_a, emu_b: the emulation's scratch (unused with the PTX).
__attribute__((always_inline)) inline void mma_step(float acc[MI][NI][4], const __local ushort *As,
                                                    const __local ushort *Bs, const int wm, const int wn,
                                                    const int lane, const int warp, __local uint *emu_a,
                                                    __local uint *emu_b)
{
    const int g = lane >> 2, t = lane & 3;
MMA_UNROLL
    for (int ks = 0; ks < KWG; ks += 16) {
        uint fa[MI][4], fb[NI][2];
MMA_UNROLL
        for (int i = 0; i < MI; ++i) {
            const __local ushort *p = As + (wm * WM + i * 16 + g) * LDS + ks + 2 * t;
            fa[i][0] = *(const __local uint *)p;
            fa[i][1] = *(const __local uint *)(p + 8 * LDS);
            fa[i][2] = *(const __local uint *)(p + 8);
            fa[i][3] = *(const __local uint *)(p + 8 * LDS + 8);
        }
MMA_UNROLL
        for (int j = 0; j < NI; ++j) {
            const __local ushort *p = Bs + (wn * WN + j * 8 + g) * LDS + ks + 2 * t;
            fb[j][0] = *(const __local uint *)p;
            fb[j][1] = *(const __local uint *)(p + 8);
        }
MMA_UNROLL
        for (int i = 0; i < MI; ++i)
MMA_UNROLL
            for (int j = 0; j < NI; ++j)
                MMA(acc[i][j], fa[i], fb[j]);
    }
}

// A kernel's ids for these tiles: tid in the work-group, lane and warp, the warp's tile (wm, wn), the lane's
// fragment coordinates (g, t), the work-group's first row m0 and column n0 of C.
#define MMA_IDS                                                                                                 \
    const int tid = get_local_id(1) * (32 * WARPS_N) + get_local_id(0);                                         \
    const int lane = get_local_id(0) % 32, warp = tid / 32;                                                     \
    const int wn = get_local_id(0) / 32, wm = get_local_id(1);                                                  \
    const int g = lane >> 2, t = lane & 3;                                                                      \
    const int n0 = get_group_id(0) * NWG, m0 = get_group_id(1) * MWG

// float acc[MI][NI][4] = 0
#define MMA_ZERO(acc)                                                                                           \
    MMA_UNROLL for (int i = 0; i < MI; ++i)                                                                     \
        MMA_UNROLL for (int j = 0; j < NI; ++j)                                                                 \
            MMA_UNROLL for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f

// ST(m, n, v) for every accumulator v = C[m, n] of this work-item (c0..c3 of each of its mma tiles; the store
// bounds-checks m and n)
#define MMA_STORE_ALL(acc, ST)                                                                                  \
    MMA_UNROLL for (int i = 0; i < MI; ++i)                                                                     \
        MMA_UNROLL for (int j = 0; j < NI; ++j)                                                                 \
            MMA_UNROLL for (int e = 0; e < 4; ++e)                                                              \
                ST(m0 + wm * WM + i * 16 + g + (e >> 1) * 8, n0 + wn * WN + j * 8 + 2 * t + (e & 1), acc[i][j][e])
