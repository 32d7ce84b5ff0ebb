"""The golden reference of every Stable Diffusion op: plain NumPy, one function per op, named after the op.

Shared contract (checked once, in `_inputs`): every array argument is a floating-point ndarray of one dtype;
the result has that dtype; the arithmetic runs in float64 for float64 inputs and in float32 otherwise
(float16 inputs are computed in float32 and rounded once at the end, as GPUs do with half storage).
A wrong shape or dtype raises ValueError naming the op and the shapes.

Layouts: images are NCHW; token sequences are (batch, length, channels); attention takes q/k/v as
(batch, length, heads * head_dim), the layout the models produce, so no permute is needed around it.
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)


def _fail(op: str, msg: str, *arrays) -> None:
    shapes = ", ".join(str(getattr(a, "shape", a)) for a in arrays)
    raise ValueError(f"{op}: {msg} (got shapes {shapes})")


def _inputs(op: str, *arrays):
    """Check the shared contract; return (result dtype, arrays cast to the compute dtype; None passes)."""
    present = [a for a in arrays if a is not None]
    for a in present:
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{op}: expected numpy arrays, got {type(a).__name__}")
        if a.dtype.kind != "f":
            raise ValueError(f"{op}: expected a floating-point dtype, got {a.dtype} (shape {a.shape})")
    dtypes = {a.dtype for a in present}
    if len(dtypes) > 1:
        raise ValueError(f"{op}: all inputs must share one dtype, got "
                         + ", ".join(f"{a.dtype}{a.shape}" for a in present))
    out = present[0].dtype
    compute = np.float64 if out == np.float64 else np.float32
    return out, [None if a is None else a.astype(compute, copy=False) for a in arrays]


def _ndim(op: str, x: np.ndarray, ndim: int, what: str = "x") -> None:
    if x.ndim != ndim:
        _fail(op, f"{what} must be {ndim}-D", x)


def _pairs(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


# ----------------------------------------------------------------------------------------------- linear algebra

def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N)."""
    dt, (a, b) = _inputs("matmul", a, b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        _fail("matmul", "expected (M, K) @ (K, N)", a, b)
    return (a @ b).astype(dt)


def batched_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, M, K) @ (B, K, N) -> (B, M, N)."""
    dt, (a, b) = _inputs("batched_matmul", a, b)
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        _fail("batched_matmul", "expected (B, M, K) @ (B, K, N)", a, b)
    return np.matmul(a, b).astype(dt)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
           residual: np.ndarray | None = None) -> np.ndarray:
    """y = x W^T + b (+ residual) over the last axis; x (..., in), weight (out, in), bias (out,), residual y's shape
    (the skip connection after an attention's or a feed-forward's output projection)."""
    dt, (x, weight, bias, residual) = _inputs("linear", x, weight, bias, residual)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        _fail("linear", "expected x (..., in) and weight (out, in)", x, weight)
    if bias is not None and bias.shape != (weight.shape[0],):
        _fail("linear", "bias must be (out,)", weight, bias)
    if residual is not None and residual.shape != x.shape[:-1] + weight.shape[:1]:
        _fail("linear", "residual must have the output's shape (..., out)", x, weight, residual)
    y = x @ weight.T
    if bias is not None:
        y = y + bias
    if residual is not None:
        y = y + residual
    return y.astype(dt)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
           stride: int | tuple = 1, padding: int | tuple = 0, residual: np.ndarray | None = None) -> np.ndarray:
    """Cross-correlation, NCHW. weight (O, C, kh, kw). padding: p, (ph, pw) or (top, bottom, left, right).
    residual: added to the output, of its shape (a ResNet block's skip connection) or (N, O, 1, 1), one value per
    sample and channel (a ResNet block's time embedding)."""
    dt, (x, weight, bias, residual) = _inputs("conv2d", x, weight, bias, residual)
    _ndim("conv2d", x, 4)
    _ndim("conv2d", weight, 4, "weight")
    if x.shape[1] != weight.shape[1]:
        _fail("conv2d", "x channels must equal weight's second dimension", x, weight)
    if bias is not None and bias.shape != (weight.shape[0],):
        _fail("conv2d", "bias must be (out_channels,)", weight, bias)
    sh, sw = _pairs(stride, 2)
    pad = _pairs(padding, 2)
    top, bottom, left, right = (pad[0], pad[0], pad[1], pad[1]) if len(pad) == 2 else pad
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    if oh < 1 or ow < 1:
        _fail("conv2d", "kernel larger than the padded input", x, weight)
    if residual is not None and residual.shape not in ((n, o, oh, ow), (n, o, 1, 1)):
        _fail("conv2d", f"residual must have the output's shape {(n, o, oh, ow)} or {(n, o, 1, 1)}", x, weight,
              residual)
    y = np.zeros((n, o, oh, ow), dtype=x.dtype)
    for i in range(kh):  # sum over kernel taps: y += W[:, :, i, j] . x shifted by (i, j)
        for j in range(kw):
            patch = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            y += np.einsum("oc,nchw->nohw", weight[:, :, i, j], patch, optimize=True)
    if bias is not None:
        y += bias[None, :, None, None]
    if residual is not None:
        y += residual
    return y.astype(dt)


# ------------------------------------------------------------------------------------------------ normalization

def group_norm(x: np.ndarray, num_groups: int, weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """Normalize each group of C/G channels of each sample over (C/G, *spatial) with biased variance; then affine."""
    dt, (x, weight, bias) = _inputs("group_norm", x, weight, bias)
    if x.ndim < 2 or num_groups < 1 or x.shape[1] % num_groups:
        _fail("group_norm", f"x must be (N, C, ...) with C divisible by num_groups={num_groups}", x)
    c = x.shape[1]
    for p in (weight, bias):
        if p is not None and p.shape != (c,):
            _fail("group_norm", "weight and bias must be (C,)", x, p)
    g = x.reshape(x.shape[0], num_groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    affine = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(affine)
    if bias is not None:
        y = y + bias.reshape(affine)
    return y.astype(dt)


def group_norm_silu(x: np.ndarray, num_groups: int, weight: np.ndarray | None = None,
                    bias: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """silu(group_norm(x)): the pair every ResNet block runs; one op so a device can fuse it into one pass."""
    dt, (x, weight, bias) = _inputs("group_norm_silu", x, weight, bias)
    return silu(group_norm(x, num_groups, weight, bias, eps)).astype(dt)  # float16: rounded once, at the end


def layer_norm(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
               eps: float = 1e-5) -> np.ndarray:
    """Normalize over the last axis with biased variance; then affine."""
    dt, (x, weight, bias) = _inputs("layer_norm", x, weight, bias)
    for p in (weight, bias):
        if p is not None and p.shape != x.shape[-1:]:
            _fail("layer_norm", "weight and bias must match x's last dimension", x, p)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.astype(dt)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along axis; -inf entries give 0 (a row of only -inf gives NaN, as torch)."""
    dt, (x,) = _inputs("softmax", x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(dt)


# -------------------------------------------------------------------------------------------------- activations

def gelu(x: np.ndarray) -> np.ndarray:
    """x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2, with erf from Python's math library."""
    dt, (x,) = _inputs("gelu", x)
    erf = _erf(x.astype(np.float64) / math.sqrt(2.0)).astype(x.dtype)
    return (0.5 * x * (1.0 + erf)).astype(dt)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    dt, (x,) = _inputs("gelu_tanh", x)
    return (0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))).astype(dt)


def quick_gelu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(1.702 x), CLIP ViT-L's activation."""
    dt, (x,) = _inputs("quick_gelu", x)
    with np.errstate(over="ignore"):  # exp overflows to inf for very negative x: x / inf = -0, the right limit
        return (x / (1.0 + np.exp(-1.702 * x))).astype(dt)


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x)."""
    dt, (x,) = _inputs("silu", x)
    with np.errstate(over="ignore"):  # exp overflows to inf for very negative x: x / inf = -0, the right limit
        return (x / (1.0 + np.exp(-x))).astype(dt)


def geglu(x: np.ndarray) -> np.ndarray:
    """Split the last axis into halves (h, g); h * gelu(g). x (..., 2F) -> (..., F)."""
    dt, (x,) = _inputs("geglu", x)
    if x.ndim < 1 or x.shape[-1] % 2:
        _fail("geglu", "the last dimension must be even", x)
    h, g = np.split(x, 2, axis=-1)
    return (h * gelu(g)).astype(dt)


# ----------------------------------------------------------------------------------------------------- attention

def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, causal: bool = False,
              scale: float | None = None) -> np.ndarray:
    """softmax(Q K^T * scale [+ causal mask]) V per head; q (B, Lq, H*D), k and v (B, Lk, H*D) -> (B, Lq, H*D).

    scale defaults to 1/sqrt(D). The causal mask lets query i see keys j <= i (self-attention, Lq == Lk)."""
    dt, (q, k, v) = _inputs("attention", q, k, v)
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3 or k.shape != v.shape or q.shape[0] != k.shape[0] \
            or q.shape[2] != k.shape[2] or heads < 1 or q.shape[2] % heads:
        _fail("attention", f"expected q (B, Lq, H*D), k = v (B, Lk, H*D) with H={heads} dividing H*D", q, k, v)
    if causal and q.shape[1] != k.shape[1]:
        _fail("attention", "a causal mask needs Lq == Lk", q, k)
    o = np.matmul(attention_weights(q, k, heads, causal, scale), split_heads(v, heads))  # (B, H, Lq, D)
    return merge_heads(o).astype(dt)


def attention_weights(q: np.ndarray, k: np.ndarray, heads: int, causal: bool = False,
                      scale: float | None = None) -> np.ndarray:
    """P = softmax(Q K^T * scale [+ causal mask]) per head, (B, H, Lq, Lk), for attention's (checked) inputs."""
    lq, lk, d = q.shape[1], k.shape[1], q.shape[2] // heads
    s = np.matmul(split_heads(q, heads), split_heads(k, heads).transpose(0, 1, 3, 2)) \
        * (1.0 / math.sqrt(d) if scale is None else scale)
    if causal:
        s = np.where(np.triu(np.ones((lq, lk), dtype=bool), 1), -np.inf, s)
    return softmax(s, axis=-1)


def split_heads(t: np.ndarray, heads: int) -> np.ndarray:
    """(B, L, H*D) -> (B, H, L, D)."""
    b, n, hd = t.shape
    return t.reshape(b, n, heads, hd // heads).transpose(0, 2, 1, 3)


def merge_heads(t: np.ndarray) -> np.ndarray:
    """(B, H, L, D) -> (B, L, H*D)."""
    b, h, n, d = t.shape
    return t.transpose(0, 2, 1, 3).reshape(b, n, h * d)


# -------------------------------------------------------------------------------------------------- embeddings

def timestep_embedding(timesteps: np.ndarray, dim: int, flip_sin_to_cos: bool = True,
                       downscale_freq_shift: float = 0.0, max_period: float = 10000.0) -> np.ndarray:
    """Sinusoids: f_i = max_period^(-i / (dim/2 - shift)), emb = [sin(t f), cos(t f)] (cos first if flipped).

    timesteps (N,), any real dtype; result (N, dim) in float32, or float64 / float16 for float64 / float16
    timesteps (float16 holds every integer timestep up to 2048 exactly; computed in float32)."""
    t = np.asarray(timesteps)
    if t.ndim != 1 or t.dtype.kind not in "iuf" or dim < 1:
        raise ValueError(f"timestep_embedding: expected 1-D real timesteps and dim >= 1 "
                         f"(got shape {t.shape}, dtype {t.dtype}, dim {dim})")
    ct = np.float64 if t.dtype == np.float64 else np.float32
    out = np.float16 if t.dtype == np.float16 else ct  # a float16 model asks with float16 timesteps
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=ct) / (half - downscale_freq_shift))
    args = t.astype(ct)[:, None] * freqs[None, :]
    emb = np.concatenate([np.sin(args), np.cos(args)], axis=-1)
    if flip_sin_to_cos:
        emb = np.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb.astype(out)


def token_embedding(ids: np.ndarray, token_table: np.ndarray, position_table: np.ndarray) -> np.ndarray:
    """token_table[ids] + position_table[:L]; ids (B, L) integers -> (B, L, D)."""
    ids = np.asarray(ids)
    dt, (token_table, position_table) = _inputs("token_embedding", token_table, position_table)
    if ids.dtype.kind not in "iu" or ids.ndim != 2:
        _fail("token_embedding", f"ids must be 2-D integers, got dtype {ids.dtype}", ids)
    if token_table.ndim != 2 or position_table.ndim != 2 or token_table.shape[1] != position_table.shape[1] \
            or ids.shape[1] > position_table.shape[0]:
        _fail("token_embedding", "tables must be (V, D) and (P, D) with P >= L", ids, token_table, position_table)
    if ids.size and (ids.min() < 0 or ids.max() >= token_table.shape[0]):
        raise ValueError(f"token_embedding: token ids must lie in [0, {token_table.shape[0]}), "
                         f"got [{ids.min()}, {ids.max()}]")
    return (token_table[ids] + position_table[None, :ids.shape[1]]).astype(dt)


# ----------------------------------------------------------------------------------------- elementwise and layout

def _broadcast_to_first(op: str, a: np.ndarray, b: np.ndarray) -> None:
    try:
        ok = np.broadcast_shapes(a.shape, b.shape) == a.shape
    except ValueError:
        ok = False
    if not ok:
        _fail(op, "b must broadcast to a's shape", a, b)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Residual add, a + b, with b broadcast to a's shape (a bias, a time embedding)."""
    dt, (a, b) = _inputs("add", a, b)
    _broadcast_to_first("add", a, b)
    return (a + b).astype(dt)


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise product, b broadcast to a's shape."""
    dt, (a, b) = _inputs("mul", a, b)
    _broadcast_to_first("mul", a, b)
    return (a * b).astype(dt)


def concat(xs: list, axis: int = 1) -> np.ndarray:
    """Join arrays along axis (the UNet's skip connections join channels, axis 1)."""
    if not xs:
        raise ValueError("concat: expected at least one array")
    dt, xs = _inputs("concat", *xs)
    if not -xs[0].ndim <= axis < xs[0].ndim:  # a wrapped axis would silently join along the wrong axis
        _fail("concat", f"axis {axis} is out of range for {xs[0].ndim}-D arrays", *xs)
    ax = axis % xs[0].ndim
    if any(x.ndim != xs[0].ndim or x.shape[:ax] + x.shape[ax + 1:] != xs[0].shape[:ax] + xs[0].shape[ax + 1:]
           for x in xs):
        _fail("concat", f"shapes must agree except on axis {axis}", *xs)
    return np.concatenate(xs, axis=ax).astype(dt)


def upsample_nearest2x(x: np.ndarray) -> np.ndarray:
    """Nearest-neighbour 2x upsampling of NCHW: y[..., i, j] = x[..., i // 2, j // 2]."""
    dt, (x,) = _inputs("upsample_nearest2x", x)
    _ndim("upsample_nearest2x", x, 4)
    return x.repeat(2, axis=2).repeat(2, axis=3).astype(dt)


def permute(x: np.ndarray, axes: tuple) -> np.ndarray:
    """Materialized transpose: y = x.transpose(axes), contiguous (NCHW <-> N(HW)C around transformers)."""
    dt, (x,) = _inputs("permute", x)
    if sorted(axes) != list(range(x.ndim)):
        _fail("permute", f"axes {tuple(axes)} is not a permutation of x's axes", x)
    return np.ascontiguousarray(x.transpose(axes)).astype(dt)


def astype(x: np.ndarray, dtype) -> np.ndarray:
    """x in another float dtype (a conversion, not an op of the registry): the pipeline's sampler runs a float16
    model's latents in float32 through it."""
    return x if x.dtype == np.dtype(dtype) else x.astype(dtype)


OPS = ("matmul", "batched_matmul", "linear", "conv2d", "group_norm", "group_norm_silu", "layer_norm", "softmax", "gelu",
       "gelu_tanh", "quick_gelu", "silu", "geglu", "attention", "timestep_embedding", "token_embedding",
       "add", "mul", "concat", "upsample_nearest2x", "permute")
