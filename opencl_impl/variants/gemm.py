"""GEMM variants of matmul, batched_matmul and linear: launchers of the kernels in kernels/gemm/.

All three ops are one strided, batched product (`gemm` below), which other ops may call too (attention's Q K^T
and P V, a 1x1 convolution): C_z = alpha * A_z @ B_z (+ bias), B_z optionally stored transposed, batch items at
two-level strides so that heads of a (B, L, H*D) activation need no copy. The technique is a kernel file and entry
point (kernels/gemm/<technique>.cl, `gemm_<technique>`); its knobs are -D macros documented in the kernel file.

Techniques:
- tiled:      local-memory tiles, TS x TS work-groups, one output per work-item; tails by bounds checks.
- tiled_reg:  GPU-style: local-memory tiles with MWI x NWI outputs per work-item in registers, REAL4 loads where the
              layout is aligned; tails by bounds checks (no host-side padding).
- cpu_reg:    CPU-style (PoCL): no local memory; each work-item an MR x NR register block of vectors.
- mma_tf32:   NVIDIA tensor cores through inline PTX (mma.sync m16n8k8 TF32, 3xTF32 split by default); float32 only
              (its declaration says so: float64 calls are refused, never handed to another kernel).
- mma_f16:    NVIDIA tensor cores in float16 (mma.sync m16n8k16 f16 x f16 -> f32): both operands rounded to half as
              they are staged (or read as half), float32 accumulation and C; float32, or the float16 dtype (every
              array half, C rounded to half once from the float32 epilogue).
              On any other device mma_tf32 and mma_f16 raise MmaUnavailable (a DeviceError, and a KernelBuildError so
              that the tuner records it as a config that does not build there) unless MMA_EMULATE=1 (a slow OpenCL C
              emulation, for tests).

Half storage (linear's tiled_reg_half, cpu_reg_half and mma_f16_half): the weight is a float16 array (A_HALF / B_HALF
in the kernel: vload_half, products accumulated in float); a float32 weight is rounded to half on the device first
(at every call; once in a replayed model, Runtime.derived), which is what a model stored in half does once at load
time (sdcl.opencl_impl.ops.to_half).

The float16 dtype (every array float16: naive, tiled, cpu_reg, tiled_reg, mma_f16 and their _half forms): the kernels
are built with -DDATA_HALF (kernels/gemm/gemm.h), read A, B, the bias and the residual as half and write C as half;
the arithmetic, and the split-K partial sums between mma_f16's two kernels, stay float (launch.compute_type).
"""

from __future__ import annotations

import functools

import numpy as np

from sdcl.opencl_impl.devices import DeviceError
from sdcl.opencl_impl.launch import Call, buffer, compute_type, real
from sdcl.opencl_impl.ops import to_half
from sdcl.opencl_impl.runtime import KernelBuildError, Runtime
from sdcl.registry.linalg import mma_f16_local_bytes

FLAG_TRANS_B, FLAG_BIAS_N, FLAG_BIAS_M, FLAG_VEC_OK, FLAG_RES, FLAG_VEC8_OK = 1, 2, 4, 8, 16, 32   # GEMM_* flags
                                                                                             # (kernels/gemm/gemm.h)
TECHNIQUES = ("tiled", "tiled_reg", "cpu_reg", "mma_tf32", "mma_f16")
MMA = ("mma_tf32", "mma_f16")          # the tensor-core techniques: NVIDIA PTX, float32 (mma_f16: float16 too)


def _ceil_to(n: int, step: int) -> int:
    return (n + step - 1) // step * step


# gemm_cpu_reg's work-group: fixed, so that PoCL generates one work-group function per build; left to the driver, the
# local size followed the global one, and every new shape cost 1.0-1.3 s of code generation on a 2-core EPYC (the
# gate's fuzzed shapes: most of a fresh machine's test time). The work-items of a group run in a loop on one thread.
# PoCL, 2 cores, float32, 8 GEMMs from 5x7x3 to 320x2048x2880 (NN and B^T), the minimum of 5 calls, the median of
# 3 passes: 4 x 4 within the driver's choice's noise or faster at each (2048x2560x320 B^T 92.8 -> 91.5 ms,
# 320x2048x2880 101.5 -> 97.4), 16 x 16 faster on the largest and up to 2x slower on the small ones (77x1024x1024:
# 3.2 -> 6.7 ms: a few large groups for two threads).
CPU_REG_LOCAL = (4, 4)


def ndrange(technique: str, k: dict, m: int, n: int, z: int) -> tuple:
    """(global size, local size) of one launch of C (m, n) in z batch items (also the launch of conv2d's implicit GEMM
    on the mma tiles: variants.conv.implicit_mma_f16)."""
    if technique == "tiled":
        ts = k["TS"]
        return (_ceil_to(n, ts), _ceil_to(m, ts), z), (ts, ts, 1)
    if technique == "tiled_reg":
        return ((_ceil_to(n, k["NWG"]) // k["NWG"] * k["NDIMC"], _ceil_to(m, k["MWG"]) // k["MWG"] * k["MDIMC"], z),
                (k["NDIMC"], k["MDIMC"], 1))
    if technique == "cpu_reg":      # the blocks, padded to whole work-groups of CPU_REG_LOCAL (kernels/gemm/cpu_reg.cl)
        lx, ly = CPU_REG_LOCAL
        return (_ceil_to(-(-n // k["NR"]), lx), _ceil_to(-(-m // k["MR"]), ly), z), (lx, ly, 1)
    if technique in MMA:
        wn, wm = k["WARPS_N"], k["WARPS_M"]
        return ((_ceil_to(n, k["NWG"]) // k["NWG"] * 32 * wn, _ceil_to(m, k["MWG"]) // k["MWG"] * wm, z),
                (32 * wn, wm, 1))
    raise ValueError(f"gemm: unknown technique {technique!r}")


def gemm(rt: Runtime, op: str, technique: str, knobs: dict, a, b, c, m: int, n: int, k: int, *,
         lda: int, ldb: int, ldc: int, trans_b: bool = False, bias=None, bias_axis: str = "n", residual=None,
         alpha: float = 1.0, batch: int = 1, batch_inner: int = 1, a_strides=(0, 0), b_strides=(0, 0),
         c_strides=(0, 0), dtype=np.float32, a_half: bool = False, b_half: bool = False):
    """Launch C_z = alpha * A_z @ B_z (+ bias) (+ R_z) for z < batch (layout: see kernels/gemm/gemm.h).

    knobs: every knob of the technique (a declaration's complete knobs: Variant.complete). a, b, c, bias, residual:
    cl.Buffers (bias and residual may be None; the residual R is laid out as C: ldc, c_strides); *_strides:
    (outer, inner) element offsets between batch items, item z at (z // batch_inner) * outer + (z % batch_inner) *
    inner; a_half / b_half: that operand's buffer holds half (float16) elements. Returns the kernel's event, or None
    when C is empty."""
    if m <= 0 or n <= 0 or batch <= 0:
        return None
    if np.dtype(dtype) == np.float16 and technique == "mma_tf32":
        raise ValueError(f"gemm {technique}: its kernel reads REAL arrays, not the float16 dtype's half ones "
                         f"(float16: tiled, cpu_reg, tiled_reg, mma_f16)")
    if (a_half or b_half) and technique == "mma_tf32":
        raise ValueError("gemm: half-stored operands are read by tiled, tiled_reg, cpu_reg and mma_f16, not mma_tf32")
    if technique in MMA:
        if np.dtype(dtype) != np.float32 and not (technique == "mma_f16" and np.dtype(dtype) == np.float16):
            raise ValueError(f"gemm {technique}: a float32 kernel (tensor-core products, float32 accumulation), "
                             f"got {np.dtype(dtype).name}")
        check_mma(rt, technique, knobs)
    if technique == "cpu_reg":
        rt.check_loops(f"gemm cpu_reg ({m}x{k} @ {k}x{n}, MR {knobs['MR']}, NR {knobs['NR']})",
                       cpu_reg_loops(knobs, n, k, trans_b))
    kn = mma_stages(rt, knobs) if technique == "mma_f16" else knobs
    vec_ok = all(v % 4 == 0 for v in (lda, ldb, ldc, *a_strides, *b_strides, *c_strides))
    vec8_ok = all(v % 8 == 0 for v in (lda, ldb, *a_strides, *b_strides))
    flags = ((FLAG_TRANS_B if trans_b else 0) | (FLAG_VEC_OK if vec_ok else 0) | (FLAG_VEC8_OK if vec8_ok else 0)
             | (0 if bias is None else FLAG_BIAS_N if bias_axis == "n" else FLAG_BIAS_M)
             | (0 if residual is None else FLAG_RES))
    defines = {**{x: v for x, v in kn.items() if x not in HOST_KNOBS}, **({"A_HALF": 1} if a_half else {}),
               **({"B_HALF": 1} if b_half else {})}
    knl = rt.kernel(f"gemm/{technique}.cl", f"gemm_{technique}", defines, dtype)
    splits, chunk, extra = 1, k, ()
    if technique == "mma_f16":      # split-K where the tiles leave compute units idle (kernels/gemm/mma_f16.cl)
        wgs = -(-m // kn["MWG"]) * -(-n // kn["NWG"]) * batch
        splits, chunk = split_k(kn, wgs, k, rt.info.get("compute_units", 1))
        part = rt.empty((splits * batch * m * n,), compute_type(dtype)) if splits > 1 else None   # REAL partials
        extra = (np.int32(splits), np.int32(chunk), c if part is None else part.data)
    gsize, lsize = ndrange(technique, kn, m, n, batch * splits)
    bias_b, res_b = a if bias is None else bias, a if residual is None else residual
    event = rt.launch(op, knl, gsize, lsize, a, b, bias_b, res_b, c,
                      *(np.int32(v) for v in (m, n, k, lda, ldb, ldc, batch_inner)),
                      *(np.int64(v) for v in (*a_strides, *b_strides, *c_strides)), real(dtype, alpha),
                      np.int32(flags), *extra)
    if splits > 1:
        knl = rt.kernel("gemm/mma_f16.cl", "gemm_splitk_sum", defines, dtype)
        event = rt.launch(op, knl, (n, m, batch), None, part.data, bias_b, res_b, c,   # the driver's work-groups
                          *(np.int32(v) for v in (m, n, ldc, batch_inner)),
                          *(np.int64(v) for v in c_strides), real(dtype, alpha), np.int32(flags), np.int32(splits))
    return event


HOST_KNOBS = ("SPLITK",)    # knobs the host reads, not the kernel (no -D: no build of its own)
# split_k's price of splitting, in KWG steps of one wave: ~17 us on an H100 where a step took ~0.75 us (linear at
# (512, 1280) x 1280 split 3 ways, float16: 0.038 ms against 0.032 unsplit, of which two waves of 14 steps ~21 us)
SPLIT_COST = 24


def split_k(knobs: dict, wgs: int, depth: int, compute_units: int) -> tuple:
    """(splits, chunk) of the tensor-core float16 kernels' split-K (gemm_mma_f16, conv2d_implicit_mma_f16) for a
    launch of wgs work-groups over a reduction of `depth`: knob SPLITK 1 none, n > 1 that many (at most one per KWG
    step), 0 (auto) by a cost in KWG steps: with one work-group per compute unit at a time, s splits take
    ceil(wgs s / units) waves of ceil(steps / s) steps, and any split adds SPLIT_COST steps (the float32 partial
    sums written and read, the second kernel's launch); auto takes the fewest splits within 10% of the cheapest,
    every split keeping at least 4 steps (at most 16 splits); from twice as many work-groups as units on, none.
    H100, float16 (docs/results/ab-knobs-nvidia-h100-8.txt): without the cost, splitting by waves alone took the
    UNet's 1280-channel 3x3 at 16 x 16 (80 work-groups, 360 steps: now 3 splits) 0.255 -> 0.166 ms, and linear at
    (512, 1280) x 1280 (80 work-groups, 40 steps: now none) 0.032 -> 0.038. chunk: the depth per split, a multiple
    of KWG; no split is empty."""
    kwg, want = knobs["KWG"], int(knobs.get("SPLITK", 1))
    steps = -(-depth // kwg)
    if want == 0:
        want = 1
        if wgs < 2 * compute_units:
            cost = {s: -(-wgs * s // compute_units) * -(-steps // s) + (s > 1) * SPLIT_COST
                    for s in range(1, max(1, min(16, steps // 4)) + 1)}
            best = min(cost.values())
            want = min(s for s, t in cost.items() if t <= 1.1 * best)
    want = max(1, min(want, steps))
    chunk = -(-steps // want) * kwg
    return -(-depth // chunk), chunk


def mma_stages(rt: Runtime, knobs: dict) -> dict:
    """The tensor-core float16 kernels' knobs with STAGES as built here: as many local buffers as asked for that fit
    the device's local memory (the tuned tables hold tile sizes timed with one buffer: a 128 x 128 x 64 config
    takes 36 KiB once and 72 KiB twice, of the 48 KiB NVIDIA's driver reports; it built such kernels on an H200
    all the same, but the reported size is what a device promises); cp.async (ASYNC) only with two or more (with
    one, as a table entry timed before the knob may say, the staging through registers; the same for the implicit
    conv's NHWC, whose copies are cp.async too)."""
    stages = knobs.get("STAGES", 1)
    while stages > 1 and mma_f16_local_bytes(knobs, stages) > rt.device.local_mem_size:
        stages -= 1
    return {**knobs, "STAGES": stages, **{name: 0 for name in ("ASYNC", "NHWC") if name in knobs and stages < 2}}


def cpu_reg_loops(knobs: dict, n: int, k: int, trans_b: bool) -> int:
    """An upper bound on the loop trips of one gemm_cpu_reg work-item: where B (K, N) is narrower than a vector of NR
    (or NR is not a vector width) each of its MR x NR outputs loops over K; else the K loop steps with its MR rows
    inside, and the tail of K % KV (B^T) or KU (B) per output."""
    mr, nr, kv = knobs["MR"], knobs["NR"], max(knobs["KV"], knobs["KU"])
    if not trans_b and (n < nr or nr not in (4, 8, 16)):
        return mr * min(n, nr) * (k + 1) + mr
    return k * (mr + 2) + mr * nr * (kv + 1)


class MmaUnavailable(DeviceError, KernelBuildError):
    """gemm_mma_tf32 or gemm_mma_f16 cannot run on this device (no NVIDIA PTX, or no sm_80 tensor cores)."""


_MMA_PTX = {"mma_tf32": "mma.sync m16n8k8 TF32", "mma_f16": "mma.sync m16n8k16 float16"}


def check_mma(rt: Runtime, technique: str, knobs: dict, what: str = "") -> None:
    """MmaUnavailable unless the device runs the tensor-core PTX of technique (or knobs emulate it); what: the kernel
    as the message names it (default "gemm <technique>")."""
    if knobs.get("MMA_EMULATE"):
        return
    what = what or f"gemm {technique}"
    if not rt.info.get("nvidia_ptx"):
        raise MmaUnavailable(f"{what} runs NVIDIA PTX ({_MMA_PTX[technique]}, sm_80 or newer); "
                          f"{rt.info['device']} ({rt.info['platform']}) is not an NVIDIA GPU")
    try:   # cl_nv_device_attribute_query
        cc = (rt.device.compute_capability_major_nv, rt.device.compute_capability_minor_nv)
    except Exception:  # noqa: BLE001  (pyopencl raises LogicError or AttributeError, by version)
        return
    if cc < (8, 0):
        raise MmaUnavailable(f"{what} needs an NVIDIA GPU of compute capability 8.0 or newer "
                          f"({_MMA_PTX[technique]}); {rt.info['device']} is {cc[0]}.{cc[1]}")


# --------------------------------------------------------------------------------------------------- the ops
# One launcher per op (the declarations name "sdcl.opencl_impl.variants.gemm:{op}"); the technique is the variant's
# name, "_half" marking half storage of linear's weight.

def _technique(call: Call) -> tuple:
    name = call.variant.name
    return name.removesuffix("_half"), name.endswith("_half")


def matmul(call: Call, a, b):
    rt, (technique, _) = call.rt, _technique(call)
    (m, k), n = a.shape, b.shape[1]
    c = rt.empty((m, n), a.dtype)
    if c.size:
        gemm(rt, "matmul", technique, call.knobs, buffer(rt, a), buffer(rt, b), c.data, m, n, k,
             lda=k, ldb=n, ldc=n, dtype=a.dtype)
    return c


def batched_matmul(call: Call, a, b):
    rt, (technique, _) = call.rt, _technique(call)
    (nb, m, k), n = a.shape, b.shape[2]
    c = rt.empty((nb, m, n), a.dtype)
    if c.size:
        gemm(rt, "batched_matmul", technique, call.knobs, buffer(rt, a), buffer(rt, b), c.data, m, n, k,
             lda=k, ldb=n, ldc=n, batch=nb, a_strides=(m * k, 0), b_strides=(k * n, 0), c_strides=(m * n, 0),
             dtype=a.dtype)
    return c


def linear(call: Call, x, weight, bias=None, residual=None):
    rt, (technique, half) = call.rt, _technique(call)
    n_out, n_in = weight.shape
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    y = rt.empty(x.shape[:-1] + (n_out,), x.dtype)
    if half and weight.dtype != np.float16:
        weight = rt.derived(weight, ("to_half", weight.shape), functools.partial(to_half, rt, weight))
    if y.size:
        gemm(rt, "linear", technique, call.knobs, buffer(rt, x), buffer(rt, weight), y.data, rows, n_out, n_in,
             lda=n_in, ldb=n_in, ldc=n_out, trans_b=True, bias=None if bias is None else buffer(rt, bias),
             residual=None if residual is None else buffer(rt, residual), dtype=x.dtype, b_half=half)
    return y
