"""Variants of the row-wise ops: group_norm, group_norm_silu, layer_norm and softmax (`reduce`: work-group tree
reductions spread wide enough for SD's shapes; `fused`: GroupNorm + SiLU in one launch), and geglu (`fused`).

Launchers register themselves with `@variant(op, name)` (imported at the end of opencl_impl/ops.py); their knobs
and tuning spaces are the registry's (conformance/ops_norm.py, conformance/ops_elementwise.py). Knobs that only the
host reads (SPLIT) are not passed to the kernel build, so they cost no extra build.
"""

from __future__ import annotations

import numpy as np

from opencl_impl.ops import _buf, _groups, _has, _real, _silu_naive, variant
from opencl_impl.runtime import Runtime

# The knobs' defaults when a caller passes none (the registry rows hold the same defaults and the tuning spaces).
GROUP_NORM = {"WG": 4, "SPLIT": 8, "VEC": 16}   # reduce: work-group size, most work-groups per (sample, group),
                                                # vector width; fused: WG and VEC
LAYER_NORM = {"WG": 8, "TPR": 1, "VEC": 16}     # reduce: work-group size, work-items per row, vector width
SOFTMAX = {"WG": 16, "TPL": 1, "VEC": 16}       # reduce: work-group size, work-items per line, vector width
GEGLU = {"VEC": 16, "WG": 64}                   # fused: outputs per work-item, work-items per work-group


def _affine_args(rt: Runtime, xb, weight, bias) -> tuple:
    """The weight and bias buffers (x's buffer stands in for a missing one: the kernel does not read it)."""
    return (xb if weight is None else _buf(rt, weight)), (xb if bias is None else _buf(rt, bias))


# ---------------------------------------------------------------------------------- group_norm: two-pass reduce

def _split(count: int, wg: int, most: int) -> tuple:
    """(split, chunk): a block of `count` cut into `split` non-empty chunks of `chunk` elements (the last one
    shorter), at most `most` of them and none much shorter than a work-group."""
    want = max(1, min(most, -(-count // wg)))
    chunk = -(-count // want)
    return -(-count // chunk), chunk


@variant("group_norm", "reduce")
def _group_norm_reduce(rt: Runtime, knobs: dict, x, num_groups, weight=None, bias=None, eps=1e-5):
    wg, most, vec = (int(knobs.get(n, GROUP_NORM[n])) for n in ("WG", "SPLIT", "VEC"))
    y = rt.empty(x.shape, x.dtype)
    if not y.size:
        return y
    n, c = x.shape[:2]
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    count = c // num_groups * spatial
    split, chunk = _split(count, wg * vec, most)
    groups = n * num_groups
    defines = _has({"WG": wg, "VEC": vec}, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None)
    xb = _buf(rt, x)
    partial = rt.empty((groups, split, 2), x.dtype)     # (mean, M2) per chunk
    stats = rt.kernel("group_norm_reduce.cl", "group_norm_reduce_stats", defines, x.dtype)
    rt.launch("group_norm", stats, (split * wg, groups), (wg, 1),
              xb, partial.data, np.int64(count), np.int64(chunk), np.int32(split))
    apply = rt.kernel("group_norm_reduce.cl", "group_norm_reduce_apply", defines, x.dtype)
    rt.launch("group_norm", apply, (split * wg, groups), (wg, 1),
              xb, partial.data, *_affine_args(rt, xb, weight, bias), y.data, np.int32(c), np.int32(num_groups),
              np.int64(spatial), np.int64(chunk), np.int32(split), _real(x.dtype, eps))
    return y


@variant("group_norm_silu", "reduce")
def _group_norm_silu_reduce(rt: Runtime, knobs: dict, x, num_groups, weight=None, bias=None, eps=1e-5):
    """The two-pass group_norm, then silu: three launches (the fused variant does it in one)."""
    return _silu_naive(rt, {}, _group_norm_reduce(rt, knobs, x, num_groups, weight, bias, eps))


@variant("group_norm_silu", "fused")
def _group_norm_silu_fused(rt: Runtime, knobs: dict, x, num_groups, weight=None, bias=None, eps=1e-5):
    wg, vec = (int(knobs.get(n, GROUP_NORM[n])) for n in ("WG", "VEC"))
    y = rt.empty(x.shape, x.dtype)
    if not y.size:
        return y
    n, c = x.shape[:2]
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    knl = rt.kernel("group_norm_silu.cl", "group_norm_silu_fused",
                    _has({"WG": wg, "VEC": vec}, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None),
                    x.dtype)
    xb = _buf(rt, x)
    rt.launch("group_norm_silu", knl, (wg, n * num_groups), (wg, 1),
              xb, *_affine_args(rt, xb, weight, bias), y.data, np.int32(c), np.int32(num_groups),
              np.int64(spatial), _real(x.dtype, eps))
    return y


# ------------------------------------------------------------------------------------ layer_norm: packed rows

@variant("layer_norm", "reduce")
def _layer_norm_reduce(rt: Runtime, knobs: dict, x, weight=None, bias=None, eps=1e-5):
    wg, tpr, vec = (int(knobs.get(n, LAYER_NORM[n])) for n in ("WG", "TPR", "VEC"))
    y = rt.empty(x.shape, x.dtype)
    d = x.shape[-1]
    if not y.size:
        return y
    rows, rpw = x.size // d, wg // tpr
    knl = rt.kernel("layer_norm_reduce.cl", "layer_norm_reduce",
                    _has({"WG": wg, "TPR": tpr, "VEC": vec}, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None),
                    x.dtype)
    xb = _buf(rt, x)
    rt.launch("layer_norm", knl, (tpr, _groups(rows, rpw)), (tpr, rpw),
              xb, *_affine_args(rt, xb, weight, bias), y.data, np.int64(rows), np.int32(d), _real(x.dtype, eps))
    return y


# -------------------------------------------------------------------------------------- softmax: packed lines

@variant("softmax", "reduce")
def _softmax_reduce(rt: Runtime, knobs: dict, x, axis=-1):
    wg, tpl, vec = (int(knobs.get(n, SOFTMAX[n])) for n in ("WG", "TPL", "VEC"))
    y = rt.empty(x.shape, x.dtype)
    ax = axis % x.ndim
    length, inner = x.shape[ax], int(np.prod(x.shape[ax + 1:], dtype=np.int64))
    if not y.size:
        return y
    lines, lpw = x.size // length, wg // tpl
    knl = rt.kernel("softmax_reduce.cl", "softmax_reduce", {"WG": wg, "TPL": tpl, "VEC": vec}, x.dtype)
    rt.launch("softmax", knl, (tpl, _groups(lines, lpw)), (tpl, lpw),
              _buf(rt, x), y.data, np.int64(lines), np.int32(length), np.int64(inner))
    return y


# -------------------------------------------------------------------------------------------- geglu: one launch

@variant("geglu", "fused")
def _geglu_fused(rt: Runtime, knobs: dict, x):
    vec, wg = (int(knobs.get(n, GEGLU[n])) for n in ("VEC", "WG"))
    f = x.shape[-1] // 2
    y = rt.empty(x.shape[:-1] + (f,), x.dtype)
    if not y.size:
        return y
    knl = rt.kernel("geglu_fused.cl", "geglu_fused", {"VEC": vec, "WG": wg}, x.dtype)
    rt.launch("geglu", knl, (_groups(-(-f // vec), wg), y.size // f), (wg, 1), _buf(rt, x), y.data, np.int64(f))
    return y
