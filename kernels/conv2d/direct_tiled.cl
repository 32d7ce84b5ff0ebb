// conv2d/direct_tiled.cl, conv2d_direct_tiled: a direct, tiled convolution. One work-group computes a
// TILE_H x (TILE_W*PX_PER_ITEM) tile of output positions of one sample for OC_PER_ITEM output channels. Each
// work-item owns PX_PER_ITEM neighbouring output positions of one row and, for each, OC_PER_ITEM accumulators held
// as one REAL vector (register blocking over output channels and columns: per filter tap, one vector load of
// OC_PER_ITEM weights and PX_PER_ITEM input values broadcast against it). Input channels are taken CC at a time
// (CC <= C_CHUNK, chosen by the host so that the staging fits local memory): the work-group copies the input patch
// of its tile, halo included, and the OC_PER_ITEM filters of those channels into local memory, then every work-item
// reads only local memory.
//
// Shapes: x (N, C, H, W), weight (O, C, KH, KW), y (N, O, OH, OW), packed NCHW (conv2d/naive.cl). The arrays are of
// DATA (REAL, or half for float16: common.h), read and written with LOAD / STORE; local memory and the sums are REAL.
// Local memory (REAL elements), TOW = TILE_W*PX_PER_ITEM, PH = (TILE_H - 1)*SH + KH, PW = (TOW - 1)*SW + KW:
//   xs[cc, py, px] = xs[(cc*PH + py)*PW + px] = x[n, c0 + cc, ty*TILE_H*SH - PT + py, tx*TOW*SW - PL + px]
//                    (0 outside the input: the zero padding; the halo is the KH - SH rows / KW - SW columns past
//                    the tile's own)
//   ws[cc, t, r]     = ws[(cc*KH*KW + t)*OC_PER_ITEM + r] = w[o0 + r, c0 + cc, t / KW, t % KW]  (0 for o0 + r >= O)
// The host passes one __local buffer of CC*(PH*PW + KH*KW*OC_PER_ITEM) elements.
// NDRange (ceil(OW / TOW)*TILE_W, ceil(OH / TILE_H)*TILE_H, N*OBLOCKS), OBLOCKS = ceil(O / OC_PER_ITEM), with
// work-groups (TILE_W, TILE_H, 1). Tails: work-items past OW or OH still stage and meet the barriers, and do not
// write; filters past O are staged as zeros and their outputs are not written.
// has_bias (0 or 1): whether the bias argument is read; has_res: whether and how the residual res, added last, is
// (CONV_RESIDUAL in common.h).
// Knobs (-D):
//   TILE_H       output rows per work-group (the work-group's second dimension, e.g. 4, 8, 16)
//   TILE_W       work-items per work-group along a row (the work-group's first dimension, e.g. 4, 8, 16)
//   PX_PER_ITEM  neighbouring output columns per work-item (register block, e.g. 1, 2, 4, 8)
//   OC_PER_ITEM  output channels per work-item, one REAL vector of accumulators: 2, 4, 8 or 16
//   C_CHUNK      most input channels staged in local memory at a time (the host may pass fewer as CC)
//   (TILE_H * TILE_W work-items, OC_PER_ITEM * PX_PER_ITEM accumulators and the staging must fit the device:
//   registry/linalg.py _direct_fits)
#include "common.h"
#ifndef TILE_H
#error "TILE_H (output rows per work-group) must be set with -D"
#endif
#ifndef TILE_W
#error "TILE_W (work-items per work-group along a row) must be set with -D"
#endif
#ifndef PX_PER_ITEM
#error "PX_PER_ITEM (output columns per work-item) must be set with -D"
#endif
#ifndef OC_PER_ITEM
#error "OC_PER_ITEM (output channels per work-item: 2, 4, 8 or 16) must be set with -D"
#endif
#ifndef C_CHUNK
#error "C_CHUNK (most input channels staged at a time) must be set with -D"
#endif
#define TILE_ITEMS (TILE_H * TILE_W)
#define TOW (TILE_W * PX_PER_ITEM) // output columns per work-group
#define REALV CAT(REAL, OC_PER_ITEM)
#define VLOADV CAT(vload, OC_PER_ITEM)
#define VSTOREV CAT(vstore, OC_PER_ITEM)

__kernel __attribute__((reqd_work_group_size(TILE_W, TILE_H, 1)))
void conv2d_direct_tiled(__global const DATA *x, __global const DATA *w, __global const DATA *bias,
                         __global const DATA *res, __global DATA *y, __local REAL *lmem,
                         const int C, const int H, const int W, const int O, const int KH, const int KW,
                         const int OH, const int OW, const int SH, const int SW, const int PT, const int PL,
                         const int CC, const int OBLOCKS, const int has_bias, const int has_res)
{
    const int lx = get_local_id(0), ly = get_local_id(1);
    const int lid = ly * TILE_W + lx;
    const int ox0 = get_group_id(0) * TOW + lx * PX_PER_ITEM;
    const int oy = get_group_id(1) * TILE_H + ly;
    const long n = get_global_id(2) / OBLOCKS;
    const int o0 = (get_global_id(2) % OBLOCKS) * OC_PER_ITEM;
    const int PH = (TILE_H - 1) * SH + KH, PW = (TOW - 1) * SW + KW;
    const int patch = PH * PW, KK = KH * KW;
    const int iy0 = get_group_id(1) * TILE_H * SH - PT;
    const int ix0 = get_group_id(0) * TOW * SW - PL;
    __local REAL *xs = lmem;
    __local REAL *ws = lmem + CC * patch;

    REALV acc[PX_PER_ITEM];
    for (int p = 0; p < PX_PER_ITEM; ++p) acc[p] = 0;
    for (int c0 = 0; c0 < C; c0 += CC) {
        const int cn = min(CC, C - c0);
        // GlobalToLocal: the input patch of cn channels, then their filters (output channel fastest)
        for (int e = lid; e < cn * patch; e += TILE_ITEMS) {
            const int cc = e / patch, py = (e % patch) / PW, px = e % PW;
            const int yy = iy0 + py, xx = ix0 + px;
            xs[e] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? LOAD(x, ((n * C + c0 + cc) * H + yy) * (long)W + xx)
                                                             : (REAL)0;
        }
        for (int e = lid; e < cn * KK * OC_PER_ITEM; e += TILE_ITEMS) {
            const int r = e % OC_PER_ITEM, ct = e / OC_PER_ITEM;          // ct = cc*KK + t
            const int o = o0 + r;
            ws[e] = o < O ? LOAD(w, ((long)o * C + c0) * KK + ct) : (REAL)0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        // LocalToPrivate and accumulate: every tap of every staged channel, for this work-item's positions
        for (int cc = 0; cc < cn; ++cc)
            for (int i = 0; i < KH; ++i) {
                const __local REAL *xr = xs + (cc * PH + ly * SH + i) * PW + lx * PX_PER_ITEM * SW;
                const __local REAL *wr = ws + (cc * KK + i * KW) * OC_PER_ITEM;
                for (int j = 0; j < KW; ++j) {
                    const REALV a = VLOADV(j, wr);
                    for (int p = 0; p < PX_PER_ITEM; ++p) acc[p] = fma(a, (REALV)(xr[p * SW + j]), acc[p]);
                }
            }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (oy >= OH) return;
    for (int p = 0; p < PX_PER_ITEM; ++p) {
        const int ox = ox0 + p;
        if (ox >= OW) break;
        REAL out[OC_PER_ITEM];
        VSTOREV(acc[p], 0, out);
        for (int r = 0; r < OC_PER_ITEM && o0 + r < O; ++r) {
            const REAL b = has_bias ? LOAD(bias, o0 + r) : (REAL)0;
            const long at = ((n * O + o0 + r) * OH + oy) * (long)OW + ox;
            STORE(y, at, (out[r] + b) + CONV_RESIDUAL(res, has_res, at, n * O + o0 + r));
        }
    }
}
