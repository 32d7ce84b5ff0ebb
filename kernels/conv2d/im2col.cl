// conv2d/im2col.cl: conv2d as a GEMM, the layout kernels around the policy's matmul (variants im2col, im2col_half
// and gemm1x1; layouts: conv2d/naive.cl).
// P = OH*OW output positions per sample, R = C*KH*KW rows of the lowered matrix. The host lowers a chunk of Q columns
// at a time, the flat output positions q0 <= q < q0 + Q of the whole batch (q = n*P + oy*OW + ox), so the scratch
// stays bounded:
//   cols[r, q - q0] = cols[r*Q + (q - q0)],  r = (c*KH + i)*KW + j,
//                   = x[n, c, oy*SH - PT + i, ox*SW - PL + j]   (0 outside the input: the zero padding)
// (conv2d_im2col), then g (O, Q) = weight viewed as (O, R) @ cols (R, Q) is any matmul variant, and
//   y[n, o, oy, ox] = y[(n*O + o)*P + p] = g[o*Q + (q - q0)] + bias[o] (+ res[same])   (conv2d_im2col_scatter);
// with one sample in one chunk g already is y, and conv2d_im2col_epilogue adds the bias and the residual in place
// (so does gemm1x1, whose per-sample products weight (O, C) @ x[n] (C, P) are NCHW already, for a residual of one
// value per sample and channel or where its GEMM is not one of gemm.h's). A 1x1, stride-1, unpadded conv of one
// sample needs no lowering at all: x is cols.
// conv2d_im2col: one work-item per (row r, run of cols_per_item consecutive columns), NDRange
// (ceil(Q / cols_per_item) rounded up to WG, R); cols_per_item is the variant's COLS_PER_ITEM knob, read by the host.
// The others: one work-item per element. Tails: the host rounds each NDRange up to a multiple of WG; work-items past
// the end return before any access. has_bias (0 or 1): whether the bias is read; has_res: whether and how the
// residual res is (CONV_RESIDUAL in common.h).
// Knobs (-D):
//   WG   work-group size of the three kernels (1-D; the host launches exactly this, e.g. 64, 256)
// Structural (-D, set by the host): COLS_HALF (im2col_half, and im2col in float16): the lowered matrix is written as
// half (vstore_half, round to nearest even; exact when x is half) for the GEMM to read with vload_half: half the
// scratch memory and traffic.
// float16 (DATA half): x, bias, res and y are half; the product g is REAL (float) scratch, the GEMM's float sums,
// so the scatter adds the bias and the residual in float and rounds once (the one-sample product is not y then).
#include "common.h"
#ifndef WG
#error "WG (the work-group size) must be set with -D"
#endif
#ifdef COLS_HALF
#define COLS_T half
#define STORE_COL(dst, k, v) vstore_half((v), (k), (dst))
#else
#define COLS_T REAL
#define STORE_COL(dst, k, v) ((dst)[k] = (v))
#endif

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void conv2d_im2col(__global const DATA *x, __global COLS_T *cols, const long q0, const int Q,
                   const int C, const int H, const int W, const int KH, const int KW,
                   const int OH, const int OW, const int SH, const int SW, const int PT, const int PL,
                   const int cols_per_item)
{
    const int r = get_global_id(1);
    const int first = get_global_id(0) * cols_per_item;
    if (first >= Q) return;
    const int j = r % KW;
    const int i = (r / KW) % KH;
    const int c = r / (KW * KH);
    const int P = OH * OW;
    long q = q0 + first;
    long n = q / P;
    int p = q % P;
    int oy = p / OW, ox = p % OW;
    __global COLS_T *dst = cols + (long)r * Q + first;
    const int count = min(cols_per_item, Q - first);
    for (int k = 0; k < count; ++k) {
        const int yy = oy * SH - PT + i;
        const int xx = ox * SW - PL + j;
        REAL v = 0;
        if (yy >= 0 && yy < H && xx >= 0 && xx < W) v = LOAD(x, ((n * C + c) * H + yy) * (long)W + xx);
        STORE_COL(dst, k, v);
        if (++ox == OW) {                  // next output position: step along the row, then the next row / sample
            ox = 0;
            if (++oy == OH) { oy = 0; ++n; }
        }
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void conv2d_im2col_scatter(__global const REAL *g, __global const DATA *bias, __global const DATA *res,
                           __global DATA *y, const long q0, const int Q, const int O, const int P,
                           const int has_bias, const int has_res)
{
    const long idx = get_global_id(0);
    if (idx >= (long)O * Q) return;
    const int o = idx / Q;
    const long q = q0 + idx % Q;
    const long n = q / P;
    const int p = q % P;
    const long out = (n * O + o) * P + p;
    REAL v = g[idx];
    if (has_bias) v += LOAD(bias, o);
    v += CONV_RESIDUAL(res, has_res, out, n * O + o);
    STORE(y, out, v);
}

// y (N, O, P) = (y + bias[o]) + res in place.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void conv2d_im2col_epilogue(__global DATA *y, __global const DATA *bias, __global const DATA *res, const long total,
                            const int O, const int P, const int has_bias, const int has_res)
{
    const long idx = get_global_id(0);
    if (idx >= total) return;
    REAL v = LOAD(y, idx);
    if (has_bias) v += LOAD(bias, (idx / P) % O);
    v += CONV_RESIDUAL(res, has_res, idx, idx / P);
    STORE(y, idx, v);
}
