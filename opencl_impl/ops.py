"""The OpenCL ops: the names and signatures of sdcl.reference.ops, on pyopencl arrays of one Runtime.

Each function takes the runtime first, checks its inputs as the reference does (one float dtype, contiguous
arrays, the shapes the op needs; a half-stored weight where the op admits one), then dispatches: the runtime's
policy picks the variant and knobs (sdcl.opencl_impl.dispatch). `DeviceOps(rt)` binds the runtime, giving the ops
namespace the models are written against (`ops.matmul(a, b)`), as sdcl.reference.ops is for NumPy.
"""

from __future__ import annotations

import functools

import numpy as np
import pyopencl.array as cla

from sdcl.opencl_impl.dispatch import dispatch
from sdcl.opencl_impl.launch import buffer, launch_flat
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.shapes import CL_TYPES, conv_geometry, fail, fold_broadcast, fold_permute
from sdcl.registry import REGISTRY


def _float_inputs(op: str, *arrays) -> np.dtype:
    """Same contract as the reference: float arrays of one dtype, contiguous; returns that dtype. float16 (arrays
    stored in half, computed in float: the variants that declare it) is accepted too."""
    present = [a for a in arrays if a is not None]
    for a in present:
        if not isinstance(a, cla.Array):
            raise ValueError(f"{op}: expected pyopencl arrays, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64, np.float16):
            raise ValueError(f"{op}: expected float32, float64 or float16, got {a.dtype} (shape {a.shape})")
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: expected a contiguous array (shape {a.shape}, strides {a.strides})")
    if len({a.dtype for a in present}) > 1:
        raise ValueError(f"{op}: all inputs must share one dtype, got "
                         + ", ".join(f"{a.dtype}{a.shape}" for a in present))
    return present[0].dtype


def _weight_inputs(op: str, x, weight, bias) -> None:
    """_float_inputs, except that the weight may be stored in half (float16) beside float32 or float64 x and bias:
    the half-storage variants read it (registry: Variant.half_args)."""
    if isinstance(weight, cla.Array) and weight.dtype == np.float16:
        if not weight.flags.c_contiguous:
            raise ValueError(f"{op}: expected a contiguous weight (shape {weight.shape}, strides {weight.strides})")
        _float_inputs(op, x, bias)
    else:
        _float_inputs(op, x, weight, bias)


def _check_broadcast(op: str, a, b) -> None:
    try:
        ok = np.broadcast_shapes(a.shape, b.shape) == a.shape
    except ValueError:
        ok = False
    if not ok:
        fail(op, "b must broadcast to a's shape", a, b)
    if fold_broadcast(a.shape, b.shape) is None:
        fail(op, "this broadcast alternates between repeated and full axes more than 4 times; "
             "the naive kernel folds shapes to 4-D", a, b)


def to_half(rt: Runtime, x) -> cla.Array:
    """x (float32 or float64, on the device) rounded to half storage: float16, round to nearest even (vstore_half),
    as numpy's astype(np.float16). Magnitudes above 65504 become inf. x itself when it is float16 already."""
    if x.dtype == np.float16:
        return x
    y = rt.empty(x.shape, np.float16)
    knl = rt.kernel("elementwise.cl", "to_half", {}, x.dtype)
    launch_flat(rt, "to_half", knl, x.size, buffer(rt, x), y.data, np.int64(x.size))
    return y


def from_half(rt: Runtime, x, dtype=np.float32) -> cla.Array:
    """x (float16, on the device) as float32 or float64: exact (every half is a float)."""
    y = rt.empty(x.shape, dtype)
    knl = rt.kernel("elementwise.cl", "from_half", {}, dtype)
    launch_flat(rt, "from_half", knl, x.size, buffer(rt, x), y.data, np.int64(x.size))
    return y


def astype(rt: Runtime, x, dtype) -> cla.Array:
    """x in another float dtype, on the device (as numpy's astype): float32 / float64 -> float16 rounds to nearest
    even, float16 -> float32 / float64 is exact; x itself when it has the dtype already. (pyopencl's own astype has
    no float16.) The pipeline's sampler runs a float16 model's latents in float32 through it."""
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    if dtype == np.float16 and x.dtype in (np.float32, np.float64):
        return to_half(rt, x)
    if x.dtype == np.float16 and dtype in (np.float32, np.float64):
        return from_half(rt, x, dtype)
    raise ValueError(f"astype: from {x.dtype} to {dtype} is not supported on the device (float16 <-> float32 or "
                     f"float64 only), got shape {x.shape}")


def silu(rt: Runtime, x):
    _float_inputs("silu", x)
    return dispatch(rt, "silu", x)


def gelu(rt: Runtime, x):
    _float_inputs("gelu", x)
    return dispatch(rt, "gelu", x)


def gelu_tanh(rt: Runtime, x):
    _float_inputs("gelu_tanh", x)
    return dispatch(rt, "gelu_tanh", x)


def quick_gelu(rt: Runtime, x):
    _float_inputs("quick_gelu", x)
    return dispatch(rt, "quick_gelu", x)


def geglu(rt: Runtime, x):
    _float_inputs("geglu", x)
    if x.ndim < 1 or x.shape[-1] % 2:
        fail("geglu", "the last dimension must be even", x)
    return dispatch(rt, "geglu", x)


def matmul(rt: Runtime, a, b):
    """(M, K) @ (K, N) -> (M, N)."""
    _float_inputs("matmul", a, b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        fail("matmul", "expected (M, K) @ (K, N)", a, b)
    return dispatch(rt, "matmul", a, b)


def batched_matmul(rt: Runtime, a, b):
    """(B, M, K) @ (B, K, N) -> (B, M, N)."""
    _float_inputs("batched_matmul", a, b)
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        fail("batched_matmul", "expected (B, M, K) @ (B, K, N)", a, b)
    return dispatch(rt, "batched_matmul", a, b)


def linear(rt: Runtime, x, weight, bias=None, residual=None):
    """y = x W^T + b (+ residual) over the last axis; x (..., in), weight (out, in), bias (out,), residual (..., out):
    added in the GEMM's epilogue, no separate add."""
    _weight_inputs("linear", x, weight, bias)
    if residual is not None:
        _float_inputs("linear", x, residual)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        fail("linear", "expected x (..., in) and weight (out, in)", x, weight)
    if bias is not None and bias.shape != (weight.shape[0],):
        fail("linear", "bias must be (out,)", weight, bias)
    if residual is not None and residual.shape != x.shape[:-1] + weight.shape[:1]:
        fail("linear", "residual must have the output's shape (..., out)", x, weight, residual)
    return dispatch(rt, "linear", x, weight, bias, residual)


def conv2d(rt: Runtime, x, weight, bias=None, stride=1, padding=0, residual=None):
    """Cross-correlation, NCHW. weight (O, C, kh, kw). padding: p, (ph, pw) or (top, bottom, left, right).
    residual (the output's shape, or (N, O, 1, 1): one value per sample and channel): added in the kernel's epilogue,
    no separate add."""
    _weight_inputs("conv2d", x, weight, bias)
    if residual is not None:
        _float_inputs("conv2d", x, residual)
    if x.ndim != 4:
        fail("conv2d", "x must be 4-D", x)
    if weight.ndim != 4:
        fail("conv2d", "weight must be 4-D", weight)
    if x.shape[1] != weight.shape[1]:
        fail("conv2d", "x channels must equal weight's second dimension", x, weight)
    if bias is not None and bias.shape != (weight.shape[0],):
        fail("conv2d", "bias must be (out_channels,)", weight, bias)
    _, _, (oh, ow) = conv_geometry(x, weight, stride, padding)
    if oh < 1 or ow < 1:
        fail("conv2d", "kernel larger than the padded input", x, weight)
    n, o = x.shape[0], weight.shape[0]
    if residual is not None and residual.shape not in ((n, o, oh, ow), (n, o, 1, 1)):
        fail("conv2d", f"residual must have the output's shape {(n, o, oh, ow)} or {(n, o, 1, 1)}", x, weight,
             residual)
    return dispatch(rt, "conv2d", x, weight, bias, stride, padding, residual)


def group_norm(rt: Runtime, x, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize each group of C/G channels of each sample over (C/G, *spatial) with biased variance; then affine."""
    _float_inputs("group_norm", x, weight, bias)
    if x.ndim < 2 or num_groups < 1 or x.shape[1] % num_groups:
        fail("group_norm", f"x must be (N, C, ...) with C divisible by num_groups={num_groups}", x)
    for p in (weight, bias):
        if p is not None and p.shape != (x.shape[1],):
            fail("group_norm", "weight and bias must be (C,)", x, p)
    return dispatch(rt, "group_norm", x, num_groups, weight, bias, eps)


def group_norm_silu(rt: Runtime, x, num_groups, weight=None, bias=None, eps=1e-5):
    """silu(group_norm(x)); the naive variant is the two ops one after the other (a fused variant does one pass)."""
    _float_inputs("group_norm_silu", x, weight, bias)
    if x.ndim < 2 or num_groups < 1 or x.shape[1] % num_groups:
        fail("group_norm_silu", f"x must be (N, C, ...) with C divisible by num_groups={num_groups}", x)
    for p in (weight, bias):
        if p is not None and p.shape != (x.shape[1],):
            fail("group_norm_silu", "weight and bias must be (C,)", x, p)
    return dispatch(rt, "group_norm_silu", x, num_groups, weight, bias, eps)


def layer_norm(rt: Runtime, x, weight=None, bias=None, eps=1e-5):
    """Normalize over the last axis with biased variance; then affine."""
    _float_inputs("layer_norm", x, weight, bias)
    if x.ndim < 1:
        fail("layer_norm", "x must have at least one axis", x)
    for p in (weight, bias):
        if p is not None and p.shape != x.shape[-1:]:
            fail("layer_norm", "weight and bias must match x's last dimension", x, p)
    return dispatch(rt, "layer_norm", x, weight, bias, eps)


def softmax(rt: Runtime, x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along axis; -inf entries give 0 (a row of only -inf gives NaN, as torch)."""
    _float_inputs("softmax", x)
    if not -x.ndim <= axis < x.ndim:
        fail("softmax", f"axis {axis} is out of range for {x.ndim}-D x", x)
    return dispatch(rt, "softmax", x, axis)


def attention(rt: Runtime, q, k, v, heads, causal=False, scale=None):
    """softmax(Q K^T * scale [+ causal mask]) V per head; q (B, Lq, H*D), k and v (B, Lk, H*D) -> (B, Lq, H*D)."""
    _float_inputs("attention", q, k, v)
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3 or k.shape != v.shape or q.shape[0] != k.shape[0] \
            or q.shape[2] != k.shape[2] or heads < 1 or q.shape[2] % heads:
        fail("attention", f"expected q (B, Lq, H*D), k = v (B, Lk, H*D) with H={heads} dividing H*D", q, k, v)
    if causal and q.shape[1] != k.shape[1]:
        fail("attention", "a causal mask needs Lq == Lk", q, k)
    return dispatch(rt, "attention", q, k, v, heads, causal, scale)


def timestep_embedding(rt: Runtime, timesteps, dim, flip_sin_to_cos=True, downscale_freq_shift=0.0, max_period=10000.0):
    """Sinusoids: f_i = max_period^(-i / (dim/2 - shift)), emb = [sin(t f), cos(t f)] (cos first if flipped).

    timesteps (N,): a host numpy array or a device array, any real dtype; result float32 (float64 / float16 for
    float64 / float16 timesteps: a float16 model asks with float16 timesteps), shape (N, dim), on the device."""
    shape, dtype = tuple(timesteps.shape), np.dtype(timesteps.dtype)
    if len(shape) != 1 or dtype.kind not in "iuf" or dim < 1:
        raise ValueError(f"timestep_embedding: expected 1-D real timesteps and dim >= 1 "
                         f"(got shape {shape}, dtype {dtype}, dim {dim})")
    if isinstance(timesteps, cla.Array) and dtype not in CL_TYPES and dtype != np.float16:
        raise ValueError(f"timestep_embedding: device timesteps of dtype {dtype} are not supported; use one of "
                         + ", ".join(sorted([t.name for t in CL_TYPES] + ["float16"])))
    return dispatch(rt, "timestep_embedding", timesteps, dim, flip_sin_to_cos, downscale_freq_shift, max_period)


def check_token_ids(ids, token_table, position_table) -> np.ndarray:
    """ids (B, L) as the int64 host array token_embedding's kernel reads (a device array is read back to check it),
    or ValueError naming what is wrong with them or the tables."""
    host = ids.get() if isinstance(ids, cla.Array) else np.asarray(ids)
    _float_inputs("token_embedding", token_table, position_table)
    if host.dtype.kind not in "iu" or host.ndim != 2:
        fail("token_embedding", f"ids must be 2-D integers, got dtype {host.dtype}", host)
    if token_table.ndim != 2 or position_table.ndim != 2 or token_table.shape[1] != position_table.shape[1] \
            or host.shape[1] > position_table.shape[0]:
        fail("token_embedding", "tables must be (V, D) and (P, D) with P >= L", host, token_table, position_table)
    if host.size and (host.min() < 0 or host.max() >= token_table.shape[0]):
        raise ValueError(f"token_embedding: token ids must lie in [0, {token_table.shape[0]}), "
                         f"got [{host.min()}, {host.max()}]")
    return host.astype(np.int64, copy=False)


def token_embedding(rt: Runtime, ids, token_table, position_table):
    """token_table[ids] + position_table[:L]; ids (B, L) integers, on the host, or on the device as int64 (a
    replayed text encoder's input: read by the kernel where it is) -> (B, L, D) on the device."""
    host = check_token_ids(ids, token_table, position_table)
    if isinstance(ids, cla.Array) and ids.dtype != np.int64:
        fail("token_embedding", f"device ids must be int64, got {ids.dtype}", ids)
    return dispatch(rt, "token_embedding", ids if isinstance(ids, cla.Array) else host, token_table, position_table)


def add(rt: Runtime, a, b):
    """Residual add, a + b, with b broadcast to a's shape (a bias, a time embedding)."""
    _float_inputs("add", a, b)
    _check_broadcast("add", a, b)
    return dispatch(rt, "add", a, b)


def mul(rt: Runtime, a, b):
    """Elementwise product, b broadcast to a's shape."""
    _float_inputs("mul", a, b)
    _check_broadcast("mul", a, b)
    return dispatch(rt, "mul", a, b)


def concat(rt: Runtime, xs, axis=1):
    """Join arrays along axis (the UNet's skip connections join channels, axis 1)."""
    if not xs:
        raise ValueError("concat: expected at least one array")
    _float_inputs("concat", *xs)
    if not -xs[0].ndim <= axis < xs[0].ndim:  # a wrapped axis would silently join along the wrong axis
        fail("concat", f"axis {axis} is out of range for {xs[0].ndim}-D arrays", *xs)
    ax = axis % xs[0].ndim
    if any(x.ndim != xs[0].ndim or x.shape[:ax] + x.shape[ax + 1:] != xs[0].shape[:ax] + xs[0].shape[ax + 1:]
           for x in xs):
        fail("concat", f"shapes must agree except on axis {axis}", *xs)
    return dispatch(rt, "concat", list(xs), axis)


def upsample_nearest2x(rt: Runtime, x):
    """Nearest-neighbour 2x upsampling of NCHW: y[..., i, j] = x[..., i // 2, j // 2]."""
    _float_inputs("upsample_nearest2x", x)
    if x.ndim != 4:
        fail("upsample_nearest2x", "x must be 4-D", x)
    return dispatch(rt, "upsample_nearest2x", x)


def permute(rt: Runtime, x, axes):
    """Materialized transpose: y = x.transpose(axes), contiguous (NCHW <-> N(HW)C around transformers)."""
    _float_inputs("permute", x)
    if sorted(axes) != list(range(x.ndim)):
        fail("permute", f"axes {tuple(axes)} is not a permutation of x's axes", x)
    if fold_permute(x.shape, tuple(axes)) is None:
        fail("permute", f"axes {tuple(axes)} need more than 4 axes after folding; the naive kernel folds to 4-D", x)
    return dispatch(rt, "permute", x, tuple(axes))


# The ops the models call, by name: one public function here per registry row.
OPS = {name: globals()[name] for name in REGISTRY}
CONVERSIONS = {"astype": astype}    # beside the ops, not registry ops (the reference's ops.astype is numpy's)


class DeviceOps:
    """The OpenCL ops bound to one Runtime: the namespace the models are written against (`ops.matmul(a, b)`)."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    def __getattr__(self, name: str):
        fn = OPS.get(name) or CONVERSIONS.get(name)
        if fn is None:
            raise AttributeError(f"sdcl's OpenCL ops have no op {name!r}")
        bound = functools.partial(fn, self.rt)
        setattr(self, name, bound)      # looked up once per name
        return bound

    def __repr__(self) -> str:
        return f"DeviceOps({self.rt.info['device']!r})"
