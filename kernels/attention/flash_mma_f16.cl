// attention/flash_mma_f16.cl, the flash_mma_f16 variant: FlashAttention (key tiles, online softmax, no Lq x Lk
// matrix in memory) on NVIDIA tensor cores in float16, after FlashAttention-2: both products S = Q K^T and O = P V
// are mma.sync m16n8k16 f16 x f16 -> f32 (gemm/mma_sync_f16.h, inline PTX; MMA_EMULATE 1: its OpenCL C emulation),
// the softmax in float32 registers. Layout, the models' own (no permutes), as attention/flash_reg.cl:
// q[b, i, h*D + d] = q[(b*Lq + i)*HD + h*D + d], k, v likewise with Lk rows, o like q; HD = H*D, D = HEAD_DIM.
// One work-group per (query tile of BQ = 16*WARPS rows, b*H + h); warp w owns the 16 query rows q0 + 16w + [0, 16),
// lane = 4g + t the rows g and g + 8 of them (the mma fragments' rows). Per key tile of BK keys:
//   1. K and V tiles to local memory as half (rounded to nearest even), zeros past Lk and past D:
//      Ks[j*LDQ + d] = k[k0 + j, d] (key rows, d-contiguous: the B operand of Q K^T),
//      Vt[d*LDV + j] = v[k0 + j, d] (transposed: the B operand of P V, key-contiguous);
//   2. S (16 x BK per warp, BK/8 accumulator tiles) = Q K^T from the warp's Q fragments, loaded once from the staged
//      query tile, scaled by scale*log2(e) and masked to -inf (j >= Lk; j > i if causal);
//   3. online softmax per row: the row's max over the tile (the lane's own, then over the 4 lanes t of its quad),
//      m' = max(m, that), alpha = 2^(m - m'), p = 2^(s - m'); l = alpha*l + the lane's own sum of p (the 4 lanes'
//      partial sums are added once at the end), acc *= alpha;
//   4. acc += P V: the S accumulators of two adjacent 8-key tiles are, register for register, the A fragment of
//      one 16-key step (FlashAttention-2's layout trick), rounded to half in pairs; no P in local memory.
// Then o = acc / l. The first tile holds key 0, which no row masks (0 <= i, 0 < Lk): from it on every m is finite,
// so 2^(s - m') is 0 for a masked s and alpha = 2^-inf = 0 on the first tile. Rows past Lq are staged from row
// Lq - 1 and write nothing.
// Precision: q, k, v and p rounded once to half (u = 2^-11), products exact in float32, float32 accumulation (the
// tensor cores', truncating), softmax statistics in float32: registry/linalg.py _F16_ATTN_TOL.
// dtypes: float32 (q, k, v float, rounded to half as they are staged; o float) and float16 (-DDATA_HALF: q, k, v
// half already, their bits copied to the tiles unrounded; o written with vstore_half_rte, its only rounding). q, k,
// v and o are DATA (common.h); REAL is float in both.
// Knobs (-D): WARPS (warps per work-group; BQ = 16*WARPS query rows), BK (keys per tile, a multiple of 16),
// MMA_EMULATE, ASYNC (below). Structural (-D, set by the host per call): HEAD_DIM. Local memory: (BQ + BK)*(DK + 8)
// + DN*(BK + 8) halves, with ASYNC (BQ + 4*BK)*(DK + 8) (registry/linalg.py attention_local_bytes). NDRange
// (ceil(Lq / BQ) * 32*WARPS, B*H), work-groups of 32*WARPS.
// ASYNC 1 (float16, HEAD_DIM % 8 == 0: the host sets it 0 elsewhere): step 1 becomes cp.async copies (gemm/
// mma_sync_f16.h) of the K and V tiles as they are, 16 bytes a copy (zero-filled past Lk and D), into two buffers of
// each: tile k0 + BK is copied while tile k0 is computed. V stays key-major (Vs[j*LDQ + d]); P V's B fragments are
// read from it with ldmatrix.trans (which hands each lane the two consecutive keys of one column a b register
// holds), in the emulation with two 16-bit loads a register.
#include "common.h"
#ifndef WARPS
#error "WARPS (warps per work-group, each 16 query rows) must be set with -D"
#endif
#ifndef BK
#error "BK (keys per tile, a multiple of 16) must be set with -D"
#endif
#ifndef HEAD_DIM
#error "HEAD_DIM (the head dimension) must be set with -D"
#endif
#if BK % 16 != 0
#error "BK must be a multiple of 16 (the k steps of P V)"
#endif
#if !defined(ASYNC) || (ASYNC != 0 && ASYNC != 1) || (ASYNC && (!defined(DATA_HALF) || HEAD_DIM % 8 != 0))
#error "ASYNC (1: K and V copied with cp.async, float16 and HEAD_DIM % 8 == 0 only; 0: staged) must be set with -D"
#endif
#define MMA_WARPS WARPS
#include "gemm/mma_sync_f16.h"
#define BQ (16 * WARPS)                       // query rows per work-group
#define WG (32 * WARPS)                       // work-items per work-group
#define DK ((HEAD_DIM + 15) / 16 * 16)        // the head dimension padded to Q K^T's k steps (zeros)
#define DN ((HEAD_DIM + 7) / 8 * 8)           // the head dimension padded to P V's n tiles (zeros)
#define LDQ (DK + 8)                          // row pitch of Qs and Ks, halves (+8: 32-bit fragment reads hit 32 banks)
#define LDV (BK + 8)                          // row pitch of Vt, halves
#define NT (BK / 8)                           // score tiles (16 x 8) per warp
#define OT (DN / 8)                           // output tiles (16 x 8) per warp

// Two floats as one register of two halves, lo in the low 16 bits (round to nearest even): cvt.rn.f16x2.f32 puts
// its first source in the upper half; the emulation through vstore_half2 (a private variable's address, which
// NVIDIA's compiler would place in local memory inside the key loop).
#if MMA_EMULATE
inline uint pack_half2(const float lo, const float hi)
{
    ushort2 h;
    vstore_half2((float2)(lo, hi), 0, (__private half *)&h);
    return as_uint(h);
}
#else
inline uint pack_half2(const float lo, const float hi)
{
    uint r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
#endif

// The half of src[at] (0 where !in) into a tile's element dst: float16's bits copied as they are (read as ushort: a
// half pointer is never dereferenced); float32's rounded to nearest even.
#ifdef DATA_HALF
inline void stage_half(__local ushort *dst, const __global DATA *src, const long at, const bool in)
{
    *dst = in ? ((const __global ushort *)src)[at] : (ushort)0;
}
#else
inline void stage_half(__local ushort *dst, const __global DATA *src, const long at, const bool in)
{
    vstore_half(in ? src[at] : 0.0f, 0, (__local half *)dst);
}
#endif

#if MMA_EMULATE
// The max / sum over the 4 lanes of a quad (the lanes holding one row's fragments), through local memory; every
// work-item of the work-group calls it together.
inline float quad_reduce(const float x, const int is_max, __local float *red, const int tid)
{
    red[tid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    const int q = tid & ~3;
    const float r = is_max ? fmax(fmax(red[q], red[q + 1]), fmax(red[q + 2], red[q + 3]))
                           : (red[q] + red[q + 1]) + (red[q + 2] + red[q + 3]);
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}
#define QUAD_MAX(x) quad_reduce(x, 1, emu_red, tid)
#define QUAD_SUM(x) quad_reduce(x, 0, emu_red, tid)
#define QUAD_SCRATCH __local float emu_red[WG]
#else
// shfl.sync.bfly within the quad (lanes 4g .. 4g + 3 of the warp), in the same order as the emulation's
inline float shfl_xor(const float x, const int m)
{
    uint r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(as_uint(x)), "r"(m));
    return as_float(r);
}
inline float quad_max(const float x)
{
    const float y = fmax(x, shfl_xor(x, 1));
    return fmax(y, shfl_xor(y, 2));
}
inline float quad_sum(const float x)
{
    const float y = x + shfl_xor(x, 1);
    return y + shfl_xor(y, 2);
}
#define QUAD_MAX(x) quad_max(x)
#define QUAD_SUM(x) quad_sum(x)
#define QUAD_SCRATCH
#endif

#if ASYNC
// This work-item's 16-byte chunks of the key tile from k0: k and v rows k0 + j (d-contiguous) into Kd[j*LDQ + d],
// Vd[j*LDQ + d] as they are, zeros past Lk and past HEAD_DIM (to DK).
inline void copy_kv(__local ushort *Kd, __local ushort *Vd, const __global DATA *kb, const __global DATA *vb,
                    const int k0, const int Lk, const long HD, const int tid)
{
    for (int e = tid; e < BK * (DK / 8); e += WG) {
        const int j = e / (DK / 8), d = (e % (DK / 8)) * 8;
        const bool in = k0 + j < Lk && d < HEAD_DIM;
        const long at = in ? (long)(k0 + j) * HD + d : 0;
        CP_ASYNC16(Kd + j * LDQ + d, (const __global ushort *)kb + at, in ? 16 : 0);
        CP_ASYNC16(Vd + j * LDQ + d, (const __global ushort *)vb + at, in ? 16 : 0);
    }
}

// P V's B fragments of output tiles j (and j + 1 with _2) for the 16 keys from kk*16 of the key-major V tile:
// b0 = (V[2t][n], V[2t+1][n]), b1 = keys + 8, n = j*8 + g. ldmatrix.x4.trans: lane l names key row
// kk*16 + ((l >> 3) & 1)*8 + (l & 7) of column block j + (l >> 4); .x2 the first two matrices.
#if MMA_EMULATE
inline uint v_pair(const __local ushort *Vs, const int key, const int n)
{
    return (uint)Vs[key * LDQ + n] | ((uint)Vs[(key + 1) * LDQ + n] << 16);
}
#define V_FRAG(fb, Vs, kk, j) (fb[0] = v_pair(Vs, (kk) * 16 + 2 * t, (j) * 8 + g), \
                               fb[1] = v_pair(Vs, (kk) * 16 + 2 * t + 8, (j) * 8 + g))
#else
#define V_ROW(Vs, kk, j) ((Vs) + ((kk) * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDQ + (j) * 8)
#define V_FRAG2(fa, fb, Vs, kk, j)                                                                              \
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"                       \
                 : "=r"(fa[0]), "=r"(fa[1]), "=r"(fb[0]), "=r"(fb[1])                                           \
                 : "r"((uint)(size_t)(V_ROW(Vs, kk, j) + (lane >> 4) * 8)))
#define V_FRAG(fb, Vs, kk, j)                                                                                   \
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];"                              \
                 : "=r"(fb[0]), "=r"(fb[1]) : "r"((uint)(size_t)V_ROW(Vs, kk, j)))
#endif
#endif

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_flash_mma_f16(__global const DATA *q, __global const DATA *k, __global const DATA *v,
                             __global DATA *o, const int H, const int Lq, const int Lk, const float scale,
                             const int causal)
{
    // declared as uint4 (16-byte aligned: a ushort array may start at 2 mod 4, and the fragments' 32-bit reads of
    // a misaligned address fault on NVIDIA); BQ * LDQ, BK * LDQ and DN * LDV are multiples of 8
#if ASYNC
    __local uint4 Qs4[BQ * LDQ / 8], Ks4[2 * BK * LDQ / 8], Vs4[2 * BK * LDQ / 8];    // two buffers, V key-major
    __local ushort *Qs = (__local ushort *)Qs4;
#else
    __local uint4 Qs4[BQ * LDQ / 8], Ks4[BK * LDQ / 8], Vt4[DN * LDV / 8];
    __local ushort *Qs = (__local ushort *)Qs4, *Ks = (__local ushort *)Ks4, *Vt = (__local ushort *)Vt4;
#endif
    MMA_SCRATCH;
    QUAD_SCRATCH;

    const int tid = get_local_id(0);
    const int lane = tid % 32, warp = tid / 32;
    const int g = lane >> 2, t = lane & 3;
    const int bh = get_group_id(1);
    const int b = bh / H;
    const int h = bh - b * H;
    const int q0 = get_group_id(0) * BQ;
    const long HD = (long)H * HEAD_DIM;
    const __global DATA *qb = q + (long)b * Lq * HD + h * HEAD_DIM;
    const __global DATA *kb = k + (long)b * Lk * HD + h * HEAD_DIM;
    const __global DATA *vb = v + (long)b * Lk * HD + h * HEAD_DIM;
    const float sl2 = scale * M_LOG2E_F;                 // scores in log2 units: 2^(s*sl2) = e^(s*scale)

    for (int e = tid; e < BQ * DK; e += WG) {            // the query tile, once
        const int i = e / DK, d = e - i * DK;
        stage_half(Qs + i * LDQ + d, qb, (long)min(q0 + i, Lq - 1) * HD + d, d < HEAD_DIM);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint qf[DK / 16][4];                                 // this warp's 16 rows of Q as A fragments
MMA_UNROLL
    for (int ks = 0; ks < DK / 16; ++ks) {
        const __local ushort *p = Qs + (warp * 16 + g) * LDQ + ks * 16 + 2 * t;
        qf[ks][0] = *(const __local uint *)p;
        qf[ks][1] = *(const __local uint *)(p + 8 * LDQ);
        qf[ks][2] = *(const __local uint *)(p + 8);
        qf[ks][3] = *(const __local uint *)(p + 8 * LDQ + 8);
    }

    const int row[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float acc[OT][4];
MMA_UNROLL
    for (int j = 0; j < OT; ++j)
MMA_UNROLL
        for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;

    const int kend = causal ? min(Lk, q0 + BQ) : Lk;    // causal: row i sees keys j <= i < q0 + BQ
#if ASYNC
    copy_kv((__local ushort *)Ks4, (__local ushort *)Vs4, kb, vb, 0, Lk, HD, tid);
    CP_COMMIT();
#endif
    for (int k0 = 0, it = 0; k0 < kend; k0 += BK, ++it) {
#if ASYNC
        // 1. the next tile's copies into the other buffers (read by tile it - 1, before the loop's last barrier),
        // then wait for this tile's (one group a tile, empty past the end: at most the next one in flight)
        __local ushort *Ks = (__local ushort *)Ks4 + (it & 1) * BK * LDQ;
        __local ushort *Vs = (__local ushort *)Vs4 + (it & 1) * BK * LDQ;
        if (k0 + BK < kend)
            copy_kv((__local ushort *)Ks4 + ((it + 1) & 1) * BK * LDQ,
                    (__local ushort *)Vs4 + ((it + 1) & 1) * BK * LDQ, kb, vb, k0 + BK, Lk, HD, tid);
        CP_COMMIT();
        CP_WAIT_GROUP(1);
#else
        // 1. K and V tiles as half, zeros past Lk and D
        for (int e = tid; e < BK * DK; e += WG) {
            const int j = e / DK, d = e - j * DK;
            stage_half(Ks + j * LDQ + d, kb, (long)(k0 + j) * HD + d, k0 + j < Lk && d < HEAD_DIM);
        }
        for (int e = tid; e < BK * DN; e += WG) {
            const int j = e / DN, d = e - j * DN;
            stage_half(Vt + d * LDV + j, vb, (long)(k0 + j) * HD + d, k0 + j < Lk && d < HEAD_DIM);
        }
#endif
        barrier(CLK_LOCAL_MEM_FENCE);

        // 2. S = Q K^T, scaled to log2 units and masked
        float s[NT][4];
MMA_UNROLL
        for (int j = 0; j < NT; ++j) {
MMA_UNROLL
            for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
MMA_UNROLL
            for (int ks = 0; ks < DK / 16; ++ks) {
                const __local ushort *p = Ks + (j * 8 + g) * LDQ + ks * 16 + 2 * t;
                const uint fb[2] = {*(const __local uint *)p, *(const __local uint *)(p + 8)};
                MMA(s[j], qf[ks], fb);
            }
        }
        float mx[2] = {-INFINITY, -INFINITY};
MMA_UNROLL
        for (int j = 0; j < NT; ++j)
MMA_UNROLL
            for (int e = 0; e < 4; ++e) {
                const int col = k0 + j * 8 + 2 * t + (e & 1), r = e >> 1;
                const bool seen = col < Lk && (!causal || col <= row[r]);
                s[j][e] = seen ? s[j][e] * sl2 : -INFINITY;
                mx[r] = fmax(mx[r], s[j][e]);
            }

        // 3. online softmax
        float alpha[2];
MMA_UNROLL
        for (int r = 0; r < 2; ++r) {
            const float mt = fmax(m[r], QUAD_MAX(mx[r]));
            alpha[r] = exp2(m[r] - mt);
            m[r] = mt;
        }
        float ps[2] = {0.0f, 0.0f};
MMA_UNROLL
        for (int j = 0; j < NT; ++j)
MMA_UNROLL
            for (int e = 0; e < 4; ++e) {
                s[j][e] = exp2(s[j][e] - m[e >> 1]);
                ps[e >> 1] += s[j][e];
            }
MMA_UNROLL
        for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + ps[r];
MMA_UNROLL
        for (int j = 0; j < OT; ++j)
MMA_UNROLL
            for (int e = 0; e < 4; ++e) acc[j][e] *= alpha[e >> 1];

        // 4. acc += P V, P's A fragments straight from the score accumulators
MMA_UNROLL
        for (int kk = 0; kk < BK / 16; ++kk) {
            const uint pf[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]), pack_half2(s[2 * kk][2], s[2 * kk][3]),
                                pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#if ASYNC && !MMA_EMULATE
MMA_UNROLL
            for (int j = 0; j + 1 < OT; j += 2) {
                uint fb0[2], fb1[2];
                V_FRAG2(fb0, fb1, Vs, kk, j);
                MMA(acc[j], pf, fb0);
                MMA(acc[j + 1], pf, fb1);
            }
#if OT % 2
            {
                uint fb[2];
                V_FRAG(fb, Vs, kk, OT - 1);
                MMA(acc[OT - 1], pf, fb);
            }
#endif
#else
MMA_UNROLL
            for (int j = 0; j < OT; ++j) {
#if ASYNC
                uint fb[2];
                V_FRAG(fb, Vs, kk, j);
#else
                const __local ushort *p = Vt + (j * 8 + g) * LDV + kk * 16 + 2 * t;
                const uint fb[2] = {*(const __local uint *)p, *(const __local uint *)(p + 8)};
#endif
                MMA(acc[j], pf, fb);
            }
#endif
        }
        barrier(CLK_LOCAL_MEM_FENCE);   // the tiles are read before the next iteration overwrites them
    }

    float inv[2];
MMA_UNROLL
    for (int r = 0; r < 2; ++r) inv[r] = 1.0f / QUAD_SUM(l[r]);
MMA_UNROLL
    for (int j = 0; j < OT; ++j)
MMA_UNROLL
        for (int e = 0; e < 4; ++e) {
            const int i = row[e >> 1], d = j * 8 + 2 * t + (e & 1);
            if (i < Lq && d < HEAD_DIM) STORE(o, ((long)b * Lq + i) * HD + h * HEAD_DIM + d, acc[j][e] * inv[e >> 1]);
        }
}
