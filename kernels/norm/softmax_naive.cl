// norm/softmax_naive.cl, softmax_naive: softmax along one axis of a packed array seen as (OUTER, L, INNER): the axis
// has length L and stride INNER (INNER = 1 for the last axis); line (o, i) holds x[(o*L + l)*INNER + i] for l < L.
//   y = exp(x - max) / sum(exp(x - max)); -inf entries give 0; a line of only -inf gives NaN (-inf - -inf), as the
//   reference and torch do.
// One work-item per line, three passes over it (max, sum, write); a flat NDRange over the OUTER*INNER lines, rounded
// up by the host, the tail returns early. No -D knobs. The reduce variant is norm/softmax.cl.
// Arrays of DATA (REAL, or half for float16: common.h), the arithmetic in REAL.
#include "common.h"

__kernel void softmax_naive(__global const DATA *x, __global DATA *y, const long lines, const int L,
                            const long INNER)
{
    const long line = get_global_id(0);
    if (line >= lines) return;
    const long o = line / INNER;
    const long i = line % INNER;
    const __global DATA *xl = x + o * L * INNER + i;
    __global DATA *yl = y + o * L * INNER + i;

    REAL m = -INFINITY;
    for (int l = 0; l < L; ++l) {
        const REAL v = LOAD(xl, l * INNER);
        m = v > m ? v : m;
    }
    REAL s = 0;
    for (int l = 0; l < L; ++l) s += exp(LOAD(xl, l * INNER) - m);
    for (int l = 0; l < L; ++l) STORE(yl, l * INNER, exp(LOAD(xl, l * INNER) - m) / s);
}
