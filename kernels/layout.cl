// layout: the copies and gathers, one work-item per output element (concat: per input element) of a flat index
// (the host rounds the NDRange up, the tail returns early); no knobs, one build per dtype. All arrays packed, of
// DATA (REAL, or half for float16: common.h); a copy is exact in any DATA.
//   permute_naive            y = x.transpose(axes). The host folds the permutation to 4-D: y is (D0, D1, D2, D3)
//                            and S0..S3 are x's element strides along y's axes: y[i] = x[FoldedOffset(i)]
//                            (common.h). Writes coalesce, reads gather.
//   concat_naive             one input x, seen as (OUTER, LEN, INNER), into y (OUTER, TOTAL, INNER) at axis offset
//                            OFF; the host launches once per input. With LI = LEN*INNER, for r < LI:
//                            y[o*TOTAL*INNER + OFF*INNER + r] = x[o*LI + r]
//   upsample_nearest2x_naive x (N, C, H, W) -> y (N, C, 2H, 2W): y[p, oy, ox] = x[p, oy/2, ox/2], p = n*C + c
//   token_embedding_naive    y[b, l, d] = tok[ids[b, l], d] + pos[l, d]; ids (B, L) long, tok (V, D),
//                            pos (P >= L, D), y (B, L, D): y[(b*L + l)*D + d]. The host checks 0 <= ids < V.
#include "common.h"

__kernel void permute_naive(__global const DATA *x, __global DATA *y, const long n,
                            const long D1, const long D2, const long D3,
                            const long S0, const long S1, const long S2, const long S3)
{
    const long i = get_global_id(0);
    if (i < n) STORE(y, i, LOAD(x, FoldedOffset(i, D1, D2, D3, S0, S1, S2, S3)));
}

__kernel void concat_naive(__global const DATA *x, __global DATA *y, const long n, const long LI,
                           const long TOTAL_INNER, const long OFF_INNER)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const long o = i / LI;
    const long r = i % LI;
    STORE(y, o * TOTAL_INNER + OFF_INNER + r, LOAD(x, i));
}

__kernel void upsample_nearest2x_naive(__global const DATA *x, __global DATA *y, const long n,
                                       const int H, const int W)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const int OW = 2 * W;
    const int OH = 2 * H;
    const int ox = i % OW;
    const int oy = (i / OW) % OH;
    const long p = i / ((long)OW * OH);
    STORE(y, i, LOAD(x, (p * H + oy / 2) * W + ox / 2));
}

__kernel void token_embedding_naive(__global const long *ids, __global const DATA *tok, __global const DATA *pos,
                                    __global DATA *y, const long total, const int L, const int D)
{
    const long i = get_global_id(0);
    if (i >= total) return;
    const int d = i % D;
    const long bl = i / D;         // b*L + l
    const int l = bl % L;
    STORE(y, i, LOAD(tok, ids[bl] * D + d) + LOAD(pos, (long)l * D + d));
}
