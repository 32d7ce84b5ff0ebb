// conv2d/winograd.cl: conv2d by Winograd's minimal filtering F(m x m, 3 x 3), m = 2 ("winograd2x2") or 4
// ("winograd4x4"), for 3x3 stride-1 layers with any zero padding. Each m x m output tile needs an ALPHA x ALPHA
// input tile, ALPHA = m + 2:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A          (.) elementwise; summed over input channels before A^T .. A
// Three kernels around a batched GEMM over the ALPHA^2 transformed positions xi = (a, b):
//   conv2d_winograd<m>x<m>_weights: U[xi, o, c] = U[(xi*O + o)*C + c]   = (G w[o, c] G^T)[a, b]
//   conv2d_winograd<m>x<m>_input:   V[xi, c, t] = V[(xi*C + c)*TQ + t - t0] = (B^T d B)[a, b],
//       d[u, v] = x[n, c, ty*m - PT + u, tx*m - PL + v] (0 outside the input), tile t = (n*TH + ty)*TW + tx,
//       TH = ceil(OH / m), TW = ceil(OW / m); the host transforms TQ tiles t0 <= t < t0 + TQ at a time.
//   M[xi] (O, TQ) = U[xi] (O, C) @ V[xi] (C, TQ): the policy's batched_matmul on the host side.
//   conv2d_winograd<m>x<m>_output:  y[n, o, ty*m + u, tx*m + v] = (A^T M[:, o, t] A)[u, v] + bias[o] (+ the
//       residual: CONV_RESIDUAL in common.h), written only
//       where ty*m + u < OH and tx*m + v < OW (the tails of the last tile row and column are computed and dropped).
// float16 (DATA half): w, x, bias, res and y are half; U, V and M stay REAL (float) scratch, the batched GEMM
// between them float32, so the output is rounded to half once.
// Bottom and right padding need no code: rows and columns past the input read as 0 and only feed outputs that exist
// when OH and OW say so.
// Transform matrices (Lavin & Gray 2016; F(4x4, 3x3) interpolates at the points 0, 1, -1, 2, -2 and infinity):
//   F(2,3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//           A^T = [1 1 1 0; 0 1 -1 -1]
//   F(4,3): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
//           G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
//           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// Their magnitudes (up to 5 in B^T, 8 in A^T) are where F(4x4) loses accuracy: see docs/WINOGRAD.md.
// Layouts: conv2d/naive.cl. has_bias (0 or 1): whether the output transform reads the bias argument.
// Tails: the host rounds each NDRange's first dimension up to a multiple of WG; surplus work-items return at once.
// Knobs (-D):
//   WG   work-group size of the three transform kernels (1-D in the first dimension, e.g. 16, 64, 256)
//   WV   filters per work-item of the weight transform, as one REAL vector (1, 2, 4, 8, 16): PoCL vectorizes explicit
//        vectors only (1280 x 1280 filters of F(2x2): 46 ms at WV 1, 9.3 ms at 16 on its 2 cores); a GPU keeps
//        WV x (9 + 3A + A^2) REALs in registers per work-item
#include "common.h"
#ifndef WG
#error "WG (work-group size of the transform kernels) must be set with -D"
#endif
#ifndef WV
#error "WV (filters per work-item of the weight transform: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#if WV == 1
#define REALW REAL
#define VLOADW(p) (*(p))
#define VSTOREW(v, p) (*(p) = (v))
#else
#define REALW CAT(REAL, WV)
#define VLOADW(p) CAT(vload, WV)(0, p)
#define VSTOREW(v, p) CAT(vstore, WV)(v, 0, p)
#endif

// ---- 1-D transforms: out[k*os] from in[k*is] --------------------------------------------------------------------

// F(2,3)
inline void bt_2(const REAL *d, int is, REAL *r, int os)   // B^T d: 4 -> 4
{
    r[0] = d[0] - d[2 * is];
    r[os] = d[is] + d[2 * is];
    r[2 * os] = d[2 * is] - d[is];
    r[3 * os] = d[is] - d[3 * is];
}

inline void g_2(const REALW *g, int is, REALW *r, int os)  // G g: 3 -> 4, on WV filters at once
{
    const REAL one_half = (REAL)1 / (REAL)2;
    r[0] = g[0];
    r[os] = one_half * (g[0] + g[is] + g[2 * is]);
    r[2 * os] = one_half * (g[0] - g[is] + g[2 * is]);
    r[3 * os] = g[2 * is];
}

inline void at_2(const REAL *m, int is, REAL *r, int os)   // A^T m: 4 -> 2
{
    r[0] = m[0] + m[is] + m[2 * is];
    r[os] = m[is] - m[2 * is] - m[3 * is];
}

// F(4,3)
inline void bt_4(const REAL *d, int is, REAL *r, int os)   // B^T d: 6 -> 6
{
    const REAL d0 = d[0], d1 = d[is], d2 = d[2 * is], d3 = d[3 * is], d4 = d[4 * is], d5 = d[5 * is];
    r[0] = 4 * d0 - 5 * d2 + d4;
    r[os] = -4 * (d1 + d2) + d3 + d4;
    r[2 * os] = 4 * (d1 - d2) - d3 + d4;
    r[3 * os] = 2 * (d3 - d1) - d2 + d4;
    r[4 * os] = 2 * (d1 - d3) - d2 + d4;
    r[5 * os] = 4 * d1 - 5 * d3 + d5;
}

inline void g_4(const REALW *g, int is, REALW *r, int os)  // G g: 3 -> 6, on WV filters at once
{
    const REALW g0 = g[0], g1 = g[is], g2 = g[2 * is];
    const REAL sixth = (REAL)1 / (REAL)6;
    r[0] = g0 / (REAL)4;
    r[os] = -sixth * (g0 + g1 + g2);
    r[2 * os] = -sixth * (g0 - g1 + g2);
    r[3 * os] = g0 / (REAL)24 + g1 / (REAL)12 + g2 / (REAL)6;
    r[4 * os] = g0 / (REAL)24 - g1 / (REAL)12 + g2 / (REAL)6;
    r[5 * os] = g2;
}

inline void at_4(const REAL *m, int is, REAL *r, int os)   // A^T m: 6 -> 4
{
    const REAL m0 = m[0], m1 = m[is], m2 = m[2 * is], m3 = m[3 * is], m4 = m[4 * is], m5 = m[5 * is];
    const REAL p12 = m1 + m2, m12 = m1 - m2, p34 = m3 + m4, m34 = m3 - m4;
    r[0] = m0 + p12 + p34;
    r[os] = m12 + 2 * m34;
    r[2 * os] = p12 + 4 * p34;
    r[3 * os] = m12 + 8 * m34 + m5;
}

// ---- the three kernels, written once for both tile sizes ---------------------------------------------------------
// WINOGRAD_KERNELS(NAME, M, BT, G, AT) defines conv2d_<NAME>_weights, _input and _output for F(M x M, 3 x 3).
#define WINOGRAD_KERNELS(NAME, M, BT, G, AT)                                                                          \
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))                                                             \
void conv2d_##NAME##_weights(__global const DATA *w, __global REAL *U, const int O, const int C)                     \
{                                                                                                                    \
    enum { A = M + 2 };                                                                                              \
    const long OC = (long)O * C;                                                                                     \
    const long oc0 = get_global_id(0) * (long)WV;              /* filters oc0 .. oc0 + WV - 1 */                     \
    if (oc0 >= OC) return;                                                                                           \
    const int live = min((long)WV, OC - oc0);                  /* the last work-item's lanes past OC: 0, unstored */ \
    REALW g[9], t[A * 3], u[A * A];                            /* lane j: filter oc0 + j */                          \
    REAL lanes[WV];                                                                                                  \
    for (int k = 0; k < 9; ++k) {                                                                                    \
        for (int j = 0; j < WV; ++j) lanes[j] = j < live ? LOAD(w, (oc0 + j) * 9 + k) : (REAL)0;                     \
        g[k] = VLOADW(lanes);                                                                                        \
    }                                                                                                                \
    for (int j = 0; j < 3; ++j) G(g + j, 3, t + j, 3);          /* t = G g      (A x 3), down each column */          \
    for (int a = 0; a < A; ++a) G(t + a * 3, 1, u + a * A, 1);  /* u = t G^T    (A x A), along each row */            \
    for (int k = 0; k < A * A; ++k) {                                                                                \
        if (live == WV) {                                                                                            \
            VSTOREW(u[k], U + k * OC + oc0);                                                                         \
        } else {                                                                                                     \
            VSTOREW(u[k], lanes);                                                                                    \
            for (int j = 0; j < live; ++j) U[k * OC + oc0 + j] = lanes[j];                                           \
        }                                                                                                            \
    }                                                                                                                \
}                                                                                                                    \
                                                                                                                     \
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))                                                             \
void conv2d_##NAME##_input(__global const DATA *x, __global REAL *V, const long t0, const int TQ,                    \
                           const int C, const int H, const int W, const int TH, const int TW,                        \
                           const int PT, const int PL)                                                               \
{                                                                                                                    \
    enum { A = M + 2 };                                                                                              \
    const int tq = get_global_id(0);                                                                                 \
    const int c = get_global_id(1);                                                                                  \
    if (tq >= TQ) return;                                                                                            \
    const long t = t0 + tq;                                                                                          \
    const int tx = t % TW;                                                                                           \
    const int ty = (t / TW) % TH;                                                                                    \
    const long n = t / ((long)TW * TH);                                                                              \
    const int y0 = ty * M - PT, x0 = tx * M - PL;                                                                    \
    const __global DATA *xc = x + (n * C + c) * H * (long)W;                                                         \
    REAL d[A * A], s[A * A], v[A * A];                                                                               \
    for (int a = 0; a < A; ++a)                                                                                      \
        for (int b = 0; b < A; ++b) {                                                                                \
            const int yy = y0 + a, xx = x0 + b;                                                                      \
            d[a * A + b] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? LOAD(xc, (long)yy * W + xx) : 0;               \
        }                                                                                                            \
    for (int b = 0; b < A; ++b) BT(d + b, A, s + b, A);         /* s = B^T d    down each column */                  \
    for (int a = 0; a < A; ++a) BT(s + a * A, 1, v + a * A, 1); /* v = s B      along each row */                    \
    for (int k = 0; k < A * A; ++k) V[((long)k * C + c) * TQ + tq] = v[k];                                           \
}                                                                                                                    \
                                                                                                                     \
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))                                                             \
void conv2d_##NAME##_output(__global const REAL *Mt, __global const DATA *bias, __global const DATA *res,           \
                            __global DATA *y, const long t0, const int TQ, const int O, const int OH, const int OW,  \
                            const int TH, const int TW, const int has_bias, const int has_res)                       \
{                                                                                                                    \
    enum { A = M + 2 };                                                                                              \
    const int tq = get_global_id(0);                                                                                 \
    const int o = get_global_id(1);                                                                                  \
    if (tq >= TQ) return;                                                                                            \
    const long t = t0 + tq;                                                                                          \
    const int tx = t % TW;                                                                                           \
    const int ty = (t / TW) % TH;                                                                                    \
    const long n = t / ((long)TW * TH);                                                                              \
    REAL m[A * A], s[M * A], r[M * M];                                                                               \
    for (int k = 0; k < A * A; ++k) m[k] = Mt[((long)k * O + o) * TQ + tq];                                          \
    for (int b = 0; b < A; ++b) AT(m + b, A, s + b, A);         /* s = A^T m    (M x A) */                           \
    for (int a = 0; a < M; ++a) AT(s + a * A, 1, r + a * M, 1); /* r = s A      (M x M) */                           \
    const REAL b0 = has_bias ? LOAD(bias, o) : 0;                                                                    \
    const long y0 = (n * O + o) * OH * (long)OW;                /* y[n, o, 0, 0] */                                 \
    __global DATA *yo = y + y0;                                                                                      \
    for (int u = 0; u < M; ++u) {                                                                                    \
        const int oy = ty * M + u;                                                                                   \
        if (oy >= OH) break;                                                                                         \
        for (int v = 0; v < M; ++v) {                                                                                \
            const int ox = tx * M + v;                                                                               \
            if (ox < OW)                                                                                             \
                STORE(yo, (long)oy * OW + ox, (r[u * M + v] + b0) +                                                  \
                      CONV_RESIDUAL(res, has_res, y0 + (long)oy * OW + ox, n * O + o));                              \
        }                                                                                                            \
    }                                                                                                                \
}

WINOGRAD_KERNELS(winograd2x2, 2, bt_2, g_2, at_2)
WINOGRAD_KERNELS(winograd4x4, 4, bt_4, g_4, at_4)
