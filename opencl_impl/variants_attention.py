"""Variants of attention: `gemm` (scores by the GEMM, softmax, P V by the GEMM), `softmax_fused` (scores by the
GEMM, the softmax's normalization fused into the P V product), `flash` (FlashAttention: key tiles, online
softmax, no score matrix in global memory) and `flash_reg` (the same, for GPUs, with the query tile in local memory
and both products register-blocked).

Launchers register themselves with `@variant("attention", name)` (imported at the end of opencl_impl/ops.py);
their knobs and tuning spaces are the registry's attention row (conformance/ops_linalg.py). The head dimension D is
compiled into the tiled kernels (-D HEAD_DIM, one build per D: 40, 64, 80, 160 in SD).
"""

from __future__ import annotations

import math

import numpy as np

from opencl_impl import ops
from opencl_impl.ops import _buf, _groups, _launch_flat, _real, variant
from opencl_impl.runtime import DeviceError, Runtime

TILE_KNOBS = {"BQ": 32, "BK": 32, "WL": 1, "RQ": 4, "VEC": 16}   # the tiled kernels' defaults (registry row)
STATS_KNOBS = {"WG": 64, "TPR": 1, "VEC": 16}                    # softmax_fused's row statistics
FLASH_REG_KNOBS = {"BQ": 64, "BK": 32, "WL": 8, "RQ": 8}         # flash_reg's defaults (registry row)


def _geometry(q, k, heads):
    b, lq, hd = q.shape
    return b, lq, k.shape[1], hd // heads


def _scale(d: int, scale):
    return 1.0 / math.sqrt(d) if scale is None else scale


def _heads_first(x, b: int, length: int, heads: int, d: int, transpose: bool = False):
    """(B, L, H*D) -> (B*H, L, D), or (B*H, D, L) with transpose: a materialized permute (the public op)."""
    axes = (0, 2, 3, 1) if transpose else (0, 2, 1, 3)
    y = ops.permute(x.reshape(b, length, heads, d), axes)          # (B, H, L, D) or (B, H, D, L)
    return y.reshape((b * heads,) + y.shape[2:])


def _tile_knobs(rt: Runtime, knobs: dict, d: int, dtype, which: str, defaults: dict = TILE_KNOBS) -> dict:
    """The tile knobs and HEAD_DIM for a call, after checking that the tiles fit the device's local memory."""
    tile = {n: int(knobs.get(n, defaults[n])) for n in defaults}
    keys = tile["WL"] * tile.get("VEC", 1)      # the key tile is a multiple of this
    from conformance.ops_linalg import attention_local_bytes  # lazy: the registry imports these launchers
    need = attention_local_bytes(which, tile, d, np.dtype(dtype).itemsize)
    # Tiles are a speed knob, not a semantic one: where the tuned or default tiles do not fit this head dim and
    # dtype (e.g. D = 80 in float64 on a 48 KiB device), halve the key tile, then the query tile, as far as the
    # kernel's divisibility rules allow, before giving up.
    while need > rt.device.local_mem_size:
        if tile["BK"] // 2 >= keys and (tile["BK"] // 2) % keys == 0:
            tile["BK"] //= 2
        elif tile["BQ"] // 2 >= tile["RQ"] and (tile["BQ"] // 2) % tile["RQ"] == 0:
            tile["BQ"] //= 2
        else:
            break
        need = attention_local_bytes(which, tile, d, np.dtype(dtype).itemsize)
    if need > rt.device.local_mem_size:
        raise DeviceError(f"attention {which}: tiles {tile} with head dim {d} need {need} bytes of local memory; "
                          f"{rt.info['device']} has {rt.device.local_mem_size}")
    return {**tile, "HEAD_DIM": d}


def _tile_grid(tile: dict, lq: int, bh: int) -> tuple:
    """(global, local) of the tiled kernels: one work-group of (WL, BQ/RQ) per (query tile, b*H + h)."""
    wq = tile["BQ"] // tile["RQ"]
    return (-(-lq // tile["BQ"]) * tile["WL"], bh * wq), (tile["WL"], wq)


# ------------------------------------------------------------------------------------------------------- gemm

@variant("attention", "gemm")
def _attention_gemm(rt: Runtime, knobs: dict, q, k, v, heads, causal=False, scale=None):
    """Heads first (permute), S = Q K^T (batched_matmul), scale and mask, softmax, O = P V (batched_matmul), heads
    back: the public ops, so the GEMM and the softmax are whatever the runtime's policy picks for them."""
    b, lq, lk, d = _geometry(q, k, heads)
    if not q.size:
        return rt.empty(q.shape, q.dtype)
    s = ops.batched_matmul(_heads_first(q, b, lq, heads, d), _heads_first(k, b, lk, heads, d, transpose=True))
    knl = rt.kernel("attention_gemm.cl", "attention_gemm_scale_mask", {}, q.dtype)
    _launch_flat(rt, "attention", knl, s.size, s.data, np.int64(s.size), np.int32(lq), np.int32(lk),
                 _real(q.dtype, _scale(d, scale)), np.int32(bool(causal)))
    o = ops.batched_matmul(ops.softmax(s, -1), _heads_first(v, b, lk, heads, d))      # (B*H, Lq, D)
    return ops.permute(o.reshape(b, heads, lq, d), (0, 2, 1, 3)).reshape(b, lq, heads * d)


# ---------------------------------------------------------------------------------------------- softmax_fused

@variant("attention", "softmax_fused")
def _attention_softmax_fused(rt: Runtime, knobs: dict, q, k, v, heads, causal=False, scale=None):
    """S = Q K^T by the GEMM (unscaled); per-row max and sum; O = exp(S*scale - max) V / sum in one kernel."""
    b, lq, lk, d = _geometry(q, k, heads)
    o = rt.empty(q.shape, q.dtype)
    if not o.size:
        return o
    tile = _tile_knobs(rt, knobs, d, q.dtype, "softmax_fused")
    stats_knobs = {n: int(knobs.get(n, STATS_KNOBS[n])) for n in STATS_KNOBS}
    s = ops.batched_matmul(_heads_first(q, b, lq, heads, d), _heads_first(k, b, lk, heads, d, transpose=True))
    rows = b * heads * lq
    stats = rt.empty((rows, 2), q.dtype)
    sc, cz = _real(q.dtype, _scale(d, scale)), np.int32(bool(causal))
    knl = rt.kernel("attention_softmax_fused.cl", "attention_softmax_fused_stats", stats_knobs, q.dtype)
    tpr, rpw = stats_knobs["TPR"], stats_knobs["WG"] // stats_knobs["TPR"]
    rt.launch("attention", knl, (tpr, _groups(rows, rpw)), (tpr, rpw),
              s.data, stats.data, np.int64(rows), np.int32(lq), np.int32(lk), sc, cz)
    knl = rt.kernel("attention_softmax_fused.cl", "attention_softmax_fused_pv", tile, q.dtype)
    rt.launch("attention", knl, *_tile_grid(tile, lq, b * heads),
              s.data, stats.data, _buf(rt, v), o.data, np.int32(heads), np.int32(lq), np.int32(lk), sc, cz)
    return o


# ------------------------------------------------------------------------------------------------------ flash

@variant("attention", "flash")
def _attention_flash(rt: Runtime, knobs: dict, q, k, v, heads, causal=False, scale=None):
    return _flash(rt, knobs, q, k, v, heads, causal, scale, "flash", TILE_KNOBS)


# -------------------------------------------------------------------------------------------------- flash_reg

@variant("attention", "flash_reg")
def _attention_flash_reg(rt: Runtime, knobs: dict, q, k, v, heads, causal=False, scale=None):
    return _flash(rt, knobs, q, k, v, heads, causal, scale, "flash_reg", FLASH_REG_KNOBS)


def _flash(rt: Runtime, knobs: dict, q, k, v, heads, causal, scale, which: str, defaults: dict):
    """One launch of kernels/attention_<which>.cl (flash, flash_reg: the same arguments and grid)."""
    b, lq, lk, d = _geometry(q, k, heads)
    o = rt.empty(q.shape, q.dtype)
    if not o.size:
        return o
    tile = _tile_knobs(rt, knobs, d, q.dtype, which, defaults)
    knl = rt.kernel(f"attention_{which}.cl", f"attention_{which}", tile, q.dtype)
    rt.launch("attention", knl, *_tile_grid(tile, lq, b * heads),
              _buf(rt, q), _buf(rt, k), _buf(rt, v), o.data, np.int32(heads), np.int32(lq), np.int32(lk),
              _real(q.dtype, _scale(d, scale)), np.int32(bool(causal)))
    return o
