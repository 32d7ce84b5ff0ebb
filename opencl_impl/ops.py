"""The OpenCL ops: the same names and signatures as reference/ops.py, on pyopencl arrays.

Each public function checks its inputs and dispatches to a variant launcher. A launcher is registered with
`@variant(op, name)` and has the signature `launcher(rt, knobs, *args, **kwargs)`, where `rt` is the
`Runtime` that owns the arrays and `knobs` the build-time parameters (`-D` macros) chosen for it. Which variant
runs is the runtime's choice (`Runtime.choose`), "naive" unless a policy says otherwise; conformance and perf call
a named variant directly through `run_variant`.
"""

from __future__ import annotations

import math

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from opencl_impl.runtime import _RUNTIMES, DeviceError, Runtime, runtime_of

VARIANTS: dict = {}   # op -> {variant name -> launcher}


def variant(op: str, name: str):
    def register(fn):
        VARIANTS.setdefault(op, {})[name] = fn
        return fn
    return register


def run_variant(op: str, name: str, knobs: dict, *args, **kwargs):
    """Run one named variant of an op with the given knobs (conformance and perf use this)."""
    rt = _runtime(args)
    _check_storage(op, name, args)
    return VARIANTS[op][name](rt, knobs or {}, *args, **kwargs)


def _first_array(args) -> cla.Array | None:
    for a in args:
        if isinstance(a, cla.Array):
            return a
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], cla.Array):
            return a[0]
    return None


def _runtime(args) -> Runtime:
    """The Runtime owning the first device array among args; with none (timestep_embedding of the host timesteps
    the UNet passes), the most recently created Runtime: the program's device when it made one."""
    a = _first_array(args)
    if a is not None:
        return runtime_of(a)
    if not _RUNTIMES:
        raise DeviceError("no device array among the arguments and no sdcl Runtime created yet: "
                          "create one (opencl_impl.runtime.Runtime) first")
    return list(_RUNTIMES.values())[-1]


def _dispatch(op: str, *args, **kwargs):
    rt = _runtime(args)
    name, knobs = rt_choose(rt, op, args, kwargs)
    _check_storage(op, name, args)
    return VARIANTS[op][name](rt, knobs, *args, **kwargs)


def _check_storage(op: str, name: str, args) -> None:
    """Only the half-storage variants (the registry's Variant.half_args) read float16 arrays; any other would
    misread them."""
    if not has_half(args):
        return
    from conformance.registry import REGISTRY
    spec = REGISTRY.get(op)
    half_variants = [v.name for v in spec.variants if v.half_args] if spec else []
    if name not in half_variants:
        halves = [f"{a.dtype}{a.shape}" for a in args if getattr(a, "dtype", None) == np.float16]
        raise ValueError(f"{op}: variant {name!r} reads float32/float64 arrays, got half-stored {', '.join(halves)}; "
                         f"the half-storage variants are {half_variants}")


def rt_choose(rt: Runtime, op: str, args, kwargs=None) -> tuple:
    """The (variant, knobs) to run: the runtime's policy (opencl_impl.selection.Policy) if it has one, else the
    naive kernel; a half-stored weight, which only the half-storage variants read, gets an untuned policy's pick."""
    if rt.policy is not None:
        return rt.policy(op, args, kwargs or {})
    if has_half(args):
        from opencl_impl.selection import Policy
        return Policy(info=rt.info)(op, args, kwargs or {})
    return "naive", {}


def has_half(args) -> bool:
    """Whether a call passes a float16 (half-stored) array."""
    return any(getattr(a, "dtype", None) == np.float16 for a in args)


def _fail(op: str, msg: str, *arrays) -> None:
    """The reference's error: the op, what is wrong, and the shapes it got."""
    shapes = ", ".join(str(getattr(a, "shape", a)) for a in arrays)
    raise ValueError(f"{op}: {msg} (got shapes {shapes})")


def _float_inputs(op: str, *arrays) -> np.dtype:
    """Same contract as the reference: float arrays of one dtype, contiguous; returns that dtype."""
    present = [a for a in arrays if a is not None]
    for a in present:
        if not isinstance(a, cla.Array):
            raise ValueError(f"{op}: expected pyopencl arrays, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"{op}: expected float32 or float64, got {a.dtype} (shape {a.shape})")
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: expected a contiguous array (shape {a.shape}, strides {a.strides})")
    if len({a.dtype for a in present}) > 1:
        raise ValueError(f"{op}: all inputs must share one dtype, got "
                         + ", ".join(f"{a.dtype}{a.shape}" for a in present))
    return present[0].dtype


def _weight_inputs(op: str, x, weight, bias) -> None:
    """_float_inputs, except that the weight may be stored in half (float16) beside float32 or float64 x and bias:
    the half-storage variants read it (variants_gemm.py, variants_conv.py)."""
    if isinstance(weight, cla.Array) and weight.dtype == np.float16:
        if not weight.flags.c_contiguous:
            raise ValueError(f"{op}: expected a contiguous weight (shape {weight.shape}, strides {weight.strides})")
        _float_inputs(op, x, bias)
    else:
        _float_inputs(op, x, weight, bias)


def to_half(x) -> cla.Array:
    """x (float32 or float64, on the device) rounded to half storage: float16, round to nearest even (vstore_half),
    as numpy's astype(np.float16). Magnitudes above 65504 become inf."""
    rt = runtime_of(x)
    y = rt.empty(x.shape, np.float16)
    knl = rt.kernel("half.cl", "to_half", {}, x.dtype)
    _launch_flat(rt, "to_half", knl, x.size, _buf(rt, x), y.data, np.int64(x.size))
    return y


def _groups(n: int, local: int) -> int:
    """n rounded up to a multiple of the work-group size (kernels bounds-check the tail)."""
    return (n + local - 1) // local * local


def _buf(rt: Runtime, a: cla.Array) -> "cl.Buffer":
    """The buffer a kernel reads for a contiguous array. A slice along the first axis (x[1:], the second half of a
    CFG batch) starts at an offset into its parent buffer; it is copied to an array of its own first."""
    if not a.offset:
        return a.data
    copy = rt.empty(a.shape, a.dtype)
    if a.nbytes:
        cl.enqueue_copy(rt.queue, copy.data, a.base_data, src_offset=a.offset, byte_count=a.nbytes)
    return copy.data


def _launch_flat(rt: Runtime, op: str, knl, n: int, *args) -> None:
    """One work-item per element of a flat range of n (rounded up to FLAT_WG; kernels bounds-check the tail)."""
    if n:
        rt.launch(op, knl, (_groups(n, FLAT_WG),), None, *args)


FLAT_WG = 64        # flat NDRanges are rounded up to this; the driver picks the work-group size
TILE_2D = 16        # 2-D NDRanges (matmul, linear) are rounded up to this in each dimension
REDUCE_WG = 256     # default work-group size of the work-group reductions (group_norm, layer_norm)


def _real(dtype, value: float):
    """A kernel scalar argument of type REAL."""
    return np.dtype(dtype).type(value)


def _has(defines: dict, **flags) -> dict:
    """Knobs plus the structural defines (HAS_BIAS=1 ...) that select a kernel's optional arguments."""
    return {**defines, **{k: int(v) for k, v in flags.items()}}


# ------------------------------------------------------------------------------------------------- activations

def silu(x):
    _float_inputs("silu", x)
    return _dispatch("silu", x)


@variant("silu", "naive")
def _silu_naive(rt: Runtime, knobs: dict, x):
    y = rt.empty(x.shape, x.dtype)
    knl = rt.kernel("silu.cl", "silu_naive", knobs, x.dtype)
    _launch_flat(rt, "silu", knl, x.size, _buf(rt, x), y.data, np.int64(x.size))
    return y


def _activation(op: str, rt: Runtime, knobs: dict, x):
    """Launch the flat kernel <op>_naive of kernels/<op>.cl: y[i] = f(x[i])."""
    y = rt.empty(x.shape, x.dtype)
    knl = rt.kernel(f"{op}.cl", f"{op}_naive", knobs, x.dtype)
    _launch_flat(rt, op, knl, x.size, _buf(rt, x), y.data, np.int64(x.size))
    return y


def gelu(x):
    _float_inputs("gelu", x)
    return _dispatch("gelu", x)


@variant("gelu", "naive")
def _gelu_naive(rt: Runtime, knobs: dict, x):
    return _activation("gelu", rt, knobs, x)


def gelu_tanh(x):
    _float_inputs("gelu_tanh", x)
    return _dispatch("gelu_tanh", x)


@variant("gelu_tanh", "naive")
def _gelu_tanh_naive(rt: Runtime, knobs: dict, x):
    return _activation("gelu_tanh", rt, knobs, x)


def quick_gelu(x):
    _float_inputs("quick_gelu", x)
    return _dispatch("quick_gelu", x)


@variant("quick_gelu", "naive")
def _quick_gelu_naive(rt: Runtime, knobs: dict, x):
    return _activation("quick_gelu", rt, knobs, x)


def geglu(x):
    _float_inputs("geglu", x)
    if x.ndim < 1 or x.shape[-1] % 2:
        _fail("geglu", "the last dimension must be even", x)
    return _dispatch("geglu", x)


@variant("geglu", "naive")
def _geglu_naive(rt: Runtime, knobs: dict, x):
    """Unfused, as a framework runs it: split into (h, g), gelu(g), h * gelu(g): three launches, the halves and
    gelu(g) in global memory (the fused variant, opencl_impl/variants_norm.py, does it in one)."""
    f = x.shape[-1] // 2
    h, g = rt.empty(x.shape[:-1] + (f,), x.dtype), rt.empty(x.shape[:-1] + (f,), x.dtype)
    knl = rt.kernel("geglu.cl", "geglu_split", knobs, x.dtype)
    _launch_flat(rt, "geglu", knl, h.size, _buf(rt, x), h.data, g.data, np.int64(h.size), np.int64(f))
    return _mul_naive(rt, {}, h, _gelu_naive(rt, {}, g))


# ---------------------------------------------------------------------------------------------- linear algebra

def matmul(a, b):
    """(M, K) @ (K, N) -> (M, N)."""
    _float_inputs("matmul", a, b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        _fail("matmul", "expected (M, K) @ (K, N)", a, b)
    return _dispatch("matmul", a, b)


@variant("matmul", "naive")
def _matmul_naive(rt: Runtime, knobs: dict, a, b):
    (m, k), n = a.shape, b.shape[1]
    c = rt.empty((m, n), a.dtype)
    if c.size:
        knl = rt.kernel("matmul.cl", "matmul_naive", knobs, a.dtype)
        rt.launch("matmul", knl, (_groups(n, TILE_2D), _groups(m, TILE_2D)), None,
                  _buf(rt, a), _buf(rt, b), c.data, np.int32(m), np.int32(n), np.int32(k))
    return c


def batched_matmul(a, b):
    """(B, M, K) @ (B, K, N) -> (B, M, N)."""
    _float_inputs("batched_matmul", a, b)
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        _fail("batched_matmul", "expected (B, M, K) @ (B, K, N)", a, b)
    return _dispatch("batched_matmul", a, b)


@variant("batched_matmul", "naive")
def _batched_matmul_naive(rt: Runtime, knobs: dict, a, b):
    (nb, m, k), n = a.shape, b.shape[2]
    c = rt.empty((nb, m, n), a.dtype)
    if c.size:
        knl = rt.kernel("batched_matmul.cl", "batched_matmul_naive", knobs, a.dtype)
        rt.launch("batched_matmul", knl, (_groups(n, TILE_2D), _groups(m, TILE_2D), nb), None,
                  _buf(rt, a), _buf(rt, b), c.data, np.int32(m), np.int32(n), np.int32(k))
    return c


def linear(x, weight, bias=None):
    """y = x W^T + b over the last axis; x (..., in), weight (out, in), bias (out,)."""
    _weight_inputs("linear", x, weight, bias)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        _fail("linear", "expected x (..., in) and weight (out, in)", x, weight)
    if bias is not None and bias.shape != (weight.shape[0],):
        _fail("linear", "bias must be (out,)", weight, bias)
    return _dispatch("linear", x, weight, bias)


@variant("linear", "naive")
def _linear_naive(rt: Runtime, knobs: dict, x, weight, bias=None):
    n_out, n_in = weight.shape
    rows = x.size // n_in if n_in else int(np.prod(x.shape[:-1]))
    y = rt.empty(x.shape[:-1] + (n_out,), x.dtype)
    if y.size:
        knl = rt.kernel("linear.cl", "linear_naive", _has(knobs, HAS_BIAS=bias is not None), x.dtype)
        w = _buf(rt, weight)
        rt.launch("linear", knl, (_groups(n_out, TILE_2D), _groups(rows, TILE_2D)), None,
                  _buf(rt, x), w, w if bias is None else _buf(rt, bias), y.data,
                  np.int32(rows), np.int32(n_in), np.int32(n_out))
    return y


def _conv_geometry(x, weight, stride, padding):
    """((sh, sw), (top, bottom, left, right), (oh, ow)) as the reference reads stride and padding."""
    def pairs(v, n):
        return tuple(int(p) for p in v) if isinstance(v, (tuple, list)) else (int(v),) * n
    st, pad = pairs(stride, 2), pairs(padding, 2)
    if len(st) != 2 or min(st) < 1:
        _fail("conv2d", f"stride must be s >= 1 or (sh, sw), got {stride!r}", x, weight)
    if len(pad) not in (2, 4) or min(pad) < 0:
        _fail("conv2d", f"padding must be p, (ph, pw) or (top, bottom, left, right) >= 0, got {padding!r}",
              x, weight)
    pad = (pad[0], pad[0], pad[1], pad[1]) if len(pad) == 2 else pad
    kh, kw = weight.shape[2:]
    oh = (x.shape[2] + pad[0] + pad[1] - kh) // st[0] + 1
    ow = (x.shape[3] + pad[2] + pad[3] - kw) // st[1] + 1
    return st, pad, (oh, ow)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Cross-correlation, NCHW. weight (O, C, kh, kw). padding: p, (ph, pw) or (top, bottom, left, right)."""
    _weight_inputs("conv2d", x, weight, bias)
    if x.ndim != 4:
        _fail("conv2d", "x must be 4-D", x)
    if weight.ndim != 4:
        _fail("conv2d", "weight must be 4-D", weight)
    if x.shape[1] != weight.shape[1]:
        _fail("conv2d", "x channels must equal weight's second dimension", x, weight)
    if bias is not None and bias.shape != (weight.shape[0],):
        _fail("conv2d", "bias must be (out_channels,)", weight, bias)
    _, _, (oh, ow) = _conv_geometry(x, weight, stride, padding)
    if oh < 1 or ow < 1:
        _fail("conv2d", "kernel larger than the padded input", x, weight)
    return _dispatch("conv2d", x, weight, bias, stride, padding)


@variant("conv2d", "naive")
def _conv2d_naive(rt: Runtime, knobs: dict, x, weight, bias=None, stride=1, padding=0):
    (sh, sw), (top, _, left, _), (oh, ow) = _conv_geometry(x, weight, stride, padding)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    y = rt.empty((n, o, oh, ow), x.dtype)
    knl = rt.kernel("conv2d.cl", "conv2d_naive", _has(knobs, HAS_BIAS=bias is not None), x.dtype)
    wbuf = _buf(rt, weight)
    _launch_flat(rt, "conv2d", knl, y.size, _buf(rt, x), wbuf, wbuf if bias is None else _buf(rt, bias), y.data,
                 np.int64(y.size), *(np.int32(v) for v in (c, h, w, o, kh, kw, oh, ow, sh, sw, top, left)))
    return y


# ----------------------------------------------------------------------------------------------- normalization

def _reduce_wg(knobs: dict) -> dict:
    """The knobs with the reduction work-group size WG made explicit (host and kernel must agree on it)."""
    return {**knobs, "WG": int(knobs.get("WG", REDUCE_WG))}


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize each group of C/G channels of each sample over (C/G, *spatial) with biased variance; then affine."""
    _float_inputs("group_norm", x, weight, bias)
    if x.ndim < 2 or num_groups < 1 or x.shape[1] % num_groups:
        _fail("group_norm", f"x must be (N, C, ...) with C divisible by num_groups={num_groups}", x)
    for p in (weight, bias):
        if p is not None and p.shape != (x.shape[1],):
            _fail("group_norm", "weight and bias must be (C,)", x, p)
    return _dispatch("group_norm", x, num_groups, weight, bias, eps)


@variant("group_norm", "naive")
def _group_norm_naive(rt: Runtime, knobs: dict, x, num_groups, weight=None, bias=None, eps=1e-5):
    knobs = _reduce_wg(knobs)
    y = rt.empty(x.shape, x.dtype)
    n, c = x.shape[:2]
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    if y.size:
        knl = rt.kernel("group_norm.cl", "group_norm_naive",
                        _has(knobs, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None), x.dtype)
        xb = _buf(rt, x)
        wg = knobs["WG"]
        rt.launch("group_norm", knl, (n * num_groups * wg,), (wg,),
                  xb, xb if weight is None else _buf(rt, weight), xb if bias is None else _buf(rt, bias), y.data,
                  np.int32(c), np.int32(num_groups), np.int64(spatial), _real(x.dtype, eps))
    return y


def group_norm_silu(x, num_groups, weight=None, bias=None, eps=1e-5):
    """silu(group_norm(x)); the naive variant is the two ops one after the other (a fused variant does one pass)."""
    _float_inputs("group_norm_silu", x, weight, bias)
    if x.ndim < 2 or num_groups < 1 or x.shape[1] % num_groups:
        _fail("group_norm_silu", f"x must be (N, C, ...) with C divisible by num_groups={num_groups}", x)
    for p in (weight, bias):
        if p is not None and p.shape != (x.shape[1],):
            _fail("group_norm_silu", "weight and bias must be (C,)", x, p)
    return _dispatch("group_norm_silu", x, num_groups, weight, bias, eps)


@variant("group_norm_silu", "naive")
def _group_norm_silu_naive(rt: Runtime, knobs: dict, x, num_groups, weight=None, bias=None, eps=1e-5):
    return _silu_naive(rt, {}, _group_norm_naive(rt, knobs, x, num_groups, weight, bias, eps))


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Normalize over the last axis with biased variance; then affine."""
    _float_inputs("layer_norm", x, weight, bias)
    if x.ndim < 1:
        _fail("layer_norm", "x must have at least one axis", x)
    for p in (weight, bias):
        if p is not None and p.shape != x.shape[-1:]:
            _fail("layer_norm", "weight and bias must match x's last dimension", x, p)
    return _dispatch("layer_norm", x, weight, bias, eps)


@variant("layer_norm", "naive")
def _layer_norm_naive(rt: Runtime, knobs: dict, x, weight=None, bias=None, eps=1e-5):
    knobs = _reduce_wg(knobs)
    y = rt.empty(x.shape, x.dtype)
    d = x.shape[-1]
    if y.size:
        knl = rt.kernel("layer_norm.cl", "layer_norm_naive",
                        _has(knobs, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None), x.dtype)
        xb = _buf(rt, x)
        wg = knobs["WG"]
        rt.launch("layer_norm", knl, ((x.size // d) * wg,), (wg,),
                  xb, xb if weight is None else _buf(rt, weight), xb if bias is None else _buf(rt, bias), y.data,
                  np.int32(d), _real(x.dtype, eps))
    return y


def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along axis; -inf entries give 0 (a row of only -inf gives NaN, as torch)."""
    _float_inputs("softmax", x)
    if not -x.ndim <= axis < x.ndim:
        _fail("softmax", f"axis {axis} is out of range for {x.ndim}-D x", x)
    return _dispatch("softmax", x, axis)


@variant("softmax", "naive")
def _softmax_naive(rt: Runtime, knobs: dict, x, axis=-1):
    y = rt.empty(x.shape, x.dtype)
    ax = axis % x.ndim
    length, inner = x.shape[ax], int(np.prod(x.shape[ax + 1:], dtype=np.int64))
    lines = x.size // length if length else 0
    knl = rt.kernel("softmax.cl", "softmax_naive", knobs, x.dtype)
    _launch_flat(rt, "softmax", knl, lines, _buf(rt, x), y.data, np.int64(lines), np.int32(length),
                 np.int64(inner))
    return y


# --------------------------------------------------------------------------------------------------- attention

def attention(q, k, v, heads, causal=False, scale=None):
    """softmax(Q K^T * scale [+ causal mask]) V per head; q (B, Lq, H*D), k and v (B, Lk, H*D) -> (B, Lq, H*D)."""
    _float_inputs("attention", q, k, v)
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3 or k.shape != v.shape or q.shape[0] != k.shape[0] \
            or q.shape[2] != k.shape[2] or heads < 1 or q.shape[2] % heads:
        _fail("attention", f"expected q (B, Lq, H*D), k = v (B, Lk, H*D) with H={heads} dividing H*D", q, k, v)
    if causal and q.shape[1] != k.shape[1]:
        _fail("attention", "a causal mask needs Lq == Lk", q, k)
    return _dispatch("attention", q, k, v, heads, causal, scale)


@variant("attention", "naive")
def _attention_naive(rt: Runtime, knobs: dict, q, k, v, heads, causal=False, scale=None):
    b, lq, hd = q.shape
    lk, d = k.shape[1], hd // heads
    o = rt.empty(q.shape, q.dtype)
    rows = b * heads * lq
    knl = rt.kernel("attention.cl", "attention_naive", knobs, q.dtype)
    _launch_flat(rt, "attention", knl, rows if d else 0, _buf(rt, q), _buf(rt, k), _buf(rt, v), o.data,
                 np.int64(rows), np.int32(heads), np.int32(lq), np.int32(lk), np.int32(d),
                 _real(q.dtype, 1.0 / math.sqrt(d) if scale is None else scale), np.int32(bool(causal)))
    return o


# -------------------------------------------------------------------------------------------------- embeddings

# OpenCL C names of the numpy dtypes a timesteps array may have on the device (TIME_T in timestep_embedding.cl).
_CL_TYPES = {np.dtype(t): name for t, name in (
    (np.int8, "char"), (np.uint8, "uchar"), (np.int16, "short"), (np.uint16, "ushort"), (np.int32, "int"),
    (np.uint32, "uint"), (np.int64, "long"), (np.uint64, "ulong"), (np.float32, "float"), (np.float64, "double"))}


def timestep_embedding(timesteps, dim, flip_sin_to_cos=True, downscale_freq_shift=0.0, max_period=10000.0):
    """Sinusoids: f_i = max_period^(-i / (dim/2 - shift)), emb = [sin(t f), cos(t f)] (cos first if flipped).

    timesteps (N,): a host numpy array or a device array, any real dtype; result float32 (float64 for float64
    timesteps), shape (N, dim), on the device."""
    shape, dtype = tuple(timesteps.shape), np.dtype(timesteps.dtype)
    if len(shape) != 1 or dtype.kind not in "iuf" or dim < 1:
        raise ValueError(f"timestep_embedding: expected 1-D real timesteps and dim >= 1 "
                         f"(got shape {shape}, dtype {dtype}, dim {dim})")
    if isinstance(timesteps, cla.Array) and dtype not in _CL_TYPES:
        raise ValueError(f"timestep_embedding: device timesteps of dtype {dtype} are not supported; use one of "
                         + ", ".join(sorted(t.name for t in _CL_TYPES)))
    return _dispatch("timestep_embedding", timesteps, dim, flip_sin_to_cos, downscale_freq_shift, max_period)


@variant("timestep_embedding", "naive")
def _timestep_embedding_naive(rt: Runtime, knobs: dict, timesteps, dim, flip_sin_to_cos=True,
                              downscale_freq_shift=0.0, max_period=10000.0):
    real = np.dtype(np.float64 if timesteps.dtype == np.float64 else np.float32)
    if isinstance(timesteps, cla.Array):
        t, time_t = _buf(rt, timesteps), _CL_TYPES[np.dtype(timesteps.dtype)]
    else:   # host timesteps: converted to the compute dtype as the reference does, then uploaded
        t, time_t = rt.to_device(np.asarray(timesteps).astype(real)).data, _CL_TYPES[real]
    n, half = timesteps.shape[0], dim // 2
    y = rt.empty((n, dim), real)
    knl = rt.kernel("timestep_embedding.cl", "timestep_embedding_naive", {**knobs, "TIME_T": time_t}, real)
    _launch_flat(rt, "timestep_embedding", knl, y.size, t, y.data, np.int64(y.size), np.int32(dim),
                 np.int32(half), _real(real, math.log(max_period)), _real(real, half - downscale_freq_shift),
                 np.int32(bool(flip_sin_to_cos)))
    return y


def token_embedding(ids, token_table, position_table):
    """token_table[ids] + position_table[:L]; ids (B, L) integers (host numpy) -> (B, L, D) on the device."""
    ids = ids.get() if isinstance(ids, cla.Array) else np.asarray(ids)
    _float_inputs("token_embedding", token_table, position_table)
    if ids.dtype.kind not in "iu" or ids.ndim != 2:
        _fail("token_embedding", f"ids must be 2-D integers, got dtype {ids.dtype}", ids)
    if token_table.ndim != 2 or position_table.ndim != 2 or token_table.shape[1] != position_table.shape[1] \
            or ids.shape[1] > position_table.shape[0]:
        _fail("token_embedding", "tables must be (V, D) and (P, D) with P >= L", ids, token_table, position_table)
    if ids.size and (ids.min() < 0 or ids.max() >= token_table.shape[0]):
        raise ValueError(f"token_embedding: token ids must lie in [0, {token_table.shape[0]}), "
                         f"got [{ids.min()}, {ids.max()}]")
    return _dispatch("token_embedding", ids, token_table, position_table)


@variant("token_embedding", "naive")
def _token_embedding_naive(rt: Runtime, knobs: dict, ids, token_table, position_table):
    ids = np.asarray(ids)
    b, length = ids.shape
    d = token_table.shape[1]
    y = rt.empty((b, length, d), token_table.dtype)
    knl = rt.kernel("token_embedding.cl", "token_embedding_naive", knobs, token_table.dtype)
    if y.size:
        ids_dev = rt.to_device(ids.astype(np.int64))
        _launch_flat(rt, "token_embedding", knl, y.size, ids_dev.data, _buf(rt, token_table),
                     _buf(rt, position_table), y.data, np.int64(y.size), np.int32(length), np.int32(d))
    return y


# ------------------------------------------------------------------------------------------ elementwise, layout

def _fold_broadcast(a_shape: tuple, b_shape: tuple):
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


def _check_broadcast(op: str, a, b) -> None:
    try:
        ok = np.broadcast_shapes(a.shape, b.shape) == a.shape
    except ValueError:
        ok = False
    if not ok:
        _fail(op, "b must broadcast to a's shape", a, b)
    if _fold_broadcast(a.shape, b.shape) is None:
        _fail(op, "this broadcast alternates between repeated and full axes more than 4 times; "
              "the naive kernel folds shapes to 4-D", a, b)


def _binary(op: str, rt: Runtime, knobs: dict, a, b):
    dims, strides = _fold_broadcast(a.shape, b.shape)
    y = rt.empty(a.shape, a.dtype)
    knl = rt.kernel(f"{op}.cl", f"{op}_naive", knobs, a.dtype)
    _launch_flat(rt, op, knl, a.size, _buf(rt, a), _buf(rt, b), y.data, np.int64(a.size),
                 *(np.int64(d) for d in dims[1:]), *(np.int64(s) for s in strides))
    return y


def add(a, b):
    """Residual add, a + b, with b broadcast to a's shape (a bias, a time embedding)."""
    _float_inputs("add", a, b)
    _check_broadcast("add", a, b)
    return _dispatch("add", a, b)


@variant("add", "naive")
def _add_naive(rt: Runtime, knobs: dict, a, b):
    return _binary("add", rt, knobs, a, b)


def mul(a, b):
    """Elementwise product, b broadcast to a's shape."""
    _float_inputs("mul", a, b)
    _check_broadcast("mul", a, b)
    return _dispatch("mul", a, b)


@variant("mul", "naive")
def _mul_naive(rt: Runtime, knobs: dict, a, b):
    return _binary("mul", rt, knobs, a, b)


def concat(xs, axis=1):
    """Join arrays along axis (the UNet's skip connections join channels, axis 1)."""
    if not xs:
        raise ValueError("concat: expected at least one array")
    _float_inputs("concat", *xs)
    if not -xs[0].ndim <= axis < xs[0].ndim:  # a wrapped axis would silently join along the wrong axis
        _fail("concat", f"axis {axis} is out of range for {xs[0].ndim}-D arrays", *xs)
    ax = axis % xs[0].ndim
    if any(x.ndim != xs[0].ndim or x.shape[:ax] + x.shape[ax + 1:] != xs[0].shape[:ax] + xs[0].shape[ax + 1:]
           for x in xs):
        _fail("concat", f"shapes must agree except on axis {axis}", *xs)
    return _dispatch("concat", list(xs), axis)


@variant("concat", "naive")
def _concat_naive(rt: Runtime, knobs: dict, xs, axis=1):
    ax = axis % xs[0].ndim
    total = sum(x.shape[ax] for x in xs)
    shape = xs[0].shape[:ax] + (total,) + xs[0].shape[ax + 1:]
    inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
    y = rt.empty(shape, xs[0].dtype)
    knl = rt.kernel("concat.cl", "concat_naive", knobs, xs[0].dtype)
    off = 0
    for x in xs:
        _launch_flat(rt, "concat", knl, x.size, _buf(rt, x), y.data, np.int64(x.size),
                     np.int64(x.shape[ax] * inner), np.int64(total * inner), np.int64(off * inner))
        off += x.shape[ax]
    return y


def upsample_nearest2x(x):
    """Nearest-neighbour 2x upsampling of NCHW: y[..., i, j] = x[..., i // 2, j // 2]."""
    _float_inputs("upsample_nearest2x", x)
    if x.ndim != 4:
        _fail("upsample_nearest2x", "x must be 4-D", x)
    return _dispatch("upsample_nearest2x", x)


@variant("upsample_nearest2x", "naive")
def _upsample_nearest2x_naive(rt: Runtime, knobs: dict, x):
    n, c, h, w = x.shape
    y = rt.empty((n, c, 2 * h, 2 * w), x.dtype)
    knl = rt.kernel("upsample_nearest2x.cl", "upsample_nearest2x_naive", knobs, x.dtype)
    _launch_flat(rt, "upsample_nearest2x", knl, y.size, _buf(rt, x), y.data, np.int64(y.size), np.int32(h),
                 np.int32(w))
    return y


def _fold_permute(shape: tuple, axes: tuple):
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


def permute(x, axes):
    """Materialized transpose: y = x.transpose(axes), contiguous (NCHW <-> N(HW)C around transformers)."""
    _float_inputs("permute", x)
    if sorted(axes) != list(range(x.ndim)):
        _fail("permute", f"axes {tuple(axes)} is not a permutation of x's axes", x)
    if _fold_permute(x.shape, tuple(axes)) is None:
        _fail("permute", f"axes {tuple(axes)} need more than 4 axes after folding; the naive kernel folds to 4-D", x)
    return _dispatch("permute", x, tuple(axes))


@variant("permute", "naive")
def _permute_naive(rt: Runtime, knobs: dict, x, axes):
    dims, strides = _fold_permute(x.shape, tuple(axes))
    y = rt.empty(tuple(x.shape[a] for a in axes), x.dtype)
    knl = rt.kernel("permute.cl", "permute_naive", knobs, x.dtype)
    _launch_flat(rt, "permute", knl, x.size, _buf(rt, x), y.data, np.int64(x.size),
                 *(np.int64(d) for d in dims[1:]), *(np.int64(s) for s in strides))
    return y


from opencl_impl import variants_gemm  # noqa: E402,F401  (registers variants)
from opencl_impl import variants_conv  # noqa: E402,F401  (registers variants)
from opencl_impl import variants_norm  # noqa: E402,F401  (registers variants)
from opencl_impl import variants_attention  # noqa: E402,F401  (registers variants)
