// common.h: the start of every kernel file (`#include "common.h"`, pasted in by the runtime, once per program:
// opencl_impl/runtime.py kernel_source).
//
// Precision: REAL, the type every kernel computes in, is float or double, from the build options (the host passes
// -DREAL=float, or -DREAL=double -DREAL_IS_DOUBLE, which enables cl_khr_fp64).
// Storage: DATA, the type of the arrays a kernel reads and writes, is REAL, or half with -DDATA_HALF (the float16
// dtype: -DREAL=float -DDATA_HALF, arrays in float16 and the arithmetic in float). A kernel that implements float16
// declares its arrays DATA * and reads and writes them through LOAD(p, i) / STORE(p, i, v) (vload_half /
// vstore_half_rte: core OpenCL, no cl_khr_fp16), VLOAD / VSTORE for vectors; its scratch in global memory (scores,
// partial sums) stays REAL, so the only rounding to half is the output's.
//
// Knobs: each kernel file lists at its top the -D knobs it reads, what each means and the constraint it must meet.
// The host passes every knob of a variant (its registry declaration's defaults, overridden by the tuned ones), so no
// kernel holds a default: a knob left out stops the build with an #error that names it.
//
// What several kernel files share:
//   CAT(a, b)            token pasting after expansion: CAT(REAL, 4) is float4 or double4 (REAL4)
//   HSum<n>, HMax<n>     the sum / max of the lanes of a REALn vector (n = 2, 4, 8, 16)
//   with -DVEC (1, 2, 4, 8 or 16): VREAL = REAL or REAL<VEC>; VLOAD(p) / VSTORE(v, p): VEC elements of DATA at p
//   (element alignment suffices); VLOAD_REAL / VSTORE_REAL: of REAL (local tiles, private arrays, REAL scratch); HSUM(v) / HMAX(v): the sum / max of v's lanes; IOTA: the lane numbers 0, 1, ..., VEC - 1
//   TreeSum, TreeMax     a reduction over the work-items of a work-group (or of one row of it) in local memory
//   SILU(v), GELU(v)     the activations that fused kernels apply too, for REAL or vector v (v read twice)
//   FoldedOffset         the strided offset of a flat index of a shape folded to 4-D (broadcasts, permutes)
//   CONV_RESIDUAL        what a conv2d kernel adds last to output element `at` of channel row no = n*O + o:
//                        res[at] (has_res 1: a residual of y's shape), res[no] (has_res 2: (N, O, 1, 1), one value
//                        per sample and channel, e.g. a ResNet block's time embedding), 0 (has_res 0)
#ifndef REAL
#error "REAL (the compute type, float or double) must be set with -D"
#endif
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif

#ifdef DATA_HALF
#define DATA half
#define LOAD(p, i) vload_half((i), (p))
#define STORE(p, i, v) vstore_half_rte((v), (i), (p))
#else
#define DATA REAL
#define LOAD(p, i) ((p)[i])
#define STORE(p, i, v) ((p)[i] = (v))
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define REAL4 CAT(REAL, 4)

// Horizontal sums as a tree, lane i + lane i + n/2 first, written with named lanes rather than .lo/.hi: Oclgrind's
// uninitialized-value checker takes unoptimized .lo/.hi shuffles for reads of undefined lanes.
inline REAL HSum2(const CAT(REAL, 2) v) { return v.s0 + v.s1; }
inline REAL HSum4(const REAL4 v) { return (v.s0 + v.s2) + (v.s1 + v.s3); }
inline REAL HSum8(const CAT(REAL, 8) v)
{
    return HSum4((REAL4)(v.s0 + v.s4, v.s1 + v.s5, v.s2 + v.s6, v.s3 + v.s7));
}
inline REAL HSum16(const CAT(REAL, 16) v)
{
    return HSum8((CAT(REAL, 8))(v.s0 + v.s8, v.s1 + v.s9, v.s2 + v.sa, v.s3 + v.sb,
                                v.s4 + v.sc, v.s5 + v.sd, v.s6 + v.se, v.s7 + v.sf));
}
inline REAL HMax2(const CAT(REAL, 2) v) { return fmax(v.s0, v.s1); }
inline REAL HMax4(const REAL4 v) { return fmax(fmax(v.s0, v.s2), fmax(v.s1, v.s3)); }
inline REAL HMax8(const CAT(REAL, 8) v)
{
    return HMax4((REAL4)(fmax(v.s0, v.s4), fmax(v.s1, v.s5), fmax(v.s2, v.s6), fmax(v.s3, v.s7)));
}
inline REAL HMax16(const CAT(REAL, 16) v)
{
    return HMax8((CAT(REAL, 8))(fmax(v.s0, v.s8), fmax(v.s1, v.s9), fmax(v.s2, v.sa), fmax(v.s3, v.sb),
                                fmax(v.s4, v.sc), fmax(v.s5, v.sd), fmax(v.s6, v.se), fmax(v.s7, v.sf)));
}

#ifdef VEC
#if VEC == 1
#define VREAL REAL
#define VLOAD(p) LOAD(p, 0)
#define VSTORE(v, p) STORE(p, 0, v)
#define VLOAD_REAL(p) (*(p))
#define VSTORE_REAL(v, p) (*(p) = (v))
#define HSUM(v) (v)
#define HMAX(v) (v)
#define IOTA ((REAL)0)
#else
#define VREAL CAT(REAL, VEC)
#define VLOAD_REAL(p) CAT(vload, VEC)(0, p)
#define VSTORE_REAL(v, p) CAT(vstore, VEC)(v, 0, p)
#ifdef DATA_HALF
#define VLOAD(p) CAT(vload_half, VEC)(0, p)
#define VSTORE(v, p) CAT(CAT(vstore_half, VEC), _rte)(v, 0, p)
#else
#define VLOAD(p) CAT(vload, VEC)(0, p)
#define VSTORE(v, p) CAT(vstore, VEC)(v, 0, p)
#endif
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
#endif
#endif

// The sum (TreeSum) or max (TreeMax) of v over the TP work-items t = 0 .. TP-1 (TP a power of two) that share the
// local array scratch of TP REALs, returned to every one of them; each of them calls it (it has barriers), and
// several groups of TP work-items may each pass their own scratch. No barrier at the end: the callers read scratch
// once, and one that writes it again puts a barrier first (a trailing barrier is not free on a GPU: see
// norm/moments.h).
inline REAL TreeSum(const REAL v, __local REAL *scratch, const int t, const int TP)
{
    scratch[t] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = TP / 2; s > 0; s >>= 1) {
        if (t < s) scratch[t] += scratch[t + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return scratch[0];
}

inline REAL TreeMax(const REAL v, __local REAL *scratch, const int t, const int TP)
{
    scratch[t] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = TP / 2; s > 0; s >>= 1) {
        if (t < s) scratch[t] = fmax(scratch[t], scratch[t + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return scratch[0];
}

// silu(v) = v / (1 + exp(-v)); gelu(v) = v (1 + erf(v / sqrt 2)) / 2, the reference's formulas.
#define SILU(v) ((v) / ((REAL)1 + exp(-(v))))
#define GELU(v) ((REAL)0.5 * (v) * ((REAL)1 + erf((v) * (REAL)0.70710678118654752440)))   // 1/sqrt(2)

// The host folds a broadcast or a permutation to 4-D (opencl_impl/shapes.py): flat index i of the packed shape
// (D0, D1, D2, D3), i = ((c0*D1 + c1)*D2 + c2)*D3 + c3, reads element c0*S0 + c1*S1 + c2*S2 + c3*S3 of the other
// array (S: its element strides along those axes, 0 along a broadcast one).
inline long FoldedOffset(long i, const long D1, const long D2, const long D3, const long S0, const long S1,
                         const long S2, const long S3)
{
    const long c3 = i % D3;
    i /= D3;
    const long c2 = i % D2;
    i /= D2;
    const long c1 = i % D1;
    const long c0 = i / D1;
    return c0 * S0 + c1 * S1 + c2 * S2 + c3 * S3;
}

#define CONV_RESIDUAL(res, has_res, at, no) \
    ((has_res) == 1 ? LOAD(res, at) : (has_res) == 2 ? LOAD(res, no) : (REAL)0)
