// conv2d/naive.cl, conv2d_naive: cross-correlation, NCHW, weight (O, C, KH, KW), optional bias (O,):
//   y[n, o, oy, ox] = bias[o] + sum_{c, i, j} w[o, c, i, j] * x[n, c, oy*SH - PT + i, ox*SW - PL + j]
// where taps outside the input (the zero padding: PT rows on top, PL columns on the left; the bottom and right
// padding only show in OH, OW) read as 0. Packed layouts, shared by every conv2d kernel:
//   x[n, c, h, w] = x[((n*C + c)*H + h)*W + w],  w[o, c, i, j] = w[((o*C + c)*KH + i)*KW + j],
//   y[n, o, oy, ox] = y[((n*O + o)*OH + oy)*OW + ox].
// One work-item per output element over the flat index (long: N*O*OH*OW >= 2^31 is fine); the host rounds the
// NDRange up and the tail returns early. has_bias (0 or 1): whether the bias argument is read (the host passes any
// buffer without one); has_res: whether and how res, added last, is read (CONV_RESIDUAL in common.h: y's shape, or
// (N, O, 1, 1); every conv2d kernel's epilogue).
// Arrays of DATA (REAL, or half for float16: common.h), read and written with LOAD / STORE; the sum in REAL.
// No -D knobs: one build per dtype.
#include "common.h"

__kernel void conv2d_naive(__global const DATA *x, __global const DATA *w, __global const DATA *bias,
                           __global const DATA *res, __global DATA *y, const long total,
                           const int C, const int H, const int W, const int O, const int KH, const int KW,
                           const int OH, const int OW, const int SH, const int SW, const int PT, const int PL,
                           const int has_bias, const int has_res)
{
    const long idx = get_global_id(0);
    if (idx >= total) return;
    const int ox = idx % OW;
    const int oy = (idx / OW) % OH;
    const int o = (idx / ((long)OW * OH)) % O;
    const long n = idx / ((long)OW * OH * O);
    const int y0 = oy * SH - PT;
    const int x0 = ox * SW - PL;
    REAL acc = 0;
    for (int c = 0; c < C; ++c) {
        const __global DATA *xc = x + (n * C + c) * H * (long)W;
        const __global DATA *wc = w + ((long)o * C + c) * KH * KW;
        for (int i = 0; i < KH; ++i) {
            const int yy = y0 + i;
            if (yy < 0 || yy >= H) continue;
            for (int j = 0; j < KW; ++j) {
                const int xx = x0 + j;
                if (xx < 0 || xx >= W) continue;
                acc += LOAD(wc, i * KW + j) * LOAD(xc, (long)yy * W + xx);
            }
        }
    }
    if (has_bias) acc += LOAD(bias, o);
    acc += CONV_RESIDUAL(res, has_res, idx, idx / ((long)OW * OH));
    STORE(y, idx, acc);
}
