"""Variants of the layout ops beside their naive kernels (kernels/layout.cl): upsample_nearest2x `rows`
(kernels/upsample.cl: a work-item per VEC inputs of a row, written four times each) and permute `tiled`
(kernels/transpose.cl: a batched transpose through TS x TS tiles in local memory, for the permutations that fold to
one, registry.elementwise.batched_transpose). Both index in 32 bits, where the naive kernels divide in 64 bits per
element; each launcher checks the bound."""

from __future__ import annotations

from sdcl.opencl_impl.launch import Call, buffer, groups, i32
from sdcl.opencl_impl.shapes import fold_permute

_INT_MAX = 2**31 - 1


def upsample_nearest2x(call: Call, x):
    rt, k = call.rt, call.knobs
    n, c, h, w = x.shape
    if 4 * x.size > _INT_MAX:
        raise ValueError(f"upsample_nearest2x rows: 32-bit indices, the output's {4 * x.size} elements do not fit")
    vec = int(k["VEC"]) if w % int(k["VEC"]) == 0 else 1
    y = rt.empty((n, c, 2 * h, 2 * w), x.dtype)
    items = x.size // vec
    if items:
        knl = rt.kernel("upsample.cl", "upsample_nearest2x_rows", {"VEC": vec}, x.dtype)
        wg = min(int(k["WG"]), rt.kernel_limits(knl)[0])     # the kernel reads no work-group size: fit the device's
        rt.launch("upsample_nearest2x", knl, (groups(items, wg),), (wg,), buffer(rt, x), y.data,
                  *i32(items, w // vec))
    return y


def permute(call: Call, x, axes):
    rt, k = call.rt, call.knobs
    dims, strides = fold_permute(x.shape, tuple(axes))
    b, p, q = dims[1:]
    if dims[0] != 1 or strides[2:] != [1, p] or (b > 1 and strides[1] != p * q):
        raise ValueError(f"permute tiled: axes {tuple(axes)} of {x.shape} do not fold to a batched transpose")
    if x.size > _INT_MAX:
        raise ValueError(f"permute tiled: 32-bit indices, {x.size} elements do not fit")
    y = rt.empty(tuple(x.shape[a] for a in axes), x.dtype)
    ts, rows = int(k["TS"]), int(k["ROWS"])
    if x.size:
        knl = rt.kernel("transpose.cl", "permute_tiled", {"TS": ts, "ROWS": rows}, x.dtype)
        rt.launch("permute", knl, (-(-p // ts) * ts, -(-q // ts) * rows, b), (ts, rows, 1), buffer(rt, x), y.data,
                  *i32(q, p))
    return y
