// norm/softmax.cl: softmax's reduce variant (the naive one is norm/naive.cl), along one axis of a packed array seen
// as (OUTER, L, INNER): line (o, i) holds x[(o*L + l)*INNER + i] for l < L; y = exp(x - max) / sum(exp(x - max));
// -inf entries give 0; a line of only -inf gives NaN (exp(-inf - -inf)), as the reference and torch do.
// Lines packed into work-groups of (TPL, WG/TPL): TPL work-items per line, LPW = WG/TPL lines per work-group. Along
// the last axis (INNER = 1) work-item t takes the vectors of VEC elements v = t, t + TPL, ... (vloadn / vstoren) and
// then the tail elements (L not a multiple of VEC) t, t + TPL, ... after them; along another axis it takes single
// elements l = t, t + TPL, ... (stride INNER). A tree over the line's TPL work-items in local memory gives the max,
// then exp(x - max) is written to y while a second tree adds it up, then every work-item divides the elements of y
// it wrote itself by the sum: x read twice, y written twice and read once, one exp per element, no division per
// element but the last. GPU-style: TPL 32 ... 256 and VEC 1; CPU-style (PoCL vectorizes explicit vector types, not
// a work-item's loop): TPL 1 ... 4 and VEC 8 or 16.
// Arrays of DATA (common.h); for half (float16), step 3 recomputes exp(x - max): y holds no half intermediate.
// NDRange: (TPL, ceil(lines / LPW) * LPW); the lines past the end compute nothing and write nothing.
// Knobs (-D):
//   WG   work-items per work-group: a power of two, at most the device's max work-group size
//   TPL  work-items per line: a power of two, TPL <= WG <= 64 TPL
//   VEC  elements per vector along the last axis: 1, 2, 4, 8 or 16
#include "common.h"
#ifndef WG
#error "WG (work-items per work-group, a power of two) must be set with -D"
#endif
#ifndef TPL
#error "TPL (work-items per line, a power of two at most WG) must be set with -D"
#endif
#ifndef VEC
#error "VEC (elements per vector: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#define LPW (WG / TPL) // lines per work-group
#if defined(DATA_HALF) && VEC > 1
// float16 vectors read element by element: PoCL 5 on an AVX2 CPU (pthread-haswell) segfaulted in this kernel's
// vload_half8 / vload_half16 of rows that start off a vector boundary (float16, VEC 8 or 16, a last axis of 33, two
// rows or more; one row, or L a multiple of VEC, ran), where vload_half needs only 2-byte alignment
inline VREAL vload_half_elements(const __global half *p)
{
    VREAL r;
    for (int j = 0; j < VEC; ++j) ((REAL *)&r)[j] = vload_half(j, p);
    return r;
}
#undef VLOAD
#define VLOAD(p) vload_half_elements(p)
#endif

__kernel __attribute__((reqd_work_group_size(TPL, LPW, 1)))
void softmax_reduce(__global const DATA *x, __global DATA *y, const long lines, const int L, const long INNER)
{
    __local REAL scratch[LPW][TPL];
    const int t = get_local_id(0);
    const int ll = get_local_id(1);
    const long line = get_global_id(1);
    const int len = line < lines ? L : 0;   // lines past the end: no elements, but every barrier is reached
    const long o = line / INNER;
    const long i = line % INNER;
    const __global DATA *xl = x + o * L * INNER + i;
    __global DATA *yl = y + o * L * INNER + i;
    const int nv = INNER == 1 ? len / VEC : 0;   // whole vectors (last axis only)
    const int tail = nv * VEC;                   // first element past them

    // 1. max
    VREAL mv = -INFINITY;
    for (int v = t; v < nv; v += TPL) mv = fmax(mv, VLOAD(xl + v * VEC));
    REAL m = HMAX(mv);
    for (int l = tail + t; l < len; l += TPL) m = fmax(m, LOAD(xl, l * INNER));
    m = TreeMax(m, scratch[ll], t, TPL);
    barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read the max before the sum's tree overwrites it

    // 2. y = exp(x - max), and its sum
    VREAL sv = 0;
    for (int v = t; v < nv; v += TPL) {
        const VREAL e = exp(VLOAD(xl + v * VEC) - m);
#ifndef DATA_HALF
        VSTORE(e, yl + v * VEC);
#endif
        sv += e;
    }
    REAL s = HSUM(sv);
    for (int l = tail + t; l < len; l += TPL) {
        const REAL e = exp(LOAD(xl, l * INNER) - m);
#ifndef DATA_HALF
        yl[l * INNER] = e;
#endif
        s += e;
    }
    s = TreeSum(s, scratch[ll], t, TPL);

    // 3. y /= sum, over the elements this work-item wrote itself
#ifdef DATA_HALF
    // (half: exp(x - max) again, as step 2 computed it, so that y is rounded to half once)
    for (int v = t; v < nv; v += TPL) VSTORE(exp(VLOAD(xl + v * VEC) - m) / s, yl + v * VEC);
    for (int l = tail + t; l < len; l += TPL) STORE(yl, l * INNER, exp(LOAD(xl, l * INNER) - m) / s);
#else
    for (int v = t; v < nv; v += TPL) VSTORE(VLOAD(yl + v * VEC) / s, yl + v * VEC);
    for (int l = tail + t; l < len; l += TPL) yl[l * INNER] /= s;
#endif
}
