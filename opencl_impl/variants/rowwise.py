"""Variants of the row-wise ops: group_norm, group_norm_silu, layer_norm and softmax (`reduce`: work-group tree
reductions spread wide enough for SD's shapes; `fused`: SiLU in GroupNorm's normalizing pass), geglu (`fused`) and the
activations' `vec` (kernels/activation.cl).

Each is the launcher its registry declaration names (sdcl.registry.norm, sdcl.registry.elementwise), called with a
Call holding every knob. Knobs that only the host reads (SPLIT) are not passed to the kernel build, so they cost no
extra build. Kernels: kernels/norm/group_norm.cl (group_norm's reduce and group_norm_silu's fused variant: one build
of a (WG, VEC) serves both), norm/layer_norm.cl, norm/softmax.cl, geglu.cl. A missing weight or bias is a run-time
flag, not a build of its own.
"""

from __future__ import annotations

import numpy as np

from sdcl.opencl_impl.launch import Call, buffer, compute_type, groups, i32, real
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.variants.naive import activation


def _affine_args(rt: Runtime, xb, weight, bias) -> tuple:
    """The weight and bias buffers (x's buffer stands in for a missing one: the kernel does not read it)."""
    return (xb if weight is None else buffer(rt, weight)), (xb if bias is None else buffer(rt, bias))


# ---------------------------------------------------------------------------------- group_norm: two-pass reduce

def _split(count: int, wg: int, most: int) -> tuple:
    """(split, chunk): a block of `count` cut into `split` non-empty chunks of `chunk` elements (the last one
    shorter), at most `most` of them and none much shorter than a work-group."""
    want = max(1, min(most, -(-count // wg)))
    chunk = -(-count // want)
    return -(-count // chunk), chunk


def _group_norm_two_pass(call: Call, x, num_groups, weight, bias, eps, silu: bool):
    """group_norm's two launches (moments per chunk, then merge and normalize), SiLU in the second where silu (the
    launches then named group_norm_silu)."""
    rt, knobs = call.rt, call.knobs
    wg, most, vec = (int(knobs[n]) for n in ("WG", "SPLIT", "VEC"))
    y = rt.empty(x.shape, x.dtype)
    if not y.size:
        return y
    n, c = x.shape[:2]
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    count = c // num_groups * spatial
    split, chunk = _split(count, wg * vec, most)
    blocks = n * num_groups
    defines = {"WG": wg, "VEC": vec}
    xb = buffer(rt, x)
    partial = rt.empty((blocks, split, 2), compute_type(x.dtype))     # (mean, M2) per chunk, in REAL
    stats = rt.kernel("norm/group_norm.cl", "group_norm_reduce_stats", defines, x.dtype)
    op = "group_norm_silu" if silu else "group_norm"
    rt.launch(op, stats, (split * wg, blocks), (wg, 1),
              xb, partial.data, np.int64(count), np.int64(chunk), np.int32(split))
    apply = rt.kernel("norm/group_norm.cl", "group_norm_reduce_apply", defines, x.dtype)
    rt.launch(op, apply, (split * wg, blocks), (wg, 1),
              xb, partial.data, *_affine_args(rt, xb, weight, bias), y.data, np.int32(c), np.int32(num_groups),
              np.int64(spatial), np.int64(chunk), np.int32(split), real(x.dtype, eps),
              *i32(weight is not None, bias is not None, silu))
    return y


def group_norm_reduce(call: Call, x, num_groups, weight=None, bias=None, eps=1e-5):
    return _group_norm_two_pass(call, x, num_groups, weight, bias, eps, silu=False)


def group_norm_silu_reduce(call: Call, x, num_groups, weight=None, bias=None, eps=1e-5):
    """The two-pass group_norm, then silu: three launches (the fused variant does it in one or two)."""
    return activation(call.rt, "silu", group_norm_reduce(call, x, num_groups, weight, bias, eps))


def group_norm_silu_fused(call: Call, x, num_groups, weight=None, bias=None, eps=1e-5):
    """SiLU fused into GroupNorm's normalizing pass: with SPLIT 1, or a block too short to cut, one work-group per
    (sample, group) and one launch; else each block cut into up to SPLIT chunks (the reduce kernels, two launches),
    so that the VAE's few large groups fill a GPU."""
    rt, knobs = call.rt, call.knobs
    wg, vec = (int(knobs[n]) for n in ("WG", "VEC"))
    n, c = x.shape[:2]
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    if x.size and _split(c // num_groups * spatial, wg * vec, int(knobs["SPLIT"]))[0] > 1:
        return _group_norm_two_pass(call, x, num_groups, weight, bias, eps, silu=True)
    y = rt.empty(x.shape, x.dtype)
    if not y.size:
        return y
    knl = rt.kernel("norm/group_norm.cl", "group_norm_silu_fused", {"WG": wg, "VEC": vec}, x.dtype)
    xb = buffer(rt, x)
    rt.launch("group_norm_silu", knl, (wg, n * num_groups), (wg, 1),
              xb, *_affine_args(rt, xb, weight, bias), y.data, np.int32(c), np.int32(num_groups),
              np.int64(spatial), real(x.dtype, eps), *i32(weight is not None, bias is not None))
    return y


# ------------------------------------------------------------------------------------ layer_norm: packed rows

def layer_norm_reduce(call: Call, x, weight=None, bias=None, eps=1e-5):
    rt, knobs = call.rt, call.knobs
    wg, tpr, vec = (int(knobs[n]) for n in ("WG", "TPR", "VEC"))
    y = rt.empty(x.shape, x.dtype)
    d = x.shape[-1]
    if not y.size:
        return y
    rows, rpw = x.size // d, wg // tpr
    knl = rt.kernel("norm/layer_norm.cl", "layer_norm_reduce", {"WG": wg, "TPR": tpr, "VEC": vec}, x.dtype)
    xb = buffer(rt, x)
    rt.launch("layer_norm", knl, (tpr, groups(rows, rpw)), (tpr, rpw),
              xb, *_affine_args(rt, xb, weight, bias), y.data, np.int64(rows), np.int32(d), real(x.dtype, eps),
              *i32(weight is not None, bias is not None))
    return y


# -------------------------------------------------------------------------------------- softmax: packed lines

def softmax_reduce(call: Call, x, axis=-1):
    rt, knobs = call.rt, call.knobs
    wg, tpl, vec = (int(knobs[n]) for n in ("WG", "TPL", "VEC"))
    y = rt.empty(x.shape, x.dtype)
    ax = axis % x.ndim
    length, inner = x.shape[ax], int(np.prod(x.shape[ax + 1:], dtype=np.int64))
    if not y.size:
        return y
    lines, lpw = x.size // length, wg // tpl
    knl = rt.kernel("norm/softmax.cl", "softmax_reduce", {"WG": wg, "TPL": tpl, "VEC": vec}, x.dtype)
    rt.launch("softmax", knl, (tpl, groups(lines, lpw)), (tpl, lpw),
              buffer(rt, x), y.data, np.int64(lines), np.int32(length), np.int64(inner))
    return y


# -------------------------------------------------------------------------------------------- geglu: one launch

def activation_vec(call: Call, x):
    """silu, gelu, gelu_tanh, quick_gelu: the entry point <op>_vec of kernels/activation.cl, VEC elements a
    work-item."""
    rt, vec, wg = call.rt, int(call.knobs["VEC"]), int(call.knobs["WG"])
    y = rt.empty(x.shape, x.dtype)
    if y.size:
        knl = rt.kernel("activation.cl", f"{call.op}_vec", {"VEC": vec, "WG": wg}, x.dtype)
        rt.launch(call.op, knl, (groups(-(-x.size // vec), wg),), (wg,), buffer(rt, x), y.data, np.int64(x.size))
    return y


def geglu_fused(call: Call, x):
    rt, knobs = call.rt, call.knobs
    vec, wg = (int(knobs[n]) for n in ("VEC", "WG"))
    f = x.shape[-1] // 2
    y = rt.empty(x.shape[:-1] + (f,), x.dtype)
    if not y.size:
        return y
    knl = rt.kernel("geglu.cl", "geglu_fused", {"VEC": vec, "WG": wg}, x.dtype)
    rt.launch("geglu", knl, (groups(-(-f // vec), wg), y.size // f), (wg, 1), buffer(rt, x), y.data, np.int64(f))
    return y
