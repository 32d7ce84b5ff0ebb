// gemm/mma_sync_f16.h: the tensor cores' mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (sm_80 or newer) through
// inline PTX, or its OpenCL C emulation, for every float16 tensor-core kernel (gemm/mma_f16.h's GEMM tiles,
// attention/flash_mma_f16.cl), and the asynchronous global -> local copies (cp.async) they stage tiles with.
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), lane = 4*g + t, each register
// two halves, the lower-numbered column (or row of B) in the low 16 bits:
//     a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, 2t+1], a2 = A[g][2t+8, 2t+9], a3 = A[g+8][2t+8, 2t+9]
//     b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]
//     c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
// The includer defines MMA_WARPS (warps per work-group) and names its ids `lane` and `warp` where it calls MMA.
// Knob (-D): MMA_EMULATE  1: emulate mma.sync in OpenCL C (tests on devices without NVIDIA PTX; every work-item of
// the work-group must then reach each MMA together, as it synchronizes with barriers); 0: the PTX.
#ifndef MMA_EMULATE
#error "MMA_EMULATE (1: emulate mma.sync, 0: the PTX) must be set with -D"
#endif
#ifndef MMA_WARPS
#error "MMA_WARPS (warps per work-group) must be defined before gemm/mma_sync_f16.h"
#endif
#if MMA_EMULATE
#define MMA_UNROLL                // the emulation's barriers inside unrolled loops make PoCL's compile very slow
#else
#define MMA_UNROLL _Pragma("unroll")
#endif

#if MMA_EMULATE
// d += A (16x16) B (16x8) for the fragments the 32 lanes of one warp hold. ua: 128 words (A's 16 x 16 halves,
// row-major), ub: 64 words (B's 8 columns of 16 halves), this warp's own.
inline void mma_m16n8k16(float d[4], const uint fa[4], const uint fb[2], __local uint *ua, __local uint *ub,
                         const int lane)
{
    const int g = lane >> 2, t = lane & 3;
    ua[g * 8 + t] = fa[0];
    ua[(g + 8) * 8 + t] = fa[1];
    ua[g * 8 + t + 4] = fa[2];
    ua[(g + 8) * 8 + t + 4] = fa[3];
    ub[g * 8 + t] = fb[0];
    ub[g * 8 + t + 4] = fb[1];
    barrier(CLK_LOCAL_MEM_FENCE);
    const __local half *ha = (const __local half *)ua, *hb = (const __local half *)ub;
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
        float s = d[i];
        for (int k = 0; k < 16; ++k)
            s = fma(vload_half(row * 16 + k, ha), vload_half(col * 16 + k, hb), s);
        d[i] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
#define MMA(d, fa, fb) mma_m16n8k16(d, fa, fb, emu_a + warp * 128, emu_b + warp * 64, lane)
// the emulation's local scratch, declared at a kernel's top
#define MMA_SCRATCH                                                                                             \
    __local uint emu_a[MMA_WARPS * 128];                                                                        \
    __local uint emu_b[MMA_WARPS * 64]
#else
#define MMA_SCRATCH
#define MMA(d, fa, fb)                                                                                          \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "                                           \
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};"                          \
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                               \
                 : "r"(fa[0]), "r"(fa[1]), "r"(fa[2]), "r"(fa[3]), "r"(fb[0]), "r"(fb[1]),                      \
                   "f"(d[0]), "f"(d[1]), "f"(d[2]), "f"(d[3]))
#endif

// cp.async (PTX ISA, "Data Movement and Conversion Instructions: cp.async", sm_80): CP_ASYNC16(dst, src, bytes)
// copies the 16 bytes at src (global, 16-byte aligned) to dst (local, 16-byte aligned) without passing through
// registers, only the first `bytes` of them read, the rest zero-filled; CP_COMMIT closes this work-item's group of
// copies issued since the last one; CP_WAIT_GROUP(n) waits until at most n of its groups are still in flight (a
// literal n). The copies are visible to the other work-items after a barrier that follows the wait. The emulation
// copies at once.
#if MMA_EMULATE
#define CP_ASYNC16(dst, src, bytes)                                                                             \
    do {                                                                                                        \
        for (int i_ = 0; i_ < 8; ++i_)                                                                          \
            (dst)[i_] = 2 * i_ < (bytes) ? (src)[i_] : (ushort)0;                                               \
    } while (0)
#define CP_COMMIT()
#define CP_WAIT_GROUP(n)
#else
#define CP_ASYNC16(dst, src, bytes)                                                                             \
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"                                                \
                 :: "r"((uint)(size_t)(dst)), "l"((ulong)(src)), "r"(bytes) : "memory")
#define CP_COMMIT() asm volatile("cp.async.commit_group;" ::: "memory")
#define CP_WAIT_GROUP(n) asm volatile("cp.async.wait_group " #n ";" ::: "memory")
#endif
