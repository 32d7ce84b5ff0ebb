// conv2d/implicit_mma_f16.cl, conv2d_implicit_mma_f16: conv2d as an implicit GEMM on NVIDIA tensor cores in float16
// (mma.sync m16n8k16 f16 x f16 -> f32, gemm/mma_f16.h): the product of im2col (conv2d/im2col.cl)
//     y[n, o, oy, ox] = sum_r W[o, r] * cols[r, q] + bias[o] (+ residual),   r = (c*KH + i)*KW + j < R = C*KH*KW,
//     q = (n*OH + oy)*OW + ox < Q = N*OH*OW,   cols[r, q] = x[n, c, oy*SH - PT + i, ox*SW - PL + j] (0 outside)
// without the lowered matrix: each work-group gathers its KWG x NWG slice of cols straight from x into local
// memory as half (and its MWG x KWG slice of the weight, (O, R) row-major, float or half with A_HALF), so the
// 9x larger lowered matrix of a 3x3 convolution is never written or read. Rows of C are output channels, columns
// output positions of the whole batch; the epilogue scatters C into NCHW with the bias and the residual
// (CONV_RESIDUAL in common.h: has_res 0, 1 of y's shape, 2 of (N, O, 1, 1)).
// Gather: a work-item keeps one column q (it was MMA_WGS % NWG == 0: the host checks it), so its (n, oy, ox) and
// input window origin are computed once, and a run of consecutive rows r of it, split into (c, i, j) once a step.
// Precision: as gemm/mma_f16.cl (both operands rounded to half, float32 accumulation). float32 (x, bias, residual
// and y of REAL = float) or float16 (-DDATA_HALF: every array of DATA = half, read and written with LOAD / STORE;
// the gather copies x's half bits as they are, the weight is then half too, A_HALF); never float64.
// Split-K (the deep, narrow products of the UNet's low-resolution levels: O = 1280 by Q = 128 at 8x8 is 10
// work-groups of 128 x 128 for a device of 132 compute units, over R = 11520): with `splits` > 1 work-group z of the
// NDRange's third dimension takes rows r in [z*k_chunk, (z+1)*k_chunk) (k_chunk a multiple of KWG) and stores its
// raw partial product in part[z, o, q] (float whatever DATA is: the only rounding to half is y's);
// conv2d_implicit_splitk_sum then adds the splits in order (deterministic: no atomics) with the bias and the residual
// into y. splits == 1: one launch, the epilogue in place.
// NDRange (ceil(Q/NWG)*32*WARPS_N, ceil(O/MWG)*WARPS_M, splits). Knobs (-D): those of gemm/mma_f16.h (MWG, NWG,
// KWG, WARPS_M, WARPS_N, MMA_EMULATE, LDSM), ASYNC and NHWC (below); MMA_WGS (32*WARPS_M*WARPS_N) must be a multiple
// of NWG; STAGES: local buffers of the staged tiles, 1 or 2 for the gather through registers (2 doubles the local
// memory and saves one barrier a step; the next step's global reads are in registers during the mma either way),
// 2 to 4 with NHWC 1 (conv2d_implicit_mma_f16_nhwc: no gather, both tiles copied with cp.async from channels-last
// half copies of x and the weight).
// Structural (-D, set by the host): A_HALF: the weight is stored as half; KH, KW: the kernel's size, compiled in so
// that the gather's splits of r into (c, i, j) divide by constants (1x1 and 3x3 in SD: two builds).
#include "common.h"
#include "gemm/gemm.h"
#include "gemm/mma_f16.h"
#if !defined(NHWC) || (NHWC != 0 && NHWC != 1) || (NHWC && STAGES < 2)
#error "NHWC (1: both tiles by cp.async from channels-last half copies, STAGES 2 to 4; 0: the gather) must be set"
#endif
#if !NHWC && STAGES > 2
#error "STAGES: 1 or 2 for the gather through registers (two buffers alternate; NHWC's cp.async takes more)"
#endif
#if !defined(ASYNC) || (ASYNC != 0 && ASYNC != 1) || (ASYNC && !NHWC && STAGES != 2)
#error "ASYNC (1: the half weight tile copied with cp.async, with STAGES 2; 0: through registers) must be set with -D"
#endif
// ASYNC 1 with a half weight (A_HALF) whose rows are 16-byte aligned (R % 8 == 0, checked at run time): the weight
// tile of step k0 + KWG is copied with cp.async into the other buffer during step k0's mma (gemm/mma_f16.h
// copy_rows); the gather always goes through registers (its rows start at any element: cp.async needs 16 bytes).
#if ASYNC && defined(A_HALF)
#define ASYNC_A 1
#else
#define ASYNC_A 0
#endif
#if !defined(KH) || !defined(KW)
#error "KH, KW (the convolution kernel's height and width) must be set with -D"
#endif
#if defined(DATA_HALF) && !defined(A_HALF)
#error "conv2d_implicit_mma_f16 in float16 (DATA_HALF) reads a half weight: A_HALF must be set"
#endif
#if MMA_WGS % NWG != 0
#error "conv2d_implicit_mma_f16 needs 32*WARPS_M*WARPS_N to be a multiple of NWG (a work-item keeps its column)"
#endif

// An element of cols as the gather stages it into Bs (half bits): float16, x's half bits as they are (an exact copy,
// no conversion); float32, x rounded to half (vstore_halfn, round to nearest even). 0 outside the input.
// GATHER_PUT(n, dst, regs): n (4 or 8) consecutive elements of regs into local memory at dst, in one store.
#ifdef DATA_HALF
#define GATHER_T ushort
#define GATHER_LD(p, i) (((const __global ushort *)(p))[i])
#define GATHER_PUT(n, dst, regs) (*(__local ushort##n *)(dst) = vload##n(0, (regs)))
#else
#define GATHER_T REAL
#define GATHER_LD(p, i) ((p)[i])
#define GATHER_PUT(n, dst, regs) vstore_half##n(vload##n(0, (regs)), 0, (__local half *)(dst))
#endif

// y[n, o, oy, ox] for C[o, q] (q = (n*OH + oy)*OW + ox = n*P + p), with the bias and the residual, inside y
#define CONV_STORE(o, q, v)                                                                                     \
    if ((o) < O && (q) < Q) {                                                                                   \
        const int no_ = ((q) / P) * O + (o);                                                                    \
        const long at_ = (long)no_ * P + (q) % P;                                                               \
        STORE(y, at_, ((v) + (has_bias ? LOAD(bias, o) : (REAL)0)) + CONV_RESIDUAL(res, has_res, at_, no_));   \
    }

// The accumulators out: split-K's raw partial products into part[z] (float), else y through CONV_STORE
#define PART_STORE(o, q, v) if ((o) < O && (q) < Q) pz[(long)(o) * Q + (q)] = (v);
#define CONV_EPILOGUE(acc)                                                                                      \
    if (splits > 1) {                                                                                           \
        __global float *pz = part + (long)get_group_id(2) * O * Q;                                              \
        MMA_STORE_ALL(acc, PART_STORE);                                                                         \
    } else {                                                                                                    \
        MMA_STORE_ALL(acc, CONV_STORE);                                                                         \
    }

PREFETCH_ROWS(a, A_T, MWG, KIND_A)

// This work-item's run of the gathered KWG x NWG slice of cols: column jc, the B_ELEMS consecutive rows from
// kk0 = (tid / NWG) * B_ELEMS, fetched into registers for step k0 (the row r split into (c, i, j) once, then
// stepped) and put into local memory (Bs[jc*LDS + kk0 ..], half bits) after the barrier in 16-byte stores (8-byte
// where B_ELEMS is 4): the warp's lanes take consecutive columns, so their global reads are consecutive positions
// of x and their stores rows of Bs 16 bytes apart in the banks.
#define B_STEP (MMA_WGS / NWG)
#define B_ELEMS (KWG / B_STEP)
#if KWG % B_STEP != 0 || B_ELEMS % 4 != 0
#error "conv2d_implicit_mma_f16 needs KWG to be a multiple of 4*MMA_WGS/NWG (each work-item's run of rows, in fours)"
#endif
inline void fetch_cols(GATHER_T *regs, const __global DATA *xq, const int k0, const int k_end, const bool q_in,
                       const int iy0, const int ix0, const int H, const int W, const int tid)
{
    int r = k0 + (tid / NWG) * B_ELEMS;
    int c = r / (KH * KW), i = (r % (KH * KW)) / KW, j = r % KW;
MMA_UNROLL
    for (int s = 0; s < B_ELEMS; ++s, ++r) {
        const int iy = iy0 + i, ix = ix0 + j;
        regs[s] = q_in && r < k_end && iy >= 0 && iy < H && ix >= 0 && ix < W
                  ? GATHER_LD(xq, ((long)c * H + iy) * W + ix) : (GATHER_T)0;
        if (++j == KW) {
            j = 0;
            if (++i == KH) {
                i = 0;
                ++c;
            }
        }
    }
}

inline void put_cols(__local ushort *Bs, const GATHER_T *regs, const int jc, const int tid)
{
    __local ushort *dst = Bs + jc * LDS + (tid / NWG) * B_ELEMS;
#if B_ELEMS % 8 == 0
MMA_UNROLL
    for (int s = 0; s < B_ELEMS; s += 8)
        GATHER_PUT(8, dst + s, regs + s);
#else
MMA_UNROLL
    for (int s = 0; s < B_ELEMS; s += 4)
        GATHER_PUT(4, dst + s, regs + s);
#endif
}

#if !NHWC
__kernel __attribute__((reqd_work_group_size(32 * WARPS_N, WARPS_M, 1)))
void conv2d_implicit_mma_f16(const __global DATA *restrict x, const __global A_T *restrict w,
                             const __global DATA *restrict bias, const __global DATA *restrict res,
                             __global DATA *restrict y, const int N, const int C, const int H, const int W,
                             const int O, const int OH, const int OW, const int SH,
                             const int SW, const int PT, const int PL, const int has_bias, const int has_res,
                             const int splits, const int k_chunk, __global float *restrict part)
{
    MMA_IDS;
    const int R = C * KH * KW, P = OH * OW, Q = N * P;
    __local uint4 As4[STAGES * MWG * LDS / 8];
    __local uint4 Bs4[STAGES * NWG * LDS / 8];
    MMA_SCRATCH;

    // this work-item's column of the gathered tile: output position q = n0 + jc
    const int jc = tid % NWG, q = n0 + jc;
    const bool q_in = q < Q;
    const int qn = q_in ? q / P : 0, qp = q_in ? q % P : 0;
    const int iy0 = (qp / OW) * SH - PT, ix0 = (qp % OW) * SW - PL;
    const __global DATA *xq = x + (long)qn * C * H * W;
    const __global A_T *wm0 = w + (long)m0 * R;

    float acc[MI][NI][4];
    MMA_ZERO(acc);

    const int k_begin = splits > 1 ? get_group_id(2) * k_chunk : 0;
    const int k_end = splits > 1 ? min(R, k_begin + k_chunk) : R;
    // Software pipeline: the global reads of step k0 + KWG are issued into registers before step k0's mma, so
    // their latency overlaps it; STAGES 2 alternates two local buffers, so one barrier a step suffices (a buffer
    // is rewritten only after every warp has passed the barrier that follows the mma reading it), STAGES 1 waits
    // for the mma before the next step's stores.
    A_T4 ra[PF_GROUPS(MWG)];
    GATHER_T rb[B_ELEMS];
    const bool a_async = ASYNC_A && R % 8 == 0;    // a constant false without ASYNC_A: the copies compile away
    // the weight tile of step k0: into buffer `buf` by cp.async (one commit group), else into registers
#define FETCH_A(k0, buf)                                                                                        \
    if (a_async) {                                                                                              \
        copy_rows((__local ushort *)As4 + (buf) * MWG * LDS, (const __global ushort *)wm0 + (k0), R, MWG, O - m0, \
                  k_end - (k0), tid);                                                                           \
        CP_COMMIT();                                                                                            \
    } else                                                                                                      \
        fetch_rows_a(ra, wm0 + (k0), R, O - m0, k_end - (k0), R % 4 == 0, tid)
    if (k_begin < k_end) {
        FETCH_A(k_begin, 0);
        fetch_cols(rb, xq, k_begin, k_end, q_in, iy0, ix0, H, W, tid);
    }
    for (int k0 = k_begin, step = 0; k0 < k_end; k0 += KWG, ++step) {
        __local ushort *As = (__local ushort *)As4 + (STAGES == 2 ? (step & 1) * MWG * LDS : 0);
        __local ushort *Bs = (__local ushort *)Bs4 + (STAGES == 2 ? (step & 1) * NWG * LDS : 0);
        if (!a_async)
            put_rows_a(As, ra, tid);
        put_cols(Bs, rb, jc, tid);
        if (a_async)
            CP_WAIT_GROUP(0);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k0 + KWG < k_end) {     // into the other buffer, which step - 1's mma read before this barrier
            FETCH_A(k0 + KWG, (step + 1) & 1);
            fetch_cols(rb, xq, k0 + KWG, k_end, q_in, iy0, ix0, H, W, tid);
        }
        MMA_STEP(acc, As, Bs, wm, wn, lane, warp);
#if STAGES == 1
        barrier(CLK_LOCAL_MEM_FENCE);
#endif
    }

    CONV_EPILOGUE(acc);
}

#else
// NHWC 1: both tiles copied global -> local with cp.async (gemm/mma_sync_f16.h), STAGES (2 to 4) buffers deep,
// from channels-last half copies the host makes first with conv2d_x_to_nhwc_half and conv2d_w_to_nhwc_half
// (below): xt (N, H, W, C) and wt (O, KH, KW, C). The reduction runs over r' = ((i*KW + j)*CB + cb)*KWG + cc
// (CB = ceil(C / KWG)) for channel c = cb*KWG + cc < C: step t of KWG is one tap (i, j) and one block of
// channels, so a column's KWG values are consecutive halves of xt at one input position (16-byte chunks, the
// src-size operand zero-filling outside the image and past C), and a weight row's are consecutive halves of wt.
// Needs C % 8 == 0 (16-byte aligned chunks: the host checks it and takes the gather elsewhere). Split-K: k_chunk
// (a multiple of KWG) of the padded depth KH*KW*CB*KWG.
// This work-item's chunks of the KWG x NWG slice of the columns: chunk e = tid + s*MMA_WGS is column e / (KWG/8),
// channel offset 8*(e % (KWG/8)); its column's sample and input window origin are found once.
#define NHWC_CHUNKS ((NWG * (KWG / 8) + MMA_WGS - 1) / MMA_WGS)

__kernel __attribute__((reqd_work_group_size(32 * WARPS_N, WARPS_M, 1)))
void conv2d_implicit_mma_f16_nhwc(const __global ushort *restrict xt, const __global ushort *restrict wt,
                                  const __global DATA *restrict bias, const __global DATA *restrict res,
                                  __global DATA *restrict y, const int N, const int C, const int H, const int W,
                                  const int O, const int OH, const int OW, const int SH, const int SW, const int PT,
                                  const int PL, const int has_bias, const int has_res, const int splits,
                                  const int k_chunk, __global float *restrict part)
{
    MMA_IDS;
    const int P = OH * OW, Q = N * P, R = KH * KW * C, CB = (C + KWG - 1) / KWG;
    __local uint4 As4[STAGES * MWG * LDS / 8];
    __local uint4 Bs4[STAGES * NWG * LDS / 8];
    MMA_SCRATCH;

    long base[NHWC_CHUNKS];   // xt's offset of the column's sample; iy0 far outside for a column past Q
    int iy0[NHWC_CHUNKS], ix0[NHWC_CHUNKS];
MMA_UNROLL
    for (int s = 0; s < NHWC_CHUNKS; ++s) {
        const int q = n0 + (tid + s * MMA_WGS) / (KWG / 8), qp = q % P;
        base[s] = (long)(q / P) * H * W * C;
        iy0[s] = q < Q ? (qp / OW) * SH - PT : -0x40000000;
        ix0[s] = (qp % OW) * SW - PL;
    }
    const __global ushort *wm0 = wt + (long)m0 * R;

    float acc[MI][NI][4];
    MMA_ZERO(acc);
    const int t_begin = splits > 1 ? get_group_id(2) * (k_chunk / KWG) : 0;
    const int t_end = splits > 1 ? min(KH * KW * CB, t_begin + k_chunk / KWG) : KH * KW * CB;
    const int steps = t_end - t_begin;
    // step s's tiles (tap (i, j), channels c0 ..) into buffer s % STAGES: the weight rows by copy_rows, the columns
    // chunk by chunk
#define NHWC_COPY(s)                                                                                            \
    {                                                                                                           \
        const int t_ = t_begin + (s), ij_ = t_ / CB, c0_ = (t_ % CB) * KWG, i_ = ij_ / KW, j_ = ij_ % KW;       \
        copy_rows((__local ushort *)As4 + ((s) % STAGES) * MWG * LDS, wm0 + ij_ * C + c0_, R, MWG, O - m0,      \
                  C - c0_, tid);                                                                                \
        __local ushort *bs_ = (__local ushort *)Bs4 + ((s) % STAGES) * NWG * LDS;                              \
MMA_UNROLL                                                                                                      \
        for (int c_ = 0; c_ < NHWC_CHUNKS; ++c_) {                                                              \
            const int e_ = tid + c_ * MMA_WGS, kk_ = (e_ % (KWG / 8)) * 8;                                      \
            const int iy_ = iy0[c_] + i_, ix_ = ix0[c_] + j_;                                                   \
            const bool in_ = iy_ >= 0 && iy_ < H && ix_ >= 0 && ix_ < W && c0_ + kk_ < C;                       \
            if (e_ < NWG * (KWG / 8))                                                                           \
                CP_ASYNC16(bs_ + (e_ / (KWG / 8)) * LDS + kk_,                                                  \
                           in_ ? xt + base[c_] + ((long)iy_ * W + ix_) * C + c0_ + kk_ : xt, in_ ? 16 : 0);    \
        }                                                                                                       \
    }
    // the GEMM's cp.async pipeline (gemm/mma_f16.cl): steps step+1 .. step+STAGES-1 in flight during step's mma, one
    // commit group a step (empty past the end), the copy of step + STAGES - 1 issued after step's barrier into the
    // buffer step - 1's mma read
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < steps)
            NHWC_COPY(s);
        CP_COMMIT();
    }
    for (int step = 0; step < steps; ++step) {
        CP_WAIT_STAGE();
        barrier(CLK_LOCAL_MEM_FENCE);
        if (step + STAGES - 1 < steps)
            NHWC_COPY(step + STAGES - 1);
        CP_COMMIT();
        MMA_STEP(acc, (__local ushort *)As4 + (step % STAGES) * MWG * LDS,
                 (__local ushort *)Bs4 + (step % STAGES) * NWG * LDS, wm, wn, lane, warp);
    }

    CONV_EPILOGUE(acc);
}

// xt[n, p, c] = x[n, c, p] as half bits (float rounded to nearest even; half copied exactly), x (N, C, H*W) of DATA:
// a 32 x 32 tile through local memory, so that both the reads (along p) and the writes (along c) are consecutive.
// NDRange (ceil(P/32)*32, ceil(C/32)*8, N), work-groups (32, 8).
__kernel __attribute__((reqd_work_group_size(32, 8, 1)))
void conv2d_x_to_nhwc_half(const __global DATA *restrict x, __global half *restrict xt, const int C, const int P)
{
    __local float tile[32][33];
    const int p0 = get_group_id(0) * 32, c0 = get_group_id(1) * 32, lx = get_local_id(0);
    x += (long)get_group_id(2) * C * P;
    xt += (long)get_group_id(2) * C * P;
    for (int r = get_local_id(1); r < 32; r += 8)
        tile[r][lx] = c0 + r < C && p0 + lx < P ? (float)LOAD(x, (long)(c0 + r) * P + p0 + lx) : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = get_local_id(1); r < 32; r += 8)
        if (p0 + r < P && c0 + lx < C)
            vstore_half_rte(tile[lx][r], (long)(p0 + r) * C + c0 + lx, xt);
}

// wt[o, s, c] = w[o, c, s] as half bits for the weight (O, C, S = KH*KW taps) of A_T: one work-item per (c, o) reads
// its S consecutive taps, and at each tap a warp's lanes (consecutive c) write consecutive halves; no local memory
// (S is 9 or 1: a 32 x 32 tile would leave most of its lanes idle). NDRange (C rounded up, O).
__kernel void conv2d_w_to_nhwc_half(const __global A_T *restrict w, __global half *restrict wt, const int C,
                                    const int S)
{
    const int c = get_global_id(0), o = get_global_id(1);
    if (c >= C)
        return;
    const __global A_T *src = w + ((long)o * C + c) * S;
    for (int s = 0; s < S; ++s)
        vstore_half_rte((float)LD_A(src, s), ((long)o * S + s) * C + c, wt);
}
#endif

// y = sum_z part[z] (+ bias, residual) for split-K: one work-item per (o, q), the splits added in order.
__kernel void conv2d_implicit_splitk_sum(const __global float *restrict part, const __global DATA *restrict bias,
                                         const __global DATA *restrict res, __global DATA *restrict y, const int O,
                                         const int Q, const int P, const int splits, const int has_bias,
                                         const int has_res)
{
    const long e = get_global_id(0);
    if (e >= (long)O * Q)
        return;
    float v = 0.0f;
    for (int z = 0; z < splits; ++z)
        v += part[z * (long)O * Q + e];
    const int o = e / Q, q = e % Q;
    CONV_STORE(o, q, v);
}
