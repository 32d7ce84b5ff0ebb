"""Shape arithmetic that the public ops (validation) and the launchers share: convolution geometry, the folding of
broadcasts and permutations to the 4-D index spaces of the naive kernels, and the OpenCL C names of dtypes."""

from __future__ import annotations

import numpy as np


def fail(op: str, msg: str, *arrays) -> None:
    """The reference's error: the op, what is wrong, and the shapes it got."""
    shapes = ", ".join(str(getattr(a, "shape", a)) for a in arrays)
    raise ValueError(f"{op}: {msg} (got shapes {shapes})")


def conv_geometry(x, weight, stride, padding):
    """((sh, sw), (top, bottom, left, right), (oh, ow)) as the reference reads stride and padding."""
    def pairs(v, n):
        return tuple(int(p) for p in v) if isinstance(v, (tuple, list)) else (int(v),) * n
    st, pad = pairs(stride, 2), pairs(padding, 2)
    if len(st) != 2 or min(st) < 1:
        fail("conv2d", f"stride must be s >= 1 or (sh, sw), got {stride!r}", x, weight)
    if len(pad) not in (2, 4) or min(pad) < 0:
        fail("conv2d", f"padding must be p, (ph, pw) or (top, bottom, left, right) >= 0, got {padding!r}",
              x, weight)
    pad = (pad[0], pad[0], pad[1], pad[1]) if len(pad) == 2 else pad
    kh, kw = weight.shape[2:]
    oh = (x.shape[2] + pad[0] + pad[1] - kh) // st[0] + 1
    ow = (x.shape[3] + pad[2] + pad[3] - kw) // st[1] + 1
    return st, pad, (oh, ow)



# OpenCL C names of the numpy dtypes a timesteps array may have on the device (TIME_T in timestep_embedding.cl).
CL_TYPES = {np.dtype(t): name for t, name in (
    (np.int8, "char"), (np.uint8, "uchar"), (np.int16, "short"), (np.uint16, "ushort"), (np.int32, "int"),
    (np.uint32, "uint"), (np.int64, "long"), (np.uint64, "ulong"), (np.float32, "float"), (np.float64, "double"))}


def fold_broadcast(a_shape: tuple, b_shape: tuple):
    """Fold a's shape and b's broadcast pattern to 4-D: (a dims, b element strides), b stride 0 where b repeats.
    Neighbouring axes of the same kind (b full, or b broadcast) merge, size-1 axes drop; None if more than 4
    alternating runs remain."""
    b_full = (1,) * (len(a_shape) - len(b_shape)) + tuple(b_shape)
    runs = []   # [size, b is full along it]
    for da, db in zip(a_shape, b_full):
        if da == 1:
            continue
        full = db == da
        if runs and runs[-1][1] == full:
            runs[-1][0] *= da
        else:
            runs.append([da, full])
    if len(runs) > 4:
        return None
    runs = [[1, False]] * (4 - len(runs)) + runs
    strides, step = [], 1
    for size, full in reversed(runs):
        strides.append(step if full else 0)
        step *= size if full else 1
    return [r[0] for r in runs], strides[::-1]


def fold_permute(shape: tuple, axes: tuple):
    """Fold a permutation to at most 4 axes: (y dims, x element strides along y's axes). Size-1 axes drop;
    y axes that are neighbours in x, in order, merge. None if more than 4 axes remain."""
    keep = [a for a in range(len(shape)) if shape[a] != 1]
    rank = {a: i for i, a in enumerate(keep)}
    order = [rank[a] for a in axes if a in rank]          # y's axes, numbered among x's kept axes
    groups = []                                           # runs of x axes that stay adjacent in y
    for a in order:
        if groups and groups[-1][-1] + 1 == a:
            groups[-1].append(a)
        else:
            groups.append([a])
    if len(groups) > 4:
        return None
    kept = [shape[a] for a in keep]
    x_strides = [int(np.prod(kept[i + 1:], dtype=np.int64)) for i in range(len(kept))]
    dims = [int(np.prod([kept[a] for a in g], dtype=np.int64)) for g in groups]
    strides = [x_strides[g[-1]] for g in groups]
    pad = 4 - len(groups)
    return [1] * pad + dims, [0] * pad + strides


def residual_mode(residual) -> int:
    """A conv2d kernel's has_res argument (CONV_RESIDUAL in kernels/common.h): 0 without a residual, 1 for one of the
    output's shape, 2 for one of shape (N, O, 1, 1), broadcast over the positions (ops.conv2d checks which)."""
    if residual is None:
        return 0
    return 2 if residual.shape[2:] == (1, 1) else 1


def _arrays(args):
    for a in args:
        if isinstance(a, (list, tuple)) and a:
            a = a[0]
        if getattr(a, "dtype", None) is not None and not isinstance(a, np.ndarray):
            yield a


def compute_dtype(args) -> np.dtype | None:
    """The dtype a call is of: that of its first float32 / float64 array (a half-stored weight beside it is read
    into it); float16 for a call whose float arrays are all float16 (the float16 dtype: stored in half, computed in
    float). None for a call without a float array."""
    dts = [np.dtype(a.dtype) for a in _arrays(args) if a.dtype.kind == "f"]
    wide = [d for d in dts if d in (np.float32, np.float64)]
    if wide:
        return wide[0]
    return np.dtype(np.float16) if dts else None


def has_half(args) -> bool:
    """Whether a call passes a half-stored (float16) array beside float32 / float64 ones (half storage of a
    weight), not a call of the float16 dtype, whose arrays are all float16."""
    dt = compute_dtype(args)
    return dt is not None and dt != np.float16 and any(getattr(a, "dtype", None) == np.float16 for a in args)
