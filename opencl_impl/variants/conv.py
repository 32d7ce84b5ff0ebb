"""conv2d variants beyond the naive kernel: GEMM lowerings, im2win, Winograd and a tiled direct convolution.

Each launcher is called as `launcher(call, x, weight, bias=None, stride=1, padding=0)` and returns y (N, O, OH, OW).
The registry row (sdcl.registry.linalg) declares their knobs, tuning spaces and the shapes each handles
(`applies`); a launcher called on a shape it does not handle raises ValueError.

- gemm1x1: a 1x1, stride-1, unpadded conv is weight (O, C) @ x[n] (C, H*W) per sample, the products already NCHW:
  one launch of the GEMM kernel the policy picks for that batched_matmul (the weight read by every sample at batch
  stride 0, bias and residual in the GEMM's epilogue); where the policy picks a kernel that is not one of gemm.h's
  (naive), `ops.matmul` / `ops.batched_matmul` (the weight repeated per sample) and an in-place epilogue.
- im2col: lower the input to cols (C*KH*KW, Q) for a chunk of Q output positions of the batch, `ops.matmul`, then
  scatter the (O, Q) product into NCHW with the bias. In float16: im2col_half's kernels (the lowered matrix half,
  x's values exactly; the product float32), the scatter adds the bias and residual in float and rounds once;
  gemm1x1 in float16 is this path too where its GEMM's epilogue cannot add everything before the one rounding
  (a residual per (sample, channel), or a policy pick outside gemm.h).
- im2col_half: im2col with half storage: the weight and the lowered input are float16 (a float32 weight is rounded
  on the device first; a model stored in half passes float16 weights), and the GEMM is the device type's
  register-blocked kernel reading both with vload_half and accumulating in float (variants.gemm.gemm).
- implicit_mma_f16: im2col's product on NVIDIA tensor cores in float16 without the lowered matrix
  (kernels/conv2d/implicit_mma_f16.cl: each work-group gathers its slice of it from x into local memory as half);
  float32 activations, the weight float32 or half; both rounded to half, float32 accumulation. In float16 every
  array is half (the gather copies x's half bits) and the split-K partial sums stay float32.
- im2win: the window-row layout of Lu, Chu & Liu (kernels/conv2d/im2win.cl) and a register-blocked GEMM-like kernel
  (in float16 the layouts are half, exact copies, and the sums float).
- winograd2x2 / winograd4x4: F(2x2, 3x3) and F(4x4, 3x3): weight and input tile transforms, `ops.batched_matmul`
  over the ALPHA^2 transformed positions, output transform with the bias. The weights are transformed on every
  call, in a replayed model too: U is (m+2)^2 / 9 times the weight's elements (4x for F(4x4), in float32), more
  memory than Runtime.derived keeps (no more than the weight's own bytes). In float16 U, V and their product stay
  float32.
- direct_tiled: output tiles per work-group, input patch and filters staged in local memory, OC_PER_ITEM output
  channels per work-item.

Kernels: kernels/conv2d/<variant>.cl (gemm1x1's and im2col's layout kernels in conv2d/im2col.cl); the bias is a
run-time flag, and COLS_PER_ITEM a run-time argument, so a build of a file serves every call at its -D knobs.
GEMMs go through the public ops, so they run whatever matmul / batched_matmul variant the runtime's policy picks.
Scratch (the lowered matrices, the transformed tiles) is allocated with `rt.empty` and bounded by `SCRATCH_BYTES`:
larger problems are processed in chunks of output positions, rows or tiles.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from sdcl.opencl_impl import ops
from sdcl.opencl_impl.dispatch import choose
from sdcl.opencl_impl.ops import to_half
from sdcl.opencl_impl.launch import Call, buffer, compute_type, groups, i32, pick
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.shapes import conv_geometry, residual_mode
from sdcl.opencl_impl.variants.gemm import TECHNIQUES, check_mma, gemm, mma_stages, ndrange, split_k
from sdcl.registry import REGISTRY
from sdcl.registry.linalg import implicit_mma_gather_fits

SCRATCH_BYTES = 256 * 2**20   # per launch, at most this much scratch (and at most half the largest allocation)


@dataclass(frozen=True)
class ConvShape:
    """One conv2d call's sizes, padding as (top, bottom, left, right)."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    oh: int
    ow: int
    sh: int
    sw: int
    pt: int
    pb: int
    pl: int
    pr: int

    @classmethod
    def of(cls, x, weight, stride, padding) -> "ConvShape":
        (sh, sw), (pt, pb, pl, pr), (oh, ow) = conv_geometry(x, weight, stride, padding)
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        return cls(n, c, h, w, o, kh, kw, oh, ow, sh, sw, pt, pb, pl, pr)

    @property
    def pointwise(self) -> bool:
        """1x1, stride 1, no padding: the conv is a plain matrix product per sample."""
        return (self.kh, self.kw, self.sh, self.sw, self.pt, self.pb, self.pl, self.pr) == (1, 1, 1, 1, 0, 0, 0, 0)

    @property
    def winograd(self) -> bool:
        """3x3, stride 1 (any padding)."""
        return (self.kh, self.kw, self.sh, self.sw) == (3, 3, 1, 1)


def _scratch_budget(rt: Runtime, budget: int | None) -> int:
    cap = rt.info["max_alloc_mib"] * 2**20 // 2
    return min(SCRATCH_BYTES if budget is None else budget, cap)


def _chunk(total: int, bytes_per_item: int, budget: int) -> int:
    """How many items (columns, rows, tiles) of bytes_per_item fit the budget: at least 1, at most total."""
    return max(1, min(total, budget // max(bytes_per_item, 1)))


def _epilogue_in_place(rt: Runtime, defines: dict, y, bias, residual, o: int, p: int) -> None:
    """y (N, O, P) = (y + bias[o]) + residual (y's shape or (N, O, 1, 1)), either or both, by conv2d/im2col.cl built
    with these defines (WG, and COLS_HALF where the caller's other kernels have it: one build serves them all);
    nothing without either."""
    if (bias is None and residual is None) or not y.size:
        return
    wg = int(defines["WG"])
    knl = rt.kernel("conv2d/im2col.cl", "conv2d_im2col_epilogue", defines, y.dtype)
    rt.launch("conv2d", knl, (groups(y.size, wg),), (wg,), y.data, y.data if bias is None else buffer(rt, bias),
              y.data if residual is None else buffer(rt, residual), np.int64(y.size),
              *i32(o, p, bias is not None, residual_mode(residual)))


def _unsupported(name: str, s: ConvShape, what: str):
    raise ValueError(f"conv2d {name}: handles {what} only, got kernel {s.kh}x{s.kw}, stride ({s.sh}, {s.sw}), "
                     f"padding ({s.pt}, {s.pb}, {s.pl}, {s.pr})")


def _float16_arrays(name: str, x, weight, bias, residual) -> None:
    """A float16 call passes every array in float16 (the kernels read them all as half)."""
    if any(a is not None and a.dtype != np.float16 for a in (weight, bias, residual)):
        raise ValueError(f"conv2d {name}: a float16 call passes every array in float16, got "
                         + ", ".join(f"{a.dtype}{a.shape}" for a in (x, weight, bias, residual) if a is not None))


# ------------------------------------------------------------------------------------------------------- gemm1x1

@dataclass(frozen=True)
class _Like:
    """An array's shape and dtype, to ask the policy about a product nobody has allocated."""
    shape: tuple
    dtype: np.dtype


def gemm1x1(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    rt, knobs = call.rt, call.knobs
    s = ConvShape.of(x, weight, stride, padding)
    if not s.pointwise:
        _unsupported("gemm1x1", s, "1x1 kernels with stride 1 and no padding")
    p = s.h * s.w
    float16 = x.dtype == np.float16
    if float16:
        _float16_arrays("gemm1x1", x, weight, bias, residual)
    technique, gknobs = choose(rt, "batched_matmul", (_Like((s.n, s.o, s.c), x.dtype), _Like((s.n, s.c, p), x.dtype)))
    full = residual_mode(residual) == 1          # else per (n, o): added after, in place
    if float16 and (technique not in TECHNIQUES or not (full or residual is None)):
        # a product rounded to half, then the bias or residual added in place, would round twice: im2col's float16
        # path (a float32 product, the epilogue in float, one rounding; x itself is the lowered matrix of a sample)
        return im2col_conv(rt, {"WG": knobs["WG"], "COLS_PER_ITEM": 1}, x, weight, bias, stride, padding,
                           residual=residual)
    if technique in TECHNIQUES:       # one launch: y[n] = weight @ x[n] + bias[o] + residual[n]
        y = rt.empty((s.n, s.o, s.oh, s.ow), x.dtype)
        if y.size:
            gemm(rt, "conv2d", technique, REGISTRY["batched_matmul"].variant(technique).complete(gknobs),
                 buffer(rt, weight), buffer(rt, x), y.data, s.o, p, s.c, lda=s.c, ldb=p, ldc=p,
                 bias=None if bias is None else buffer(rt, bias), bias_axis="m",
                 residual=buffer(rt, residual) if full else None, batch=s.n,
                 b_strides=(s.c * p, 0), c_strides=(s.o * p, 0), dtype=x.dtype)
            if not full:
                _epilogue_in_place(rt, pick(knobs, "WG"), y, None, residual, s.o, p)
        return y
    w2 = weight.reshape(s.o, s.c)                                      # (O, C)
    if s.n == 1:
        y = ops.matmul(rt, w2, x.reshape(s.c, p))                              # (O, P) = y[0]
    else:
        # (N, O, C): the weight once per sample, by a kernel (host copies into a buffer at an offset are what
        # Oclgrind's uninitialized-value tracking misses)
        wn = ops.concat(rt, [w2] * s.n, axis=0).reshape(s.n, s.o, s.c)
        y = ops.batched_matmul(rt, wn, x.reshape(s.n, s.c, p))                 # (N, O, P) = y
    _epilogue_in_place(rt, pick(knobs, "WG"), y, bias, residual, s.o, p)
    return y.reshape(s.n, s.o, s.oh, s.ow)


# -------------------------------------------------------------------------------------------------------- im2col

def im2col(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    return im2col_conv(call.rt, call.knobs, x, weight, bias, stride, padding, residual=residual)


def im2col_half(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    return im2col_conv(call.rt, call.knobs, x, weight, bias, stride, padding, half=True, residual=residual)


def _half_matmul(rt: Runtime, a, b, dtype):
    """a (M, K) @ b (K, N), both float16, into a new array of dtype (float32 or float64: the accumulation), by the
    device type's register-blocked GEMM at the knobs the tuning database holds for it on matmul (else the kernel's
    defaults)."""
    technique = "cpu_reg" if rt.info["type"] == "CPU" else "tiled_reg"
    table = getattr(rt.policy, "table", None) or {}
    tuned = table.get("ops", {}).get("matmul", {}).get("defaults", {}).get(technique, {})
    knobs = REGISTRY["matmul"].variant(technique).complete(tuned)
    (m, k), n = a.shape, b.shape[1]
    c = rt.empty((m, n), dtype)
    gemm(rt, "conv2d", technique, knobs, a.data, b.data, c.data, m, n, k, lda=k, ldb=n, ldc=n, dtype=c.dtype,
         a_half=True, b_half=True)
    return c


def im2col_conv(rt: Runtime, knobs: dict, x, weight, bias=None, stride=1, padding=0, scratch_bytes=None,
                half: bool = False, residual=None):
    """The im2col variant with an explicit scratch budget (tests pass a small one to exercise the chunking);
    half: the im2col_half variant. In float16 (x half) it is the same computation as im2col_half's: the lowered
    matrix half (x's values, exact), the product float32, the bias and residual added in float by the scatter, which
    rounds once (see conv2d/im2col.cl)."""
    s = ConvShape.of(x, weight, stride, padding)
    float16 = x.dtype == np.float16
    if float16:
        _float16_arrays("im2col", x, weight, bias, residual)
        half = True
    rows, total, p = s.c * s.kh * s.kw, s.n * s.oh * s.ow, s.oh * s.ow
    w2 = weight.reshape(s.o, rows)                                     # (O, C*KH*KW)
    if half and w2.dtype != np.float16:
        w2 = rt.derived(weight, ("to_half", w2.shape), lambda: to_half(rt, w2))
    defines = {**pick(knobs, "WG"), **({"COLS_HALF": 1} if half else {})}
    cols_dtype = np.dtype(np.float16) if half else x.dtype
    g_dtype = compute_type(x.dtype)                                    # the product: x's dtype, float32 for float16
    wg, per_item = int(knobs["WG"]), int(knobs["COLS_PER_ITEM"])
    lower = rt.kernel("conv2d/im2col.cl", "conv2d_im2col", defines, x.dtype)
    xb = buffer(rt, x)
    q = _chunk(total, rows * cols_dtype.itemsize + s.o * g_dtype.itemsize, _scratch_budget(rt, scratch_bytes))
    product = (lambda a, b: _half_matmul(rt, a, b, g_dtype)) if half else (lambda a, b: ops.matmul(rt, a, b))

    def cols_of(q0: int, qn: int):
        if s.pointwise and q0 == 0 and qn == total and s.n == 1 and x.dtype == cols_dtype:
            return x.reshape(s.c, p)   # a 1x1, stride-1, unpadded conv of one sample: x is the lowered matrix
        cols = rt.empty((rows, qn), cols_dtype)
        rt.launch("conv2d", lower, (groups(-(-qn // per_item), wg), rows), (wg, 1), xb, cols.data,
                  np.int64(q0), *i32(qn, s.c, s.h, s.w, s.kh, s.kw, s.oh, s.ow, s.sh, s.sw, s.pt, s.pl, per_item))
        return cols

    if s.n == 1 and q == total and not float16:   # one chunk of one sample: the product (O, P) already is y
        y = product(w2, cols_of(0, total))
        _epilogue_in_place(rt, defines, y, bias, residual, s.o, p)
        return y.reshape(1, s.o, s.oh, s.ow)
    y = rt.empty((s.n, s.o, s.oh, s.ow), x.dtype)
    scatter = rt.kernel("conv2d/im2col.cl", "conv2d_im2col_scatter", defines, x.dtype)
    bb = xb if bias is None else buffer(rt, bias)
    rb = xb if residual is None else buffer(rt, residual)
    for q0 in range(0, total, q):
        qn = min(q, total - q0)
        g = product(w2, cols_of(q0, qn))                               # (O, qn)
        rt.launch("conv2d", scatter, (groups(s.o * qn, wg),), (wg,), g.data, bb, rb, y.data, np.int64(q0),
                  *i32(qn, s.o, p, bias is not None, residual_mode(residual)))
        del g
    return y


def implicit_mma_f16(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    rt, k = call.rt, call.knobs
    if x.dtype not in (np.float32, np.float16):
        raise ValueError(f"conv2d implicit_mma_f16: a float32 or float16 kernel (float16 products, float32 "
                         f"accumulation), got {x.dtype.name}")
    if x.dtype == np.float16:
        _float16_arrays("implicit_mma_f16", x, weight, bias, residual)
    check_mma(rt, "mma_f16", k)
    k = mma_stages(rt, k)
    if not implicit_mma_gather_fits(k):
        raise ValueError(f"conv2d implicit_mma_f16: 32*WARPS_M*WARPS_N must be a multiple of NWG, and KWG of 4 times "
                         f"their ratio (each work-item's share of the gathered tile), got {k}")
    s = ConvShape.of(x, weight, stride, padding)
    if k.get("NHWC") and s.c % 8:     # channels-last chunks of 16 bytes: the gather through registers instead
        k = {**k, "NHWC": 0, "STAGES": min(k["STAGES"], 2)}
    half, nhwc = weight.dtype == np.float16, bool(k.get("NHWC"))
    defines = {**pick(k, "MWG", "NWG", "KWG", "WARPS_M", "WARPS_N", "MMA_EMULATE", "STAGES", "LDSM", "ASYNC"),
               "NHWC": int(nhwc), "KH": s.kh, "KW": s.kw, **({"A_HALF": 1} if half else {})}
    y = rt.empty((s.n, s.o, s.oh, s.ow), x.dtype)
    xb, wb = buffer(rt, x), buffer(rt, weight)
    unused = xb         # the bias and residual arguments' placeholder where there is none
    q, r = s.n * s.oh * s.ow, s.c * s.kh * s.kw
    if nhwc:   # half channels-last copies of x and the weight; the depth padded to whole KWG blocks of channels
        kernel = functools.partial(rt.kernel, "conv2d/implicit_mma_f16.cl", defines=defines, dtype=x.dtype)
        knl, p = kernel("conv2d_implicit_mma_f16_nhwc"), s.h * s.w
        xt = rt.empty((s.n, s.h, s.w, s.c), np.float16)
        rt.launch("conv2d", kernel("conv2d_x_to_nhwc_half"), (-(-p // 32) * 32, -(-s.c // 32) * 8, s.n), (32, 8, 1),
                  xb, xt.data, *i32(s.c, p))
        if s.kh * s.kw > 1 or not half:     # a half 1x1 weight (O, C, 1, 1) is its channels-last copy already
            def channels_last():
                wt = rt.empty((s.o, s.kh, s.kw, s.c), np.float16)
                rt.launch("conv2d", kernel("conv2d_w_to_nhwc_half"), (-(-s.c // 64) * 64, s.o), (64, 1), wb,
                          wt.data, *i32(s.c, s.kh * s.kw))
                return wt
            wb = rt.derived(weight, ("conv2d_w_to_nhwc_half",), channels_last).data
        xb, r = xt.data, s.kh * s.kw * -(-s.c // k["KWG"]) * k["KWG"]
    else:
        knl = rt.kernel("conv2d/implicit_mma_f16.cl", "conv2d_implicit_mma_f16", defines, x.dtype)
    splits, k_chunk = split_k(k, -(-q // k["NWG"]) * -(-s.o // k["MWG"]), r, rt.info.get("compute_units", 1))
    part = rt.empty((splits, s.o, q), compute_type(x.dtype)) if splits > 1 else y     # float: the kernel's sums
    bias_b = unused if bias is None else buffer(rt, bias)
    res_b = unused if residual is None else buffer(rt, residual)
    flags = i32(bias is not None, residual_mode(residual))
    rt.launch("conv2d", knl, *ndrange("mma_f16", k, s.o, q, splits),   # C (O, N*OH*OW), split along R
              xb, wb, bias_b, res_b, y.data,
              *i32(s.n, s.c, s.h, s.w, s.o, s.oh, s.ow, s.sh, s.sw, s.pt, s.pl), *flags,
              *i32(splits, k_chunk), part.data)
    if splits > 1:
        knl = rt.kernel("conv2d/implicit_mma_f16.cl", "conv2d_implicit_splitk_sum", defines, x.dtype)
        rt.launch("conv2d", knl, (s.o * q,), None, part.data, bias_b, res_b, y.data,   # the driver's work-groups
                  *i32(s.o, q, s.oh * s.ow, splits), *flags)
    return y


# -------------------------------------------------------------------------------------------------------- im2win

def im2win_scratch_elements(s: ConvShape, rows: int | None = None) -> int:
    """Elements of the im2win tensor for `rows` output rows (default: all N*OH of them)."""
    rows = s.n * s.oh if rows is None else rows
    return rows * s.c * ((s.ow - 1) * s.sw + s.kw) * s.kh


def im2col_scratch_elements(s: ConvShape) -> int:
    """Elements of the im2col matrix for the whole batch (before any chunking)."""
    return s.c * s.kh * s.kw * s.n * s.oh * s.ow


def im2win(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    return im2win_conv(call.rt, call.knobs, x, weight, bias, stride, padding, residual=residual)


def im2win_conv(rt: Runtime, knobs: dict, x, weight, bias=None, stride=1, padding=0, scratch_bytes=None,
                residual=None):
    """The im2win variant with an explicit scratch budget. The window rows are built for a chunk of output rows
    (n, oy) at a time, so chunks are whole (n, oy) ranges."""
    s = ConvShape.of(x, weight, stride, padding)
    if x.dtype == np.float16:
        _float16_arrays("im2win", x, weight, bias, residual)
    wwin = (s.ow - 1) * s.sw + s.kw
    defines = pick(knobs, "WG", "OC_VEC", "OW_BLOCK", "LOCAL_O")
    wg, vec, owb, lo = (int(knobs[k]) for k in ("WG", "OC_VEC", "OW_BLOCK", "LOCAL_O"))
    op = -(-s.o // vec) * vec                                          # O padded to whole vectors (zero filters)
    # conv2d_im2win's loops per work-item: channels x taps x its OW_BLOCK columns, and the block's set-up and stores
    rt.check_loops("conv2d im2win", s.c * (1 + s.kh * s.kw * (1 + owb)) + owb * (3 + vec))
    transform = rt.kernel("conv2d/im2win.cl", "conv2d_im2win_transform", defines, x.dtype)
    inner = rt.kernel("conv2d/im2win.cl", "conv2d_im2win", defines, x.dtype)
    wt = rt.empty((s.c, s.kw * s.kh, op), x.dtype)                     # wt[c, j*KH + i, o]
    rt.launch("conv2d", rt.kernel("conv2d/im2win.cl", "conv2d_im2win_weights", defines, x.dtype),
              (groups(wt.size, wg),), (wg,), buffer(rt, weight), wt.data,
              *i32(wt.size, s.c, s.o, op, s.kh, s.kw))
    y = rt.empty((s.n, s.o, s.oh, s.ow), x.dtype)
    xb = buffer(rt, x)
    bb = xb if bias is None else buffer(rt, bias)
    rows_total = s.n * s.oh
    chunk = _chunk(rows_total, im2win_scratch_elements(s, 1) * x.dtype.itemsize, _scratch_budget(rt, scratch_bytes))
    for r0 in range(0, rows_total, chunk):
        rn = min(chunk, rows_total - r0)
        win = rt.empty((rn, s.c, wwin * s.kh), x.dtype)                # win[row - r0, c, u*KH + i]
        columns = rn * s.c * wwin
        rt.launch("conv2d", transform, (groups(columns, wg),), (wg,), xb, win.data, np.int64(r0),
                  np.int64(columns), *i32(s.c, s.h, s.w, s.oh, wwin, s.kh, s.sh, s.pt, s.pl))
        rt.launch("conv2d", inner, (groups(op // vec, lo), -(-s.ow // owb), rn), (lo, 1, 1), win.data, wt.data, bb,
                  xb if residual is None else buffer(rt, residual), y.data, np.int64(r0),
                  *i32(s.c, s.o, op, s.oh, s.ow, wwin, s.kh, s.kw, s.sw, bias is not None, residual_mode(residual)))
        del win
    return y


# ------------------------------------------------------------------------------------------------------ winograd

def _winograd(name: str, m: int, rt: Runtime, knobs: dict, x, weight, bias, stride, padding, scratch_bytes=None,
              residual=None):
    s = ConvShape.of(x, weight, stride, padding)
    if not s.winograd:
        _unsupported(name, s, "3x3 kernels with stride 1")
    a2 = (m + 2) ** 2
    th, tw = -(-s.oh // m), -(-s.ow // m)
    tiles = s.n * th * tw
    defines = pick(knobs, "WG", "WV")
    wg = int(knobs["WG"])
    k_w, k_in, k_out = (rt.kernel("conv2d/winograd.cl", f"conv2d_{name}_{part}", defines, x.dtype)
                        for part in ("weights", "input", "output"))
    if x.dtype == np.float16:
        _float16_arrays(name, x, weight, bias, residual)
    real = compute_type(x.dtype)          # U, V and M: float32 scratch in float16 (conv2d/winograd.cl)
    u = rt.empty((a2, s.o, s.c), real)                                 # U[xi, o, c]
    rt.launch("conv2d", k_w, (groups(-(-s.o * s.c // int(knobs["WV"])), wg),), (wg,), buffer(rt, weight), u.data,
              *i32(s.o, s.c))
    y = rt.empty((s.n, s.o, s.oh, s.ow), x.dtype)
    xb = buffer(rt, x)
    bb = xb if bias is None else buffer(rt, bias)
    rb = xb if residual is None else buffer(rt, residual)
    chunk = _chunk(tiles, a2 * (s.c + s.o) * real.itemsize, _scratch_budget(rt, scratch_bytes))
    for t0 in range(0, tiles, chunk):
        tq = min(chunk, tiles - t0)
        v = rt.empty((a2, s.c, tq), real)                              # V[xi, c, t - t0]
        rt.launch("conv2d", k_in, (groups(tq, wg), s.c), (wg, 1), xb, v.data, np.int64(t0),
                  *i32(tq, s.c, s.h, s.w, th, tw, s.pt, s.pl))
        mt = ops.batched_matmul(rt, u, v)                                      # M[xi, o, t - t0]
        del v
        rt.launch("conv2d", k_out, (groups(tq, wg), s.o), (wg, 1), mt.data, bb, rb, y.data, np.int64(t0),
                  *i32(tq, s.o, s.oh, s.ow, th, tw, bias is not None, residual_mode(residual)))
        del mt
    return y


def winograd2x2(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    return _winograd("winograd2x2", 2, call.rt, call.knobs, x, weight, bias, stride, padding, residual=residual)


def winograd4x4(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    return _winograd("winograd4x4", 4, call.rt, call.knobs, x, weight, bias, stride, padding, residual=residual)


def winograd_conv(m: int, rt: Runtime, knobs: dict, x, weight, bias=None, stride=1, padding=0, scratch_bytes=None,
                  residual=None):
    """F(m x m, 3 x 3) with an explicit scratch budget (tests pass a small one to exercise the tile chunks)."""
    return _winograd(f"winograd{m}x{m}", m, rt, knobs, x, weight, bias, stride, padding, scratch_bytes, residual)


# -------------------------------------------------------------------------------------------------- direct_tiled

def direct_local_elements(knobs: dict, kh: int, kw: int, sh: int, sw: int, channels: int) -> int:
    """REAL elements of local memory conv2d_direct_tiled uses when it stages `channels` input channels."""
    k = knobs
    ph, pw = (k["TILE_H"] - 1) * sh + kh, (k["TILE_W"] * k["PX_PER_ITEM"] - 1) * sw + kw
    return channels * (ph * pw + k["OC_PER_ITEM"] * kh * kw)


def direct_tiled(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    rt, k = call.rt, call.knobs
    s = ConvShape.of(x, weight, stride, padding)
    knl = rt.kernel("conv2d/direct_tiled.cl", "conv2d_direct_tiled",
                    pick(k, "TILE_H", "TILE_W", "PX_PER_ITEM", "OC_PER_ITEM", "C_CHUNK"), x.dtype)
    per_channel = direct_local_elements(k, s.kh, s.kw, s.sh, s.sw, 1) * compute_type(x.dtype).itemsize  # REAL
    left = rt.local_bytes_left(knl)      # the device's local memory less the kernel's own (NVIDIA: 1 byte)
    cc = min(k["C_CHUNK"], s.c, left // per_channel)
    if cc < 1:
        raise ValueError(f"conv2d direct_tiled: one input channel's patch needs {per_channel} bytes of local memory "
                         f"for kernel {s.kh}x{s.kw}, stride ({s.sh}, {s.sw}) and knobs {k}; "
                         f"{rt.info['device']} leaves this kernel {left} bytes")
    oblocks = -(-s.o // k["OC_PER_ITEM"])
    tow = k["TILE_W"] * k["PX_PER_ITEM"]
    y = rt.empty((s.n, s.o, s.oh, s.ow), x.dtype)
    xb = buffer(rt, x)
    rt.launch("conv2d", knl, (-(-s.ow // tow) * k["TILE_W"], groups(s.oh, k["TILE_H"]), s.n * oblocks),
              (k["TILE_W"], k["TILE_H"], 1), xb, buffer(rt, weight), xb if bias is None else buffer(rt, bias),
              xb if residual is None else buffer(rt, residual), y.data, cl.LocalMemory(cc * per_channel),
              *i32(s.c, s.h, s.w, s.o, s.kh, s.kw, s.oh, s.ow, s.sh, s.sw, s.pt, s.pl, cc, oblocks, bias is not None,
                   residual_mode(residual)))
    return y
