// gemm/mma_f16.h: what the tensor-core float16 GEMM kernels share (gemm/mma_f16.cl, conv2d/implicit_mma_f16.cl): the
// tile knobs, the staging of operands into local memory as half (through registers: PREFETCH_ROWS) and one KWG step
// of the warp tiles' products, with the mma.sync m16n8k16 float16 instruction (or its emulation) of
// gemm/mma_sync_f16.h. The includer defines A_T and B_T, the stored types of the operands (REAL, or half with
// A_HALF / B_HALF or the float16 dtype's DATA_HALF: gemm/gemm.h does).
// Layouts, fragments and precision: gemm/mma_f16.cl. Knobs (-D):
//   MWG, NWG  rows / columns of C per work-group: MWG a multiple of 16*WARPS_M, NWG of 8*WARPS_N
//   KWG       depth of the staged tiles along k, a multiple of 16
//   WARPS_M   warps along M per work-group
//   WARPS_N   warps along N per work-group (at most 32 mma tiles per warp: 128 float32 accumulators; the
//             work-group and the local tiles STAGES * (MWG + NWG) * (KWG + 8) halves must fit the device:
//             registry/linalg.py _mma_f16_fits)
//   STAGES    local buffers of the staged tiles, 1 to 4 (the includer's main loop takes them in turn; more than 2
//             only where the includer copies with cp.async, as gemm/mma_f16.cl's ASYNC)
//   LDSM      1: the warps read their fragments from the staged tiles with ldmatrix (one instruction for the four
//             32-bit words of an A fragment, or the two words of two B fragments, the lanes naming the rows);
//             0: with a 32-bit local load per word. The emulation reads them word by word either way.
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
#if !defined(STAGES) || STAGES < 1 || STAGES > 4
#error "STAGES (local buffers of the staged tiles: 1 to 4) must be set with -D"
#endif
#if !defined(LDSM) || (LDSM != 0 && LDSM != 1)
#error "LDSM (1: fragments read with ldmatrix, 0: with 32-bit local loads) must be set with -D"
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

// The staging of a stored operand into local memory as half bits, through registers (the kernels overlap the next
// step's global reads with this step's mma): KIND_X HALF, a half operand whose bits are copied as they are (half
// storage, A_HALF / B_HALF, or the float16 dtype, DATA_HALF, where every array is half), or FLOAT, rounded to nearest
// even (vstore_half4) as it is stored; X_T4 its registers of four elements.
#if defined(A_HALF) || defined(DATA_HALF)
#define KIND_A HALF
#else
#define KIND_A FLOAT
#endif
#if defined(B_HALF) || defined(DATA_HALF)
#define KIND_B HALF
#else
#define KIND_B FLOAT
#endif
#define KIND(K, X) KIND_(K, X)  // KIND(KIND_A, T4): HALF_T4 or FLOAT_T4 (the indirection expands KIND_A first)
#define KIND_(K, X) K##_##X
#define A_T4 KIND(KIND_A, T4)
#define B_T4 KIND(KIND_B, T4)
#define B_S KIND(KIND_B, S)     // B's scalars, loads and stores, for an includer that stages B in its own layout
#define B_LD1 KIND(KIND_B, LD1)
#define B_PUT4 KIND(KIND_B, PUT4)

// fetch_rows_X: this work-item's groups of four elements of a ROWS x KWG tile of a k-contiguous operand (A, or
// linear's B^T; group e = tid + s*MMA_WGS, s < PF_GROUPS(ROWS): row e / (KWG/4), k offset 4*(e % (KWG/4))) into
// registers, 0 outside (vec: rows 4-element aligned, so a whole tile is read in aligned fours); put_rows_X: them
// into local memory, dst[r*LDS + kk] = src[r*ld + kk].
#define PF_GROUPS(ROWS) (((ROWS) * (KWG / 4) + MMA_WGS - 1) / MMA_WGS)
#define HALF_T4 ushort4
#define HALF_S ushort
#define HALF_LD4(p, i) (*(const __global ushort4 *)((const __global ushort *)(p) + (i)))
#define HALF_LD1(p, i) (((const __global ushort *)(p))[i])
#define HALF_PUT4(dst, v) (*(__local ushort4 *)(dst) = (v))
#define FLOAT_T4 float4
#define FLOAT_S float
#define FLOAT_LD4(p, i) (*(const __global float4 *)((p) + (i)))
#define FLOAT_LD1(p, i) ((p)[i])
#define FLOAT_PUT4(dst, v) vstore_half4((v), 0, (__local half *)(dst))
#define PREFETCH_ROWS(X, T, ROWS, K) PREFETCH_ROWS_(X, T, ROWS, K)      // K: HALF or FLOAT, or a macro naming one
#define PREFETCH_ROWS_(X, T, ROWS, K)                                                                           \
    inline void fetch_rows_##X(K##_T4 *regs, const __global T *src, const int ld, const int rows_left,         \
                               const int k_left, const bool vec, const int tid)                                 \
    {                                                                                                           \
        if (vec && rows_left >= (ROWS) && k_left >= KWG) {   /* a whole tile: aligned fours, no checks */       \
MMA_UNROLL                                                                                                      \
            for (int s = 0; s < PF_GROUPS(ROWS); ++s) {                                                         \
                const int e = tid + s * MMA_WGS, r = e / (KWG / 4), kk = (e % (KWG / 4)) * 4;                   \
                regs[s] = r < (ROWS) ? K##_LD4(src, (long)r * ld + kk) : (K##_T4)0;                             \
            }                                                                                                   \
            return;                                                                                             \
        }                                                                                                       \
MMA_UNROLL                                                                                                      \
        for (int s = 0; s < PF_GROUPS(ROWS); ++s) {                                                             \
            const int e = tid + s * MMA_WGS, r = e / (KWG / 4), kk = (e % (KWG / 4)) * 4;                       \
            const long at = (long)r * ld + kk;                                                                  \
            if (r >= (ROWS) || r >= rows_left)                                                                  \
                regs[s] = 0;                                                                                    \
            else                                                                                                \
                regs[s] = (K##_T4)(kk < k_left ? K##_LD1(src, at) : (K##_S)0,                                   \
                                   kk + 1 < k_left ? K##_LD1(src, at + 1) : (K##_S)0,                           \
                                   kk + 2 < k_left ? K##_LD1(src, at + 2) : (K##_S)0,                           \
                                   kk + 3 < k_left ? K##_LD1(src, at + 3) : (K##_S)0);                          \
        }                                                                                                       \
    }                                                                                                           \
    inline void put_rows_##X(__local ushort *dst, const K##_T4 *regs, const int tid)                           \
    {                                                                                                           \
MMA_UNROLL                                                                                                      \
        for (int s = 0; s < PF_GROUPS(ROWS); ++s) {                                                             \
            const int e = tid + s * MMA_WGS;                                                                    \
            if (e < (ROWS) * (KWG / 4))                                                                         \
                K##_PUT4(dst + (e / (KWG / 4)) * LDS + (e % (KWG / 4)) * 4, regs[s]);                          \
        }                                                                                                       \
    }

// CP_WAIT_STAGE: wait until at most STAGES - 2 groups are in flight (a main loop of STAGES buffers that commits one
// group a step, STAGES - 1 steps ahead: then the current step's copies are done)
#if STAGES <= 2
#define CP_WAIT_STAGE() CP_WAIT_GROUP(0)
#elif STAGES == 3
#define CP_WAIT_STAGE() CP_WAIT_GROUP(1)
#else
#define CP_WAIT_STAGE() CP_WAIT_GROUP(2)
#endif

// copy_rows (the GEMM's and the implicit conv's ASYNC): this work-item's 16-byte chunks (8 halves) of a `rows` x KWG
// tile of a k-contiguous half operand (A, or linear's B^T) into dst[r*LDS + kk] = src[r*ld + kk] with cp.async:
// chunk e = tid + s*MMA_WGS is row e / (KWG/8), k offset 8*(e % (KWG/8)); the halves beyond rows_left rows or k_left
// columns read as 0 (the src-size operand). Needs ld and src 8-element aligned; LDS * 2 bytes is a multiple of 16.
__attribute__((always_inline)) inline void copy_rows(__local ushort *dst, const __global ushort *src, const int ld,
                                                     const int rows, const int rows_left, const int k_left,
                                                     const int tid)
{
MMA_UNROLL
    for (int s = 0; s < (rows * (KWG / 8) + MMA_WGS - 1) / MMA_WGS; ++s) {
        const int e = tid + s * MMA_WGS, r = e / (KWG / 8), kk = (e % (KWG / 8)) * 8;
        if (r < rows) {
            const int n = r < rows_left ? clamp(k_left - kk, 0, 8) : 0;
            CP_ASYNC16(dst + r * LDS + kk, n ? src + (long)r * ld + kk : src, 2 * n);
        }
    }
}
// ldmatrix.x4 (PTX ISA, "Warp-level matrix load instruction: ldmatrix"): lane l names row l % 8 of 8x8 matrix l / 8 (16
// bytes, 16-byte aligned, in local memory) and receives word (l / 4, l % 4) of each matrix in r[0..3]: the same words
// as the fragments' loads below. ldmatrix takes the row's address in the shared state space, which is what an
// OpenCL __local pointer holds on NVIDIA.
#if LDSM && !MMA_EMULATE
#define LDSM_X4(r0, r1, r2, r3, p)                                                                              \
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"                             \
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"((uint)(size_t)(p)))
#define LDSM_X2(r0, r1, p)                                                                                      \
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];" : "=r"(r0), "=r"(r1)               \
                 : "r"((uint)(size_t)(p)))
#endif

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
#if LDSM && !MMA_EMULATE
        // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3;
        // B (n rows, k-contiguous): (n 0-7, k 0-7), (n 0-7, k 8-15) = b0, b1 of tile j, then those of tile j+1
MMA_UNROLL
        for (int i = 0; i < MI; ++i)
            LDSM_X4(fa[i][0], fa[i][1], fa[i][2], fa[i][3],
                    As + (wm * WM + i * 16 + (lane & 15)) * LDS + ks + (lane >> 4) * 8);
MMA_UNROLL
        for (int j = 0; j + 1 < NI; j += 2)
            LDSM_X4(fb[j][0], fb[j][1], fb[j + 1][0], fb[j + 1][1],
                    Bs + (wn * WN + j * 8 + (lane & 7) + (lane >> 4) * 8) * LDS + ks + ((lane >> 3) & 1) * 8);
#if NI % 2
        LDSM_X2(fb[NI - 1][0], fb[NI - 1][1],
                Bs + (wn * WN + (NI - 1) * 8 + (lane & 7)) * LDS + ks + ((lane >> 3) & 1) * 8);
#endif
#else
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
#endif
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
