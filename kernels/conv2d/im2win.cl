// conv2d/im2win.cl: conv2d through the im2win layout (Lu, Chu, Liu 2022): for each output row, the input rows of
// its KH-row window are laid out once, column after column, so that the window of every output column of that row
// is one contiguous run and neighbouring output columns' windows overlap in memory instead of being copied again
// (as im2col does).
//
// Shapes: x (N, C, H, W), weight (O, C, KH, KW), y (N, O, OH, OW), packed NCHW (conv2d/naive.cl);
// WWIN = (OW - 1)*SW + KW input columns (padding included) are spanned by one output row's windows. The host
// builds the layout for a chunk of output rows at a time, rows row0 <= row < row0 + RN of the batch
// (row = n*OH + oy), so the scratch stays bounded;
// the chunk's rows come first so that a chunk is one contiguous block (the paper orders (n, c, oy); per row and
// channel the strip is the same):
//   win[row - row0, c, u*KH + i] = win[((row - row0)*C + c)*WWIN*KH + u*KH + i]
//                                = x[n, c, oy*SH - PT + i, u - PL]   (0 outside the input: the zero padding),
//       0 <= u < WWIN, 0 <= i < KH                                               (conv2d_im2win_transform)
//   wt[c, j*KH + i, o] = wt[(c*KW*KH + j*KH + i)*OP + o] = w[o, c, i, j]  (0 for O <= o < OP, OP = O rounded up
//                                                          to OC_VEC: the host pads the filters' tail)
//                                                                              (conv2d_im2win_weights)
// so that the window of output (oy, ox) is the run win[row - row0, c, ox*SW*KH + t], t = j*KH + i < KW*KH, and
//   y[n, o, oy, ox] = bias[o] + sum_c sum_t wt[c, t, o] * win[row - row0, c, ox*SW*KH + t]       (conv2d_im2win)
// Memory: N*OH*C*WWIN*KH elements in all against im2col's N*C*KH*KW*OH*OW: about 1/KW of it for stride 1.
// The inner kernel is a GEMM over K = C*KW*KH whose right-hand "matrix" is the overlapping windows, with a CPU-style
// register block: one work-item holds OC_VEC output channels (one REAL vector, loaded with vload from wt's
// contiguous o) x OW_BLOCK neighbouring output columns of one row, and per step t loads one weight vector and
// OW_BLOCK window elements (each broadcast against the vector).
// Tails: output channels past O compute on the zero-padded filters and are not written; the last block of columns
// reads the last valid column's window again and does not write the surplus; the host rounds NDRanges up to the
// work-group size, surplus work-items return at once.
// float16 (DATA half): x, w, bias, res, y and the layouts win and wt are half (copies of x's and w's values: exact);
// the sums are REAL (float) and the output is rounded once.
// has_bias (0 or 1): whether conv2d_im2win reads the bias; has_res: whether and how the residual res, added last, is
// (CONV_RESIDUAL in common.h).
// Knobs (-D):
//   WG        work-group size of the two layout kernels (1-D, e.g. 64, 256)
//   OC_VEC    output channels per work-item of conv2d_im2win, as one vector: 2, 4, 8 or 16
//   OW_BLOCK  neighbouring output columns per work-item of conv2d_im2win (register block, e.g. 2 .. 8)
//   LOCAL_O   work-group size of conv2d_im2win along the output-channel vectors (1: one work-item per group)
#include "common.h"
#ifndef WG
#error "WG (work-group size of the layout kernels) must be set with -D"
#endif
#ifndef OC_VEC
#error "OC_VEC (output channels per work-item: 2, 4, 8 or 16) must be set with -D"
#endif
#ifndef OW_BLOCK
#error "OW_BLOCK (output columns per work-item) must be set with -D"
#endif
#ifndef LOCAL_O
#error "LOCAL_O (work-group size of conv2d_im2win) must be set with -D"
#endif
#define REALV CAT(REAL, OC_VEC)          // e.g. float8
#ifdef DATA_HALF
#define VLOADV CAT(vload_half, OC_VEC)   // wt's OC_VEC halves as one float vector
#else
#define VLOADV CAT(vload, OC_VEC)        // e.g. vload8
#endif
#define VSTOREV CAT(vstore, OC_VEC)      // into a private REAL array

// One work-item per (row, channel, window column u): writes the KH elements of column u, contiguous in win.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void conv2d_im2win_transform(__global const DATA *x, __global DATA *win, const long row0, const long columns,
                             const int C, const int H, const int W, const int OH, const int WWIN, const int KH,
                             const int SH, const int PT, const int PL)
{
    const long idx = get_global_id(0);                     // ((row - row0)*C + c)*WWIN + u
    if (idx >= columns) return;
    const int u = idx % WWIN;
    const long rc = idx / WWIN;                            // (row - row0)*C + c
    const int c = rc % C;
    const long row = row0 + rc / C;
    const long n = row / OH;
    const int oy = row % OH;
    const int xx = u - PL;
    const bool inside = xx >= 0 && xx < W;
    const __global DATA *xc = x + (n * C + c) * H * (long)W + xx;
    __global DATA *dst = win + idx * KH;
    for (int i = 0; i < KH; ++i) {
        const int yy = oy * SH - PT + i;
        STORE(dst, i, (inside && yy >= 0 && yy < H) ? LOAD(xc, (long)yy * W) : (REAL)0);
    }
}

// One work-item per wt element, in wt's order: the filters transposed to (C, KW*KH taps column-major, OP).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void conv2d_im2win_weights(__global const DATA *w, __global DATA *wt, const int total, const int C, const int O,
                           const int OP, const int KH, const int KW)
{
    const int idx = get_global_id(0);                      // filters stay below 2^31 elements
    if (idx >= total) return;
    const int o = idx % OP;
    const int ct = idx / OP;                               // c*KW*KH + t
    const int t = ct % (KW * KH);
    const int c = ct / (KW * KH);
    STORE(wt, idx, o < O ? LOAD(w, ((o * C + c) * KH + t % KH) * KW + t / KH) : (REAL)0);
}

// NDRange (OP / OC_VEC rounded up to LOCAL_O, ceil(OW / OW_BLOCK), RN), work-groups (LOCAL_O, 1, 1).
__kernel __attribute__((reqd_work_group_size(LOCAL_O, 1, 1)))
void conv2d_im2win(__global const DATA *win, __global const DATA *wt, __global const DATA *bias,
                   __global const DATA *res, __global DATA *y, const long row0, const int C, const int O,
                   const int OP, const int OH, const int OW, const int WWIN, const int KH, const int KW,
                   const int SW, const int has_bias, const int has_res)
{
    const int o0 = get_global_id(0) * OC_VEC;
    const int ox0 = get_global_id(1) * OW_BLOCK;
    const int rl = get_global_id(2);                        // row - row0
    if (o0 >= OP) return;
    const long row = row0 + rl;                             // n*OH + oy
    const long n = row / OH;
    const int oy = row % OH;
    const int KK = KW * KH;
    const int step = SW * KH;                               // distance between neighbouring output columns' windows
    int xofs[OW_BLOCK];                                     // the tail block re-reads the last column's window
    for (int s = 0; s < OW_BLOCK; ++s) xofs[s] = min(ox0 + s, OW - 1) * step;
    REALV acc[OW_BLOCK];
    for (int s = 0; s < OW_BLOCK; ++s) acc[s] = 0;
    for (int c = 0; c < C; ++c) {
        const __global DATA *wrow = win + ((long)rl * C + c) * WWIN * KH;
        const __global DATA *wc = wt + (long)c * KK * OP + o0;
        for (int t = 0; t < KK; ++t) {
            const REALV a = VLOADV(0, wc + (long)t * OP);
            for (int s = 0; s < OW_BLOCK; ++s) acc[s] = fma(a, (REALV)(LOAD(wrow, xofs[s] + t)), acc[s]);
        }
    }
    for (int s = 0; s < OW_BLOCK; ++s) {
        if (ox0 + s >= OW) break;
        REAL out[OC_VEC];
        VSTOREV(acc[s], 0, out);
        for (int r = 0; r < OC_VEC && o0 + r < O; ++r) {
            const REAL b = has_bias ? LOAD(bias, o0 + r) : 0;
            const long at = ((n * O + o0 + r) * OH + oy) * (long)OW + ox0 + s;
            STORE(y, at, (out[r] + b) + CONV_RESIDUAL(res, has_res, at, n * O + o0 + r));
        }
    }
}
