"""Variants of attention: `gemm` (scores by the GEMM, softmax, P V by the GEMM), `softmax_fused` (scores by the
GEMM, the softmax's normalization fused into the P V product), `flash` (FlashAttention: key tiles, online
softmax, no score matrix in global memory), `flash_reg` (the same, for GPUs, with the query tile in local memory
and both products register-blocked), `flash_cpu_reg` (the same for CPUs: K and V packed into key blocks, each
work-item a barrier-free register block of query rows), `flash_mma_f16` (the same on NVIDIA tensor cores in
float16) and `gemm_mma_f16` (gemm's three steps with both products on NVIDIA tensor cores, for head dims no flash
tile fits).

Each is the launcher its registry declaration names (the attention row, sdcl.registry.linalg), called with a Call
holding every knob. The head dimension D is compiled into the tiled kernels (-D HEAD_DIM, one build per D: 40, 64, 80,
160 in SD). Kernels: kernels/attention/naive.cl (gemm's scale-and-mask), attention/softmax_fused_stats.cl,
attention/tiled.cl (flash and softmax_fused's P V: one build of a tile setting and D serves both),
attention/flash_reg.cl, attention/flash_cpu_reg.cl, attention/flash_mma_f16.cl.

float16 (q, k, v and o in half, the arithmetic in float: kernels/common.h DATA): naive, softmax_fused, flash,
flash_reg, flash_cpu_reg, flash_mma_f16 and gemm_mma_f16 implement it. Their scratch (softmax_fused's scores S and
row statistics, gemm_mma_f16's S and P, flash_cpu_reg's packed K and V) and local tiles are of the compute type
(launch.compute_type: float32 for float16), so the output's rounding to half is the only one besides the tensor-core
variants' own (q, k, v, p to half); gemm widens its float16 inputs to float32 (its scores would otherwise be the
GEMM's, rounded to half, and exp amplifies that).
"""

from __future__ import annotations

import math

import numpy as np

from sdcl.opencl_impl import ops
from sdcl.opencl_impl.devices import DeviceError
from sdcl.opencl_impl.launch import Call, buffer, compute_type, groups, launch_flat, real
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.variants.gemm import check_mma, gemm as gemm_kernel
from sdcl.registry.linalg import attention_local_bytes

TILE_KNOBS = ("BQ", "BK", "WL", "RQ", "VEC")     # the tile knobs of flash and softmax_fused's P V kernel
STATS_KNOBS = ("WG", "TPR", "VEC")               # softmax_fused's row statistics
FLASH_REG_KNOBS = ("BQ", "BK", "WL", "RQ")       # flash_reg's tiles
FLASH_MMA_KNOBS = ("WARPS", "BK", "MMA_EMULATE", "ASYNC")  # flash_mma_f16's: WARPS*16 query rows x BK keys a tile
FLASH_CPU_KNOBS = ("VEC", "RQ", "BQ", "KC")      # flash_cpu_reg's: key blocks, register rows, rows a work-item, chunk
_FILES = {"flash": "attention/tiled.cl", "flash_reg": "attention/flash_reg.cl"}


def _geometry(q, k, heads):
    b, lq, hd = q.shape
    return b, lq, k.shape[1], hd // heads


def _scale(d: int, scale):
    return 1.0 / math.sqrt(d) if scale is None else scale


def _heads_first(rt: Runtime, x, b: int, length: int, heads: int, d: int, transpose: bool = False):
    """(B, L, H*D) -> (B*H, L, D), or (B*H, D, L) with transpose: a materialized permute (the public op); a
    contiguous x of one head, untransposed, is (B, L, D) already: a view of it."""
    if heads == 1 and not transpose and x.flags.c_contiguous:
        return x.reshape(b, length, d)
    axes = (0, 2, 3, 1) if transpose else (0, 2, 1, 3)
    y = ops.permute(rt, x.reshape(b, length, heads, d), axes)          # (B, H, L, D) or (B, H, D, L)
    return y.reshape((b * heads,) + y.shape[2:])


def _heads_back(rt: Runtime, o, b: int, length: int, heads: int, d: int):
    """(B*H, L, D) -> (B, L, H*D): _heads_first's inverse (one head: a view)."""
    if heads > 1:
        o = ops.permute(rt, o.reshape(b, heads, length, d), (0, 2, 1, 3))
    return o.reshape(b, length, heads * d)


def _scale_mask(rt: Runtime, s, lq: int, lk: int, scale: float, causal: bool) -> None:
    """S *= scale in place, -inf where a causal mask hides the key (attention/naive.cl attention_gemm_scale_mask)."""
    knl = rt.kernel("attention/naive.cl", "attention_gemm_scale_mask", {}, s.dtype)
    launch_flat(rt, "attention", knl, s.size, s.data, np.int64(s.size), np.int32(lq), np.int32(lk),
                real(s.dtype, scale), np.int32(bool(causal)))


def _tile_knobs(rt: Runtime, knobs: dict, d: int, dtype, which: str, names: tuple = TILE_KNOBS) -> dict:
    """The tile knobs and HEAD_DIM for a call, after checking that the tiles fit the device's local memory (of
    REAL, the compute type: float32 for float16)."""
    tile = {n: int(knobs[n]) for n in names}
    keys = tile["WL"] * tile.get("VEC", 1)      # the key tile is a multiple of this
    itemsize = compute_type(dtype).itemsize
    need = attention_local_bytes(which, tile, d, itemsize)
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
        need = attention_local_bytes(which, tile, d, itemsize)
    if need > rt.device.local_mem_size:
        raise DeviceError(f"attention {which}: tiles {tile} with head dim {d} need {need} bytes of local memory; "
                          f"{rt.info['device']} has {rt.device.local_mem_size}")
    return {**tile, "HEAD_DIM": d}


def _tile_trips(which: str, tile: dict, lq: int, lk: int, causal: bool) -> int:
    """Loop iterations of one work-item of attention_<which> (flash, flash_reg, softmax_fused_pv) at these tiles
    (HEAD_DIM among them), every loop counted, none assumed unrolled: an upper bound for Runtime.check_loops. A key
    tile's loops (the K/V and P staging, the scores over D, the softmax over the lanes, P V over the tile's keys)
    run once per tile, and a work-group sees at most min(Lk, its last query row + 1) keys when causal."""
    d, bq, bk, wl, rq = (tile[n] for n in ("HEAD_DIM", "BQ", "BK", "WL", "RQ"))
    vec = tile.get("VEC", 1)
    wg = wl * (bq // rq)
    cd = -(-d // (wl * vec))                        # output columns (vectors) per work-item
    dp = cd * wl * vec                              # the head dimension padded
    ck = bk // (wl * vec)                           # scores (vectors) per work-item in a key tile
    tiles = -(-(min(lk, -(-lq // bq) * bq) if causal else lk) // bk)
    pv = bk * (1 + cd + rq * (1 + cd))              # acc += P V over the tile's keys
    if which == "flash_reg":
        per_tile = (-(-bk * dp // wg) + 2 * rq * (1 + ck) + d * (1 + rq // 4 + ck + rq * (1 + ck))
                    + rq * (1 + wl + ck) + rq * (1 + wl + cd) + pv + rq // 4 * bk)
        once = -(-bq * d // wg) + 2 * rq * (1 + cd)
    elif which == "flash":
        per_tile = (-(-bk * (dp // vec) // wg) * (1 + 3 * vec) + 2 * rq * (1 + ck) + d * (1 + ck + rq * (1 + ck))
                    + rq * (1 + wl + ck) + rq * (1 + wl + cd) + pv)
        once = rq * (1 + cd) + rq + rq * (1 + cd * (1 + vec))
    else:       # softmax_fused_pv: the P tile (a partial vector's keys one by one), the V tile, P V
        per_tile = -(-bq * (bk // vec) // wg) * (1 + vec) + -(-bk * (dp // vec) // wg) * (1 + vec) + pv
        once = rq * (1 + cd) + rq * (1 + cd * (1 + vec))
    return once + tiles * (1 + per_tile)


def _tile_grid(tile: dict, lq: int, bh: int) -> tuple:
    """(global, local) of the tiled kernels: one work-group of (WL, BQ/RQ) per (query tile, b*H + h)."""
    wq = tile["BQ"] // tile["RQ"]
    return (-(-lq // tile["BQ"]) * tile["WL"], bh * wq), (tile["WL"], wq)


# ------------------------------------------------------------------------------------------------------- gemm

def gemm(call: Call, q, k, v, heads, causal=False, scale=None):
    """Heads first (permute), S = Q K^T (batched_matmul), scale and mask, softmax, O = P V (batched_matmul), heads
    back: the public ops, so the GEMM and the softmax are whatever the runtime's policy picks for them. float16: the
    same in float32 on the inputs widened (the VAE's single 512-wide head, which the flash tiles do not fit)."""
    rt = call.rt
    b, lq, lk, d = _geometry(q, k, heads)
    if not q.size:
        return rt.empty(q.shape, q.dtype)
    if q.dtype == np.float16:   # widened exactly: scores, softmax and P V in float32, the output rounded to half once
        wide = [ops.astype(rt, x, np.float32) for x in (q, k, v)]
        return ops.astype(rt, gemm(call, *wide, heads, causal, scale), np.float16)
    s = ops.batched_matmul(rt, _heads_first(rt, q, b, lq, heads, d), _heads_first(rt, k, b, lk, heads, d, transpose=True))
    _scale_mask(rt, s, lq, lk, _scale(d, scale), causal)
    o = ops.batched_matmul(rt, ops.softmax(rt, s, -1), _heads_first(rt, v, b, lk, heads, d))      # (B*H, Lq, D)
    return _heads_back(rt, o, b, lq, heads, d)


# ---------------------------------------------------------------------------------------------- softmax_fused

def softmax_fused(call: Call, q, k, v, heads, causal=False, scale=None):
    """S = Q K^T by the GEMM (unscaled); per-row max and sum; O = exp(S*scale - max) V / sum in one kernel. S and
    the statistics are of the compute type: for float16, q and k are widened to float32 (exactly) for the GEMM, so S
    is float32, never rounded to half (exp would amplify that rounding)."""
    rt, knobs = call.rt, call.knobs
    b, lq, lk, d = _geometry(q, k, heads)
    o = rt.empty(q.shape, q.dtype)
    if not o.size:
        return o
    tile = _tile_knobs(rt, knobs, d, q.dtype, "softmax_fused")
    stats_knobs = {n: int(knobs[n]) for n in STATS_KNOBS}
    tpr, vec = stats_knobs["TPR"], stats_knobs["VEC"]
    # the statistics kernel: two passes over a row's keys (vectors, then the tail one by one) and two trees
    rt.check_loops(f"attention softmax_fused's row statistics ({lk} keys, {stats_knobs})",
                   2 * (1 + -(-(lk // vec) // tpr) + -(-vec // tpr) + tpr.bit_length()))
    rt.check_loops(f"attention softmax_fused's P V ({lq} x {lk} keys, head dim {d}, tiles {tile})",
                   _tile_trips("softmax_fused_pv", tile, lq, lk, causal))
    qs, ks = (ops.astype(rt, x, np.float32) for x in (q, k)) if q.dtype == np.float16 else (q, k)   # exact
    s = ops.batched_matmul(rt, _heads_first(rt, qs, b, lq, heads, d),
                           _heads_first(rt, ks, b, lk, heads, d, transpose=True))
    rows = b * heads * lq
    stats = rt.empty((rows, 2), compute_type(q.dtype))
    sc, cz = real(q.dtype, _scale(d, scale)), np.int32(bool(causal))
    knl = rt.kernel("attention/softmax_fused_stats.cl", "attention_softmax_fused_stats", stats_knobs, q.dtype)
    rpw = stats_knobs["WG"] // tpr
    rt.launch("attention", knl, (tpr, groups(rows, rpw)), (tpr, rpw),
              s.data, stats.data, np.int64(rows), np.int32(lq), np.int32(lk), sc, cz)
    knl = rt.kernel("attention/tiled.cl", "attention_softmax_fused_pv", tile, q.dtype)
    rt.launch("attention", knl, *_tile_grid(tile, lq, b * heads),
              s.data, stats.data, buffer(rt, v), o.data, np.int32(heads), np.int32(lq), np.int32(lk), sc, cz)
    return o


# ------------------------------------------------------------------------------------------------------ flash

def flash(call: Call, q, k, v, heads, causal=False, scale=None):
    rt, knobs = call.rt, call.knobs
    return _flash(rt, knobs, q, k, v, heads, causal, scale, "flash", TILE_KNOBS)


# -------------------------------------------------------------------------------------------------- flash_reg

def flash_reg(call: Call, q, k, v, heads, causal=False, scale=None):
    rt, knobs = call.rt, call.knobs
    return _flash(rt, knobs, q, k, v, heads, causal, scale, "flash_reg", FLASH_REG_KNOBS)


def _flash(rt: Runtime, knobs: dict, q, k, v, heads, causal, scale, which: str, names: tuple):
    """One launch of attention_<which> (flash in kernels/attention/tiled.cl, flash_reg in attention/flash_reg.cl:
    the same arguments and grid)."""
    b, lq, lk, d = _geometry(q, k, heads)
    o = rt.empty(q.shape, q.dtype)
    if not o.size:
        return o
    tile = _tile_knobs(rt, knobs, d, q.dtype, which, names)
    rt.check_loops(f"attention {which} ({lq} x {lk} keys, head dim {d}, tiles {tile})",
                   _tile_trips(which, tile, lq, lk, causal))
    knl = rt.kernel(_FILES[which], f"attention_{which}", tile, q.dtype)
    rt.launch("attention", knl, *_tile_grid(tile, lq, b * heads),
              buffer(rt, q), buffer(rt, k), buffer(rt, v), o.data, np.int32(heads), np.int32(lq), np.int32(lk),
              real(q.dtype, _scale(d, scale)), np.int32(bool(causal)))
    return o


# ---------------------------------------------------------------------------------------------- flash_cpu_reg

def flash_cpu_reg(call: Call, q, k, v, heads, causal=False, scale=None):
    """FlashAttention for CPUs (attention/flash_cpu_reg.cl): K and V packed once per call into key blocks of the
    compute type (attention_pack_kv), then one barrier-free work-item per BQ query rows of a head."""
    rt, knobs = call.rt, call.knobs
    b, lq, lk, d = _geometry(q, k, heads)
    o = rt.empty(q.shape, q.dtype)
    if not o.size:
        return o
    tile = {n: int(knobs[n]) for n in FLASH_CPU_KNOBS}
    vec, bh = tile["VEC"], b * heads
    lkp, dp = groups(lk, vec), groups(d, vec)     # keys and head dim rounded up to whole vectors (the kernel's LkP, DP)
    kp = rt.empty((bh, lkp, d), compute_type(q.dtype))
    vp = rt.empty((bh, lkp, dp), compute_type(q.dtype))
    build = {**tile, "HEAD_DIM": d}
    rt.launch("attention", rt.kernel("attention/flash_cpu_reg.cl", "attention_pack_kv", build, q.dtype),
              (lkp, bh), (vec, 1), buffer(rt, k), buffer(rt, v), kp.data, vp.data, np.int32(heads), np.int32(lk))
    rt.launch("attention", rt.kernel("attention/flash_cpu_reg.cl", "attention_flash_cpu_reg", build, q.dtype),
              (-(-lq // tile["BQ"]), bh), (1, 1), buffer(rt, q), kp.data, vp.data, o.data, np.int32(heads),
              np.int32(lq), np.int32(lk), real(q.dtype, _scale(d, scale)), np.int32(bool(causal)))
    return o


# ---------------------------------------------------------------------------------------------- flash_mma_f16

def flash_mma_f16(call: Call, q, k, v, heads, causal=False, scale=None):
    """FlashAttention on NVIDIA tensor cores in float16 (attention/flash_mma_f16.cl): q, k, v (float32: rounded;
    float16: as they are) and the weights p in half for the mma.sync products, float32 accumulation and softmax; o
    of q's dtype. float32 and float16 (the registry says so)."""
    rt, knobs = call.rt, call.knobs
    b, lq, lk, d = _geometry(q, k, heads)
    o = rt.empty(q.shape, q.dtype)
    if not o.size:
        return o
    tile = {n: int(knobs.get(n, 0)) for n in FLASH_MMA_KNOBS}
    tile["ASYNC"] &= q.dtype == np.float16 and d % 8 == 0        # cp.async copies half rows of 16-byte chunks
    check_mma(rt, "mma_f16", tile, what="attention flash_mma_f16")
    # a speed knob, not a semantic one: where the tiles do not fit this head dim (D = 160 at 48 KiB), stage the
    # tiles once (ASYNC 0), then halve the key tile, then the warps (the query tile), before giving up
    while attention_local_bytes("flash_mma_f16", tile, d) > rt.device.local_mem_size:
        if tile["ASYNC"]:
            tile["ASYNC"] = 0
        elif tile["BK"] > 16:
            tile["BK"] //= 2
        elif tile["WARPS"] > 1:
            tile["WARPS"] //= 2
        else:
            raise DeviceError(f"attention flash_mma_f16: head dim {d} needs "
                              f"{attention_local_bytes('flash_mma_f16', tile, d)} bytes of local memory at the "
                              f"smallest tiles; {rt.info['device']} has {rt.device.local_mem_size}")
    knl = rt.kernel("attention/flash_mma_f16.cl", "attention_flash_mma_f16", {**tile, "HEAD_DIM": d}, q.dtype)
    wg = 32 * tile["WARPS"]
    rt.launch("attention", knl, (-(-lq // (16 * tile["WARPS"])) * wg, b * heads), (wg, 1),
              buffer(rt, q), buffer(rt, k), buffer(rt, v), o.data, np.int32(heads), np.int32(lq), np.int32(lk),
              real(q.dtype, _scale(d, scale)), np.int32(bool(causal)))
    return o


# ----------------------------------------------------------------------------------------------- gemm_mma_f16

def gemm_mma_f16(call: Call, q, k, v, heads, causal=False, scale=None):
    """gemm's three steps with both products on NVIDIA tensor cores (gemm/mma_f16.cl, at the call's knobs): S =
    scale * Q K^T from half q and k (float32: rounded as staged; float16: read as they are), float32 sums and S; the
    public softmax in float32 (and gemm's mask kernel where causal); O = P V with p and v in half, float32 sums; o
    of q's dtype, rounded once. The roundings of flash_mma_f16 (q, k, v and p to half), at any head dim: the VAE's
    single 512-wide head, which no flash tile fits."""
    rt = call.rt
    b, lq, lk, d = _geometry(q, k, heads)
    if not q.size:
        return rt.empty(q.shape, q.dtype)
    check_mma(rt, "mma_f16", call.knobs, what="attention gemm_mma_f16")
    half, z = q.dtype == np.float16, b * heads
    qh, kh, vh = (_heads_first(rt, x, b, n, heads, d) for x, n in ((q, lq), (k, lk), (v, lk)))
    s = rt.empty((z, lq, lk), np.float32)
    gemm_kernel(rt, "attention", "mma_f16", call.knobs, buffer(rt, qh), buffer(rt, kh), s.data, lq, lk, d,
                lda=d, ldb=d, ldc=lk, trans_b=True, alpha=_scale(d, scale), batch=z, a_strides=(lq * d, 0),
                b_strides=(lk * d, 0), c_strides=(lq * lk, 0), a_half=half, b_half=half)
    if causal:      # S already scaled by the GEMM
        _scale_mask(rt, s, lq, lk, 1.0, causal)
    p = ops.softmax(rt, s, -1)
    del s
    o = rt.empty((z, lq, d), np.float32)
    gemm_kernel(rt, "attention", "mma_f16", call.knobs, p.data, buffer(rt, vh), o.data, lq, d, lk,
                lda=lk, ldb=d, ldc=d, batch=z, a_strides=(lq * lk, 0), b_strides=(lk * d, 0), c_strides=(lq * d, 0),
                b_half=half)
    o = _heads_back(rt, o, b, lq, heads, d)
    return ops.astype(rt, o, np.float16) if half else o
