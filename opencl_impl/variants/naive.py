"""The naive variant of every op: one work-item per output element (or per row for the reductions), the baseline
every optimized variant is measured against and the fallback the policy runs where nothing else applies.

Each function is the launcher its registry declaration names ("sdcl.opencl_impl.variants.naive:{op}"), called with
a Call and the op's arguments. The kernels, `<op>_naive`, have no -D knobs but group_norm's and layer_norm's WG, so
one build per dtype of a file serves every op in it:
kernels/elementwise.cl (activations, add, mul, geglu's split), kernels/layout.cl (permute, concat,
upsample_nearest2x, token_embedding), kernels/norm/naive.cl (group_norm, layer_norm), norm/softmax_naive.cl,
gemm/naive.cl, conv2d/naive.cl, attention/naive.cl, timestep_embedding.cl. Optional arguments (a bias, a weight) are
run-time flags.
"""

from __future__ import annotations

import math

import numpy as np
import pyopencl.array as cla

from sdcl.opencl_impl.launch import TILE_2D, Call, buffer, groups, i32, launch_flat, real
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.shapes import CL_TYPES, conv_geometry, fold_broadcast, fold_permute, residual_mode


def activation(rt: Runtime, op: str, x):
    """Launch the flat kernel <op>_naive of kernels/elementwise.cl: y[i] = f(x[i]) (silu, gelu, gelu_tanh,
    quick_gelu)."""
    y = rt.empty(x.shape, x.dtype)
    knl = rt.kernel("elementwise.cl", f"{op}_naive", {}, x.dtype)
    launch_flat(rt, op, knl, x.size, buffer(rt, x), y.data, np.int64(x.size))
    return y


def silu(call: Call, x):
    return activation(call.rt, "silu", x)


def gelu(call: Call, x):
    return activation(call.rt, "gelu", x)


def gelu_tanh(call: Call, x):
    return activation(call.rt, "gelu_tanh", x)


def quick_gelu(call: Call, x):
    return activation(call.rt, "quick_gelu", x)


def geglu(call: Call, x):
    """Unfused, as a framework runs it: split into (h, g), gelu(g), h * gelu(g): three launches, the halves and
    gelu(g) in global memory (the fused variant, variants/rowwise.py, does it in one)."""
    rt = call.rt
    f = x.shape[-1] // 2
    h, g = rt.empty(x.shape[:-1] + (f,), x.dtype), rt.empty(x.shape[:-1] + (f,), x.dtype)
    knl = rt.kernel("elementwise.cl", "geglu_split", {}, x.dtype)
    launch_flat(rt, "geglu", knl, h.size, buffer(rt, x), h.data, g.data, np.int64(h.size), np.int64(f))
    return binary(rt, "mul", h, activation(rt, "gelu", g))


def matmul(call: Call, a, b):
    rt = call.rt
    (m, k), n = a.shape, b.shape[1]
    c = rt.empty((m, n), a.dtype)
    if c.size:
        knl = rt.kernel("gemm/naive.cl", "matmul_naive", {}, a.dtype)
        rt.launch("matmul", knl, (groups(n, TILE_2D), groups(m, TILE_2D)), None,
                  buffer(rt, a), buffer(rt, b), c.data, *i32(m, n, k))
    return c


def batched_matmul(call: Call, a, b):
    rt = call.rt
    (nb, m, k), n = a.shape, b.shape[2]
    c = rt.empty((nb, m, n), a.dtype)
    if c.size:
        knl = rt.kernel("gemm/naive.cl", "batched_matmul_naive", {}, a.dtype)
        rt.launch("batched_matmul", knl, (groups(n, TILE_2D), groups(m, TILE_2D), nb), None,
                  buffer(rt, a), buffer(rt, b), c.data, *i32(m, n, k))
    return c


def linear(call: Call, x, weight, bias=None, residual=None):
    rt = call.rt
    n_out, n_in = weight.shape
    rows = x.size // n_in if n_in else int(np.prod(x.shape[:-1]))
    y = rt.empty(x.shape[:-1] + (n_out,), x.dtype)
    if y.size:
        knl = rt.kernel("gemm/naive.cl", "linear_naive", {}, x.dtype)
        w = buffer(rt, weight)
        rt.launch("linear", knl, (groups(n_out, TILE_2D), groups(rows, TILE_2D)), None,
                  buffer(rt, x), w, w if bias is None else buffer(rt, bias),
                  w if residual is None else buffer(rt, residual), y.data,
                  *i32(rows, n_in, n_out, bias is not None, residual is not None))
    return y


def conv2d(call: Call, x, weight, bias=None, stride=1, padding=0, residual=None):
    rt = call.rt
    (sh, sw), (top, _, left, _), (oh, ow) = conv_geometry(x, weight, stride, padding)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    y = rt.empty((n, o, oh, ow), x.dtype)
    knl = rt.kernel("conv2d/naive.cl", "conv2d_naive", {}, x.dtype)
    wbuf = buffer(rt, weight)
    launch_flat(rt, "conv2d", knl, y.size, buffer(rt, x), wbuf, wbuf if bias is None else buffer(rt, bias),
                wbuf if residual is None else buffer(rt, residual), y.data, np.int64(y.size),
                *i32(c, h, w, o, kh, kw, oh, ow, sh, sw, top, left, bias is not None, residual_mode(residual)))
    return y


def group_norm(call: Call, x, num_groups, weight=None, bias=None, eps=1e-5):
    rt = call.rt
    y = rt.empty(x.shape, x.dtype)
    n, c = x.shape[:2]
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    if y.size:
        wg = int(call.knobs["WG"])
        # three passes over the group (sum, squared deviations, normalization), each work-item every WG-th element,
        # and two tree reductions of log2(WG) steps
        count = c // num_groups * spatial
        rt.check_loops(f"group_norm naive ({x.dtype}{tuple(x.shape)}, {num_groups} groups, WG {wg})",
                       3 * -(-count // wg) + 2 * max(1, wg.bit_length()))
        knl = rt.kernel("norm/naive.cl", "group_norm_naive", {"WG": wg}, x.dtype)
        xb = buffer(rt, x)
        rt.launch("group_norm", knl, (n * num_groups * wg,), (wg,),
                  xb, xb if weight is None else buffer(rt, weight), xb if bias is None else buffer(rt, bias), y.data,
                  np.int32(c), np.int32(num_groups), np.int64(spatial), real(x.dtype, eps),
                  *i32(weight is not None, bias is not None))
    return y


def group_norm_silu(call: Call, x, num_groups, weight=None, bias=None, eps=1e-5):
    return activation(call.rt, "silu", group_norm(call, x, num_groups, weight, bias, eps))


def layer_norm(call: Call, x, weight=None, bias=None, eps=1e-5):
    rt = call.rt
    y = rt.empty(x.shape, x.dtype)
    d = x.shape[-1]
    if y.size:
        wg = int(call.knobs["WG"])
        knl = rt.kernel("norm/naive.cl", "layer_norm_naive", {"WG": wg}, x.dtype)
        xb = buffer(rt, x)
        rt.launch("layer_norm", knl, ((x.size // d) * wg,), (wg,),
                  xb, xb if weight is None else buffer(rt, weight), xb if bias is None else buffer(rt, bias), y.data,
                  np.int32(d), real(x.dtype, eps), *i32(weight is not None, bias is not None))
    return y


def softmax(call: Call, x, axis=-1):
    rt = call.rt
    y = rt.empty(x.shape, x.dtype)
    ax = axis % x.ndim
    length, inner = x.shape[ax], int(np.prod(x.shape[ax + 1:], dtype=np.int64))
    lines = x.size // length if length else 0
    knl = rt.kernel("norm/softmax_naive.cl", "softmax_naive", {}, x.dtype)
    launch_flat(rt, "softmax", knl, lines, buffer(rt, x), y.data, np.int64(lines), np.int32(length),
                np.int64(inner))
    return y


def attention(call: Call, q, k, v, heads, causal=False, scale=None):
    rt = call.rt
    b, lq, hd = q.shape
    lk, d = k.shape[1], hd // heads
    o = rt.empty(q.shape, q.dtype)
    rows = b * heads * lq
    # the output's accumulator, a row of D per work-item, in the compute type (float32 for float16: o = acc / l is
    # the only rounding to half)
    from sdcl.opencl_impl.launch import compute_type
    acc = rt.empty((rows, d), compute_type(q.dtype))
    # a work-item's loops: two passes over the keys, each with loops over the head's D channels
    rt.check_loops("attention naive", lk * (3 * d + 2) + 2 * d)
    knl = rt.kernel("attention/naive.cl", "attention_naive", {}, q.dtype)
    launch_flat(rt, "attention", knl, rows if d else 0, buffer(rt, q), buffer(rt, k), buffer(rt, v), o.data,
                acc.data, np.int64(rows), np.int32(heads), np.int32(lq), np.int32(lk), np.int32(d),
                real(q.dtype, 1.0 / math.sqrt(d) if scale is None else scale), np.int32(bool(causal)))
    return o


def timestep_embedding(call: Call, timesteps, dim, flip_sin_to_cos=True, downscale_freq_shift=0.0,
                       max_period=10000.0):
    rt = call.rt
    # the reference's output dtype: float64 / float16 for float64 / float16 timesteps (float16: computed in float,
    # the timesteps read as half, exactly; y in half), else float32
    dt = np.dtype(timesteps.dtype if timesteps.dtype in (np.float64, np.float16) else np.float32)
    types = {**CL_TYPES, np.dtype(np.float16): "half"}      # half: read with vload_half (DATA_HALF)
    if isinstance(timesteps, cla.Array):
        t, time_t = buffer(rt, timesteps), types[np.dtype(timesteps.dtype)]
    else:   # host timesteps: converted to the output dtype (exact for float16: float16 itself), then uploaded
        t, time_t = rt.to_device(np.asarray(timesteps).astype(dt)).data, types[dt]
    n, half = timesteps.shape[0], dim // 2
    y = rt.empty((n, dim), dt)
    knl = rt.kernel("timestep_embedding.cl", "timestep_embedding_naive", {"TIME_T": time_t}, dt)
    launch_flat(rt, "timestep_embedding", knl, y.size, t, y.data, np.int64(y.size), np.int32(dim),
                np.int32(half), real(dt, math.log(max_period)), real(dt, half - downscale_freq_shift),
                np.int32(bool(flip_sin_to_cos)))
    return y


def token_embedding(call: Call, ids, token_table, position_table):
    rt = call.rt
    b, length = ids.shape
    d = token_table.shape[1]
    y = rt.empty((b, length, d), token_table.dtype)
    knl = rt.kernel("layout.cl", "token_embedding_naive", {}, token_table.dtype)
    if y.size:      # device ids (int64) are read where they are: a replayed text encoder's input slot
        ids_dev = ids if isinstance(ids, cla.Array) else rt.to_device(np.asarray(ids).astype(np.int64))
        launch_flat(rt, "token_embedding", knl, y.size, ids_dev.data, buffer(rt, token_table),
                     buffer(rt, position_table), y.data, np.int64(y.size), np.int32(length), np.int32(d))
    return y


def binary(rt: Runtime, op: str, a, b):
    """Launch the flat kernel <op>_naive of kernels/elementwise.cl: y = a (op) b, b broadcast (add, mul)."""
    dims, strides = fold_broadcast(a.shape, b.shape)
    y = rt.empty(a.shape, a.dtype)
    knl = rt.kernel("elementwise.cl", f"{op}_naive", {}, a.dtype)
    launch_flat(rt, op, knl, a.size, buffer(rt, a), buffer(rt, b), y.data, np.int64(a.size),
                *(np.int64(d) for d in dims[1:]), *(np.int64(s) for s in strides))
    return y


def add(call: Call, a, b):
    return binary(call.rt, "add", a, b)


def mul(call: Call, a, b):
    return binary(call.rt, "mul", a, b)


def concat(call: Call, xs, axis=1):
    rt = call.rt
    ax = axis % xs[0].ndim
    total = sum(x.shape[ax] for x in xs)
    shape = xs[0].shape[:ax] + (total,) + xs[0].shape[ax + 1:]
    inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
    y = rt.empty(shape, xs[0].dtype)
    knl = rt.kernel("layout.cl", "concat_naive", {}, xs[0].dtype)
    off = 0
    for x in xs:
        launch_flat(rt, "concat", knl, x.size, buffer(rt, x), y.data, np.int64(x.size),
                     np.int64(x.shape[ax] * inner), np.int64(total * inner), np.int64(off * inner))
        off += x.shape[ax]
    return y


def upsample_nearest2x(call: Call, x):
    rt = call.rt
    n, c, h, w = x.shape
    y = rt.empty((n, c, 2 * h, 2 * w), x.dtype)
    knl = rt.kernel("layout.cl", "upsample_nearest2x_naive", {}, x.dtype)
    launch_flat(rt, "upsample_nearest2x", knl, y.size, buffer(rt, x), y.data, np.int64(y.size), np.int32(h),
                np.int32(w))
    return y


def permute(call: Call, x, axes):
    rt = call.rt
    dims, strides = fold_permute(x.shape, tuple(axes))
    y = rt.empty(tuple(x.shape[a] for a in axes), x.dtype)
    knl = rt.kernel("layout.cl", "permute_naive", {}, x.dtype)
    launch_flat(rt, "permute", knl, x.size, buffer(rt, x), y.data, np.int64(x.size),
                *(np.int64(d) for d in dims[1:]), *(np.int64(s) for s in strides))
    return y
