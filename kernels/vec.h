// vec.h: the vector helpers of the kernels with a VEC knob, pasted in place of their `#include "vec.h"` line by the
// runtime (opencl_impl/runtime.py kernel_source). Needs REAL and VEC (1, 2, 4, 8 or 16) defined before it.
//   VREAL: REAL or REAL<VEC>;  VLOAD(p) / VSTORE(v, p): VEC elements at p (element alignment suffices);
//   HSUM(v) / HMAX(v): the sum / max of v's lanes (halving it);  IOTA: the lane numbers 0, 1, ..., VEC - 1.
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#if VEC == 1
#define VREAL REAL
#define VLOAD(p) (*(p))
#define VSTORE(v, p) (*(p) = (v))
#define HSUM(v) (v)
#define HMAX(v) (v)
#define IOTA ((REAL)0)
#else
#define VREAL CAT(REAL, VEC)
#define VLOAD(p) CAT(vload, VEC)(0, p)
#define VSTORE(v, p) CAT(vstore, VEC)(v, 0, p)
#define HSUM(v) CAT(HSum, VEC)(v)
#define HMAX(v) CAT(HMax, VEC)(v)
#if VEC == 2
#define IOTA ((VREAL)(0, 1))
#elif VEC == 4
#define IOTA ((VREAL)(0, 1, 2, 3))
#elif VEC == 8
#define IOTA ((VREAL)(0, 1, 2, 3, 4, 5, 6, 7))
#else
#define IOTA ((VREAL)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#endif
REAL HSum2(CAT(REAL, 2) v) { return v.x + v.y; }
REAL HSum4(CAT(REAL, 4) v) { return HSum2(v.lo + v.hi); }
REAL HSum8(CAT(REAL, 8) v) { return HSum4(v.lo + v.hi); }
REAL HSum16(CAT(REAL, 16) v) { return HSum8(v.lo + v.hi); }
REAL HMax2(CAT(REAL, 2) v) { return fmax(v.x, v.y); }
REAL HMax4(CAT(REAL, 4) v) { return HMax2(fmax(v.lo, v.hi)); }
REAL HMax8(CAT(REAL, 8) v) { return HMax4(fmax(v.lo, v.hi)); }
REAL HMax16(CAT(REAL, 16) v) { return HMax8(fmax(v.lo, v.hi)); }
#endif
