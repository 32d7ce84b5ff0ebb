// activation.cl: the vec variants of the activations, y[i] = f(x[i]) for i < n over packed arrays, VEC elements per
// work-item with vector loads and stores (vloadn / vstoren: element alignment suffices) and the activation applied
// to the whole vector; the work-item that holds the end of the array does its tail element by element. The
// formulas are those of elementwise.cl's naive kernels (SILU and GELU from common.h, the same order of operations):
//   silu_vec         y = x / (1 + exp(-x))
//   gelu_vec         y = x (1 + erf(x / sqrt 2)) / 2
//   gelu_tanh_vec    y = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   quick_gelu_vec   y = x / (1 + exp(-1.702 x))
// Arrays of DATA (float, double, or half for float16: common.h), the arithmetic in REAL.
// Why: PoCL vectorizes explicit vector types, not a work-item's scalar code, so its erf and exp run as one vector
// call per VEC elements instead of one libm call per element (a CPU's form is VEC 16; a GPU's VEC 1 to 4).
// NDRange (ceil(ceil(n / VEC) / WG) * WG). Knobs (-D):
//   VEC  elements per work-item: 1, 2, 4, 8 or 16
//   WG   work-items per work-group, at most the device's max work-group size
#include "common.h"
#ifndef VEC
#error "VEC (elements per work-item: 1, 2, 4, 8 or 16) must be set with -D"
#endif
#ifndef WG
#error "WG (work-items per work-group) must be set with -D"
#endif

#define GELU_TANH(v) \
    ((REAL)0.5 * (v) * ((REAL)1 + tanh((REAL)0.79788456080286535588 * ((v) + (REAL)0.044715 * (v) * (v) * (v)))))
#define QUICK_GELU(v) ((v) / ((REAL)1 + exp((REAL)-1.702 * (v))))

#define ACTIVATION_VEC(name, F)                                                                                 \
    __kernel __attribute__((reqd_work_group_size(WG, 1, 1)))                                                    \
    void name(__global const DATA *x, __global DATA *y, const long n)                                           \
    {                                                                                                           \
        const long i0 = (long)get_global_id(0) * VEC;                                                           \
        if (i0 + VEC <= n) {                                                                                    \
            const VREAL v = VLOAD(x + i0);                                                                      \
            VSTORE(F(v), y + i0);                                                                               \
        } else {                                                                                                \
            for (long i = i0; i < n; ++i) {                                                                     \
                const REAL v = LOAD(x, i);                                                                      \
                STORE(y, i, F(v));                                                                              \
            }                                                                                                   \
        }                                                                                                       \
    }

ACTIVATION_VEC(silu_vec, SILU)
ACTIVATION_VEC(gelu_vec, GELU)
ACTIVATION_VEC(gelu_tanh_vec, GELU_TANH)
ACTIVATION_VEC(quick_gelu_vec, QUICK_GELU)
