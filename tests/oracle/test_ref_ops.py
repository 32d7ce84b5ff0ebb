"""Every golden-reference op (reference/ops.py) against the torch functional op it stands for.

One table, one row per op case: a name, the reference call, the torch call, and the input specs. Each row runs
three times:
  float64: torch double on the same inputs, relative L2 <= F64_TOL (only rounding may differ);
  float32: torch float on the same inputs, relative L2 <= F32_TOL;
  float16: the op must return float16 (dtype contract) and lie within F16_TOL of torch float32 evaluated on the
           very same (half-rounded) inputs.
Adding a case is one `C(...)` line. Inputs are fresh standard-normal draws (times `scale`, plus `shift`), seeded
from the case name, so every row is reproducible and rows do not share data. Expected values always come from
torch / diffusers, never from reference.ops.

After the table: hypothesis shape fuzzing of conv2d, group_norm, attention and softmax; timestep_embedding against
diffusers; and the error contract (ValueError naming the op and the shapes).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from numerics import F32_TOL, F64_TOL, rel_l2
from sdcl.reference import ops

torch.set_num_threads(2)

# float16 contract: the op computes in float32 and rounds the result once to half. Half has an 11-bit significand,
# so round-to-nearest moves each normal value by at most u = 2**-11 ~ 4.9e-4 of itself, and the relative L2 error
# of the whole result by at most u. On top comes the float32 arithmetic's own difference from torch (<= F32_TOL).
# Results below half's normal range (6.1e-5) are rounded to a fixed absolute step of 2**-25; that slack is added per
# element in f16_tolerance. An op that computed in half (rounding at every step) would exceed this bound.
F16_UNIT_ROUNDOFF = 2.0 ** -11
F16_SUBNORMAL_STEP = 2.0 ** -25


def f16_tolerance(expected: np.ndarray) -> float:
    norm = float(np.linalg.norm(np.asarray(expected, np.float64)))
    subnormal = F16_SUBNORMAL_STEP * math.sqrt(expected.size) / norm if norm > 0 else 0.0
    return F16_UNIT_ROUNDOFF + F32_TOL + subnormal


# ---------------------------------------------------------------------------------------------------- input specs

@dataclass(frozen=True)
class R:
    """A float input: standard normal * scale + shift; a fraction neg_inf of the entries set to -inf."""
    shape: tuple
    scale: float = 1.0
    shift: float = 0.0
    neg_inf: float = 0.0

    def make(self, rng):
        x = rng.standard_normal(self.shape) * self.scale + self.shift
        if self.neg_inf:
            x[rng.random(self.shape) < self.neg_inf] = -np.inf
        return x


@dataclass(frozen=True)
class Fixed:
    """A float input with given values (hostile hand-written data)."""
    values: tuple

    @property
    def shape(self):
        return np.asarray(self.values).shape

    def make(self, rng):
        return np.array(self.values, dtype=np.float64)


@dataclass(frozen=True)
class Ids:
    """An integer input (token ids) in [0, high); never cast to the float dtype under test."""
    shape: tuple
    high: int

    def make(self, rng):
        return rng.integers(0, self.high, size=self.shape, dtype=np.int64)


def _spec(s):
    return R(s) if isinstance(s, tuple) else s


@dataclass(frozen=True)
class Case:
    name: str
    ref: Callable        # reference.ops call on numpy arrays
    torch_fn: Callable   # torch call on tensors (same positional inputs)
    specs: tuple

    def __repr__(self):
        return self.name


def C(name, ref, torch_fn, *specs):
    return Case(name, ref, torch_fn, tuple(_spec(s) for s in specs))


def _rng(name: str, salt: str = "") -> np.random.Generator:
    return np.random.default_rng(zlib.crc32((name + salt).encode()))


def _inputs(case: Case):
    rng = _rng(case.name)
    return [s.make(rng) for s in case.specs]


def _cast(values, specs, dtype):
    return [v if isinstance(s, Ids) else v.astype(dtype) for v, s in zip(values, specs)]


def _to_torch(arrays):
    return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]


# ------------------------------------------------------------------------------------------- torch-side helpers

def t_conv(x, w, b=None, stride=1, padding=0):
    """torch conv2d; a 4-tuple padding (top, bottom, left, right) goes through F.pad's (left, right, top, bottom)."""
    if isinstance(padding, tuple) and len(padding) == 4:
        top, bottom, left, right = padding
        return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride)
    return F.conv2d(x, w, b, stride, padding)


def t_attention(q, k, v, heads, causal=False, scale=None):
    """(B, L, H*D) -> (B, H, L, D) views, F.scaled_dot_product_attention, and back (the diffusers processor)."""
    b, lq, hd = q.shape
    d = hd // heads
    split = lambda t: t.reshape(b, t.shape[1], heads, d).transpose(1, 2)
    o = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=causal, scale=scale)
    return o.transpose(1, 2).reshape(b, lq, hd)


def t_geglu(x):
    h, g = x.chunk(2, dim=-1)
    return h * F.gelu(g)


def t_token_embedding(ids, tok, pos):
    return F.embedding(ids, tok) + F.embedding(torch.arange(ids.shape[1]), pos)[None]


def t_up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


# onnx's test_softmax_large_number idea: a row of ordinary logits next to a row offset by 1e4, where exp overflows
# unless the max is subtracted first. (Values written here, not taken from onnx.)
LARGE = ((0.0, 1.0, 2.0, 3.0), (10000.0, 10001.0, 10002.0, 10003.0))
LARGE_NEG = ((-10000.0, -10001.0, -10002.0, -10003.0), (-1e4, 1e4, 0.0, -0.5))
RAMP = (tuple(np.linspace(-100.0, 100.0, 101)),)  # activations far into both tails (overflowing exp(-x))

# --------------------------------------------------------------------------------------------------- the table

CASES = [
    # matmul / batched_matmul
    C("matmul/small", ops.matmul, torch.matmul, (7, 13), (13, 5)),
    C("matmul/sd_proj", ops.matmul, torch.matmul, (64, 320), (320, 640)),
    C("matmul/vector", ops.matmul, torch.matmul, (1, 9), (9, 1)),
    C("batched_matmul/small", ops.batched_matmul, torch.bmm, (3, 7, 13), (3, 13, 5)),
    C("batched_matmul/attn_scores", ops.batched_matmul, torch.bmm, (8, 64, 40), (8, 40, 77)),
    # linear
    C("linear/2d_bias", ops.linear, F.linear, (6, 11), (4, 11), (4,)),
    C("linear/2d_nobias", ops.linear, F.linear, (6, 11), (4, 11)),
    C("linear/3d_bias", ops.linear, F.linear, (2, 16, 320), (1280, 320), (1280,)),
    C("linear/3d_nobias_to_q", ops.linear, F.linear, (2, 77, 96), (320, 96)),
    C("linear/1d", ops.linear, F.linear, (5,), (3, 5), (3,)),
    # conv2d: generic
    C("conv2d/3x3_s1_p0", ops.conv2d, F.conv2d, (2, 3, 9, 8), (5, 3, 3, 3), (5,)),
    C("conv2d/3x3_s1_p1_bias", lambda x, w, b: ops.conv2d(x, w, b, 1, 1),
      lambda x, w, b: F.conv2d(x, w, b, 1, 1), (2, 4, 9, 9), (8, 4, 3, 3), (8,)),
    C("conv2d/3x3_s1_p1_nobias", lambda x, w: ops.conv2d(x, w, None, 1, 1),
      lambda x, w: F.conv2d(x, w, None, 1, 1), (1, 4, 7, 10), (6, 4, 3, 3)),
    C("conv2d/3x3_s2_p1", lambda x, w, b: ops.conv2d(x, w, b, 2, 1),
      lambda x, w, b: F.conv2d(x, w, b, 2, 1), (2, 3, 9, 10), (4, 3, 3, 3), (4,)),
    C("conv2d/1x1", ops.conv2d, F.conv2d, (2, 6, 5, 7), (3, 6, 1, 1), (3,)),
    C("conv2d/rect_kernel_pair_pad", lambda x, w, b: ops.conv2d(x, w, b, (1, 2), (2, 1)),
      lambda x, w, b: F.conv2d(x, w, b, (1, 2), (2, 1)), (1, 2, 8, 9), (3, 2, 3, 2), (3,)),
    C("conv2d/asym_pad_t1b2l0r3", lambda x, w, b: ops.conv2d(x, w, b, 1, (1, 2, 0, 3)),
      lambda x, w, b: t_conv(x, w, b, 1, (1, 2, 0, 3)), (2, 3, 6, 7), (4, 3, 3, 3), (4,)),
    C("conv2d/asym_pad_s2", lambda x, w: ops.conv2d(x, w, None, 2, (0, 2, 1, 0)),
      lambda x, w: t_conv(x, w, None, 2, (0, 2, 1, 0)), (1, 3, 7, 8), (2, 3, 3, 3)),
    # conv2d: Stable Diffusion layers at reduced spatial size
    C("conv2d/sd_unet_conv_in_4to320", lambda x, w, b: ops.conv2d(x, w, b, 1, 1),
      lambda x, w, b: F.conv2d(x, w, b, 1, 1), (1, 4, 8, 8), (320, 4, 3, 3), (320,)),
    C("conv2d/sd_unet_downsample_320_s2", lambda x, w, b: ops.conv2d(x, w, b, 2, 1),
      lambda x, w, b: F.conv2d(x, w, b, 2, 1), (1, 320, 8, 8), (320, 320, 3, 3), (320,)),
    C("conv2d/sd_unet_resnet_320to640", lambda x, w, b: ops.conv2d(x, w, b, 1, 1),
      lambda x, w, b: F.conv2d(x, w, b, 1, 1), (1, 320, 4, 4), (640, 320, 3, 3), (640,)),
    C("conv2d/sd_unet_shortcut_1x1_320to640", ops.conv2d, F.conv2d, (1, 320, 4, 4), (640, 320, 1, 1), (640,)),
    C("conv2d/sd_unet_conv_out_320to4", lambda x, w, b: ops.conv2d(x, w, b, 1, 1),
      lambda x, w, b: F.conv2d(x, w, b, 1, 1), (1, 320, 8, 8), (4, 320, 3, 3), (4,)),
    C("conv2d/sd_vae_downsample_pad0101_s2", lambda x, w, b: ops.conv2d(x, w, b, 2, (0, 1, 0, 1)),
      lambda x, w, b: t_conv(x, w, b, 2, (0, 1, 0, 1)), (1, 128, 8, 8), (128, 128, 3, 3), (128,)),
    C("conv2d/sd_vae_decoder_conv_in_4to512", lambda x, w, b: ops.conv2d(x, w, b, 1, 1),
      lambda x, w, b: F.conv2d(x, w, b, 1, 1), (1, 4, 4, 4), (512, 4, 3, 3), (512,)),
    # group_norm
    C("group_norm/4d_g32_affine", lambda x, w, b: ops.group_norm(x, 32, w, b),
      lambda x, w, b: F.group_norm(x, 32, w, b), (2, 64, 6, 6), (64,), (64,)),
    C("group_norm/4d_g4_noaffine", lambda x: ops.group_norm(x, 4), lambda x: F.group_norm(x, 4), (2, 12, 5, 7)),
    C("group_norm/weight_only", lambda x, w: ops.group_norm(x, 3, w), lambda x, w: F.group_norm(x, 3, w),
      (2, 9, 4, 4), (9,)),
    C("group_norm/g1", lambda x, w, b: ops.group_norm(x, 1, w, b), lambda x, w, b: F.group_norm(x, 1, w, b),
      (3, 6, 4, 5), (6,), (6,)),
    C("group_norm/g_eq_c", lambda x, w, b: ops.group_norm(x, 8, w, b), lambda x, w, b: F.group_norm(x, 8, w, b),
      (2, 8, 3, 3), (8,), (8,)),
    C("group_norm/3d", lambda x, w, b: ops.group_norm(x, 4, w, b), lambda x, w, b: F.group_norm(x, 4, w, b),
      (2, 16, 10), (16,), (16,)),
    C("group_norm/vae_eps1e-6", lambda x, w, b: ops.group_norm(x, 32, w, b, 1e-6),
      lambda x, w, b: F.group_norm(x, 32, w, b, 1e-6), (1, 128, 8, 8), (128,), (128,)),
    C("group_norm/eps_dominates", lambda x: ops.group_norm(x, 2, eps=0.1),  # var ~1e-4 << eps: eps placement shows
      lambda x: F.group_norm(x, 2, eps=0.1), R((2, 4, 5, 5), scale=1e-2)),
    # mean 100 >> std 1: a one-pass E[x^2] - E[x]^2 variance cancels in float32; the problem's own conditioning
    # (~6e-8 * 100) stays under F32_TOL (a mean of 300 does not: torch itself then errs by ~8e-6 from float64)
    C("group_norm/large_mean", lambda x, w, b: ops.group_norm(x, 4, w, b),
      lambda x, w, b: F.group_norm(x, 4, w, b), R((2, 8, 6, 6), shift=100.0), (8,), (8,)),
    # group_norm_silu (the ResNet block's fused pair)
    C("group_norm_silu/4d_g32", lambda x, w, b: ops.group_norm_silu(x, 32, w, b),
      lambda x, w, b: F.silu(F.group_norm(x, 32, w, b)), (2, 64, 6, 6), (64,), (64,)),
    C("group_norm_silu/vae_eps1e-6", lambda x, w, b: ops.group_norm_silu(x, 32, w, b, 1e-6),
      lambda x, w, b: F.silu(F.group_norm(x, 32, w, b, 1e-6)), (1, 128, 4, 4), (128,), (128,)),
    C("group_norm_silu/noaffine_3d", lambda x: ops.group_norm_silu(x, 4),
      lambda x: F.silu(F.group_norm(x, 4)), (2, 12, 9)),
    # layer_norm
    C("layer_norm/affine", lambda x, w, b: ops.layer_norm(x, w, b),
      lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b), (2, 77, 64), (64,), (64,)),
    C("layer_norm/noaffine_2d", ops.layer_norm, lambda x: F.layer_norm(x, (x.shape[-1],)), (9, 33)),
    C("layer_norm/eps1e-6", lambda x, w, b: ops.layer_norm(x, w, b, 1e-6),
      lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, 1e-6), (2, 16, 320), (320,), (320,)),
    C("layer_norm/large_mean", lambda x, w, b: ops.layer_norm(x, w, b),
      lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b), R((4, 48), shift=100.0), (48,), (48,)),
    # softmax
    C("softmax/last", ops.softmax, lambda x: F.softmax(x, -1), (2, 8, 77)),
    C("softmax/axis0", lambda x: ops.softmax(x, 0), lambda x: F.softmax(x, 0), (5, 4, 3)),
    C("softmax/axis1", lambda x: ops.softmax(x, 1), lambda x: F.softmax(x, 1), (3, 6, 4)),
    C("softmax/axis-2", lambda x: ops.softmax(x, -2), lambda x: F.softmax(x, -2), (2, 7, 5, 3)),
    C("softmax/large_number", ops.softmax, lambda x: F.softmax(x, -1), Fixed(LARGE)),
    C("softmax/large_negative_mixed", ops.softmax, lambda x: F.softmax(x, -1), Fixed(LARGE_NEG)),
    C("softmax/huge_random_1e4", ops.softmax, lambda x: F.softmax(x, -1), R((6, 10), scale=1e4)),
    C("softmax/neg_inf_entries", ops.softmax, lambda x: F.softmax(x, -1),
      Fixed(((0.5, -np.inf, 1.0, -np.inf), (-np.inf, -np.inf, -np.inf, 2.0), (3.0, 1.0, -2.0, -np.inf)))),
    C("softmax/neg_inf_random", ops.softmax, lambda x: F.softmax(x, -1), R((4, 64), neg_inf=0.3)),
    # activations
    C("gelu/normal", ops.gelu, F.gelu, R((4, 300), scale=3.0)),
    C("gelu/tails", ops.gelu, F.gelu, Fixed(RAMP)),
    C("gelu_tanh/normal", ops.gelu_tanh, lambda x: F.gelu(x, approximate="tanh"), R((4, 300), scale=3.0)),
    C("gelu_tanh/tails", ops.gelu_tanh, lambda x: F.gelu(x, approximate="tanh"), Fixed(RAMP)),
    C("quick_gelu/normal", ops.quick_gelu, lambda x: x * torch.sigmoid(1.702 * x), R((4, 300), scale=3.0)),
    C("quick_gelu/tails", ops.quick_gelu, lambda x: x * torch.sigmoid(1.702 * x), Fixed(RAMP)),
    C("silu/normal", ops.silu, F.silu, R((2, 64, 4, 4), scale=3.0)),
    C("silu/tails", ops.silu, F.silu, Fixed(RAMP)),
    C("geglu/3d", ops.geglu, t_geglu, R((2, 16, 2 * 160), scale=2.0)),
    C("geglu/2d", ops.geglu, t_geglu, (5, 6)),
    # upsample
    C("upsample_nearest2x/small", ops.upsample_nearest2x, t_up, (2, 3, 4, 5)),
    C("upsample_nearest2x/sd", ops.upsample_nearest2x, t_up, (1, 64, 8, 8)),
    # attention
    C("attention/1head", lambda q, k, v: ops.attention(q, k, v, 1),
      lambda q, k, v: t_attention(q, k, v, 1), (2, 9, 16), (2, 9, 16), (2, 9, 16)),
    C("attention/8heads_self_sd", lambda q, k, v: ops.attention(q, k, v, 8),
      lambda q, k, v: t_attention(q, k, v, 8), (1, 64, 320), (1, 64, 320), (1, 64, 320)),
    C("attention/cross_77keys", lambda q, k, v: ops.attention(q, k, v, 8),
      lambda q, k, v: t_attention(q, k, v, 8), (2, 64, 320), (2, 77, 320), (2, 77, 320)),
    C("attention/causal_clip", lambda q, k, v: ops.attention(q, k, v, 4, causal=True),
      lambda q, k, v: t_attention(q, k, v, 4, causal=True), (2, 77, 64), (2, 77, 64), (2, 77, 64)),
    C("attention/one_key", lambda q, k, v: ops.attention(q, k, v, 2),
      lambda q, k, v: t_attention(q, k, v, 2), (1, 5, 8), (1, 1, 8), (1, 1, 8)),
    C("attention/custom_scale", lambda q, k, v: ops.attention(q, k, v, 2, scale=0.3),
      lambda q, k, v: t_attention(q, k, v, 2, scale=0.3), (1, 6, 12), (1, 10, 12), (1, 10, 12)),
    C("attention/peaky_logits", lambda q, k, v: ops.attention(q, k, v, 2),
      lambda q, k, v: t_attention(q, k, v, 2), R((1, 7, 16), scale=6.0), R((1, 11, 16), scale=6.0), (1, 11, 16)),
    # embeddings
    C("token_embedding/clip_77", ops.token_embedding, t_token_embedding, Ids((2, 77), 100), (100, 32), (77, 32)),
    C("token_embedding/short_seq", ops.token_embedding, t_token_embedding, Ids((3, 5), 11), (11, 8), (77, 8)),
    # elementwise and layout
    C("add/same_shape", ops.add, torch.add, (2, 8, 4, 4), (2, 8, 4, 4)),
    C("add/bias_c11", ops.add, torch.add, (2, 8, 4, 4), (8, 1, 1)),
    C("add/temb_nc11", ops.add, torch.add, (2, 8, 4, 4), (2, 8, 1, 1)),
    C("add/last_axis", ops.add, torch.add, (2, 7, 16), (16,)),
    C("mul/same_shape", ops.mul, torch.mul, (3, 5, 6), (3, 5, 6)),
    C("mul/broadcast_nc11", ops.mul, torch.mul, (2, 8, 4, 4), (2, 8, 1, 1)),
    C("mul/broadcast_scalar_like", ops.mul, torch.mul, (4, 5), (1,)),
    C("mul/broadcast_middle", ops.mul, torch.mul, (2, 3, 4), (2, 1, 4)),
    C("concat/axis1_skip", lambda a, b: ops.concat([a, b], 1), lambda a, b: torch.cat([a, b], 1),
      (2, 8, 4, 4), (2, 4, 4, 4)),
    C("concat/axis-1_three", lambda a, b, c: ops.concat([a, b, c], -1), lambda a, b, c: torch.cat([a, b, c], -1),
      (2, 3, 4), (2, 3, 1), (2, 3, 5)),
    C("concat/axis0", lambda a, b: ops.concat([a, b], 0), lambda a, b: torch.cat([a, b], 0), (1, 4, 3), (2, 4, 3)),
    C("concat/single", lambda a: ops.concat([a], 1), lambda a: torch.cat([a], 1), (2, 3, 4)),
    C("permute/nchw_to_nhwc", lambda x: ops.permute(x, (0, 2, 3, 1)), lambda x: x.permute(0, 2, 3, 1),
      (2, 5, 3, 4)),
    C("permute/nhwc_to_nchw", lambda x: ops.permute(x, (0, 3, 1, 2)), lambda x: x.permute(0, 3, 1, 2),
      (2, 3, 4, 5)),
    C("permute/heads_split", lambda x: ops.permute(x, (0, 2, 1, 3)), lambda x: x.permute(0, 2, 1, 3),
      (2, 7, 4, 6)),
    C("permute/2d", lambda x: ops.permute(x, (1, 0)), lambda x: x.permute(1, 0), (5, 9)),
]

_ids = [c.name for c in CASES]
assert len(set(_ids)) == len(_ids), "duplicate case names"


def _check(case: Case, dtype) -> None:
    values = _inputs(case)
    arrays = _cast(values, case.specs, dtype)
    if dtype == np.float16:
        got = case.ref(*arrays)
        assert isinstance(got, np.ndarray) and got.dtype == np.float16, f"{case.name}: float16 in, {got.dtype} out"
        # torch float32 on the same half-rounded inputs
        want = case.torch_fn(*_to_torch(_cast(arrays, case.specs, np.float32))).numpy()
        limit = f16_tolerance(want)
    else:
        got = case.ref(*arrays)
        assert isinstance(got, np.ndarray) and got.dtype == dtype, f"{case.name}: {dtype} in, {got.dtype} out"
        want = case.torch_fn(*_to_torch(arrays)).numpy()
        assert want.dtype == dtype
        limit = F64_TOL if dtype == np.float64 else F32_TOL
    assert got.shape == want.shape, f"{case.name}: shape {got.shape}, torch {want.shape}"
    assert np.all(np.isfinite(got) == np.isfinite(want)), f"{case.name}: non-finite entries differ from torch"
    err = rel_l2(got, want)
    assert err <= limit, f"{case.name} {np.dtype(dtype).name}: rel L2 {err:.3e} > {limit:.1e}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_float64(case):
    _check(case, np.float64)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_float32(case):
    _check(case, np.float32)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_float16(case):
    _check(case, np.float16)


def test_every_op_has_cases():
    covered = {c.name.split("/")[0] for c in CASES} | {"timestep_embedding"}  # that one: test_timestep_embedding
    missing = set(ops.OPS) - covered
    assert not missing, f"ops without a torch comparison: {sorted(missing)}"
    assert covered <= set(ops.OPS), f"case names that are no op: {sorted(covered - set(ops.OPS))}"


def test_permute_result_is_contiguous():
    x = _rng("permute/contig").standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = ops.permute(x, (0, 2, 3, 1))
    assert y.flags["C_CONTIGUOUS"] and y.shape == (2, 4, 5, 3)


def test_softmax_all_neg_inf_row_is_nan_like_torch():
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, 1.0, -np.inf]])
    for dt in (np.float64, np.float32):
        with np.errstate(invalid="ignore"):
            got = ops.softmax(x.astype(dt))
        want = F.softmax(torch.from_numpy(x.astype(dt)), -1).numpy()
        assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(want[0]).all()
        assert rel_l2(got[1], want[1]) <= (F64_TOL if dt == np.float64 else F32_TOL)


# ------------------------------------------------------------------------------------------ hypothesis fuzzing

FUZZ = settings(max_examples=30, derandomize=True, deadline=None, database=None)


def _both_dtypes(ref_call, torch_call, arrays64, what):
    for dt, limit in ((np.float64, F64_TOL), (np.float32, F32_TOL)):
        xs = [a.astype(dt) for a in arrays64]
        got = ref_call(*xs)
        want = torch_call(*_to_torch(xs)).numpy()
        assert got.dtype == dt and got.shape == want.shape, (what, got.shape, want.shape)
        err = rel_l2(got, want)
        assert err <= limit, f"{what} {np.dtype(dt).name}: rel L2 {err:.3e}"


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.sampled_from([1, 2]), st.tuples(st.integers(1, 2), st.integers(1, 2))))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.tuples(*[st.integers(0, 2)] * 4)))
    p = padding if isinstance(padding, tuple) else (padding, padding)
    pad_h, pad_w = (2 * p[0], 2 * p[1]) if len(p) == 2 else (p[0] + p[1], p[2] + p[3])
    h = draw(st.integers(max(1, kh - pad_h), 7))
    w = draw(st.integers(max(1, kw - pad_w), 7))
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    bias = draw(st.booleans())
    return (n, c, h, w), (o, c, kh, kw), bias, stride, padding, draw(st.integers(0, 2 ** 31))


@FUZZ
@given(conv_cases())
def test_fuzz_conv2d(cfg):
    xs, ws, bias, stride, padding, seed = cfg
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)] + ([rng.standard_normal(ws[0])] if bias else [])
    _both_dtypes(lambda x, w, b=None: ops.conv2d(x, w, b, stride, padding),
                 lambda x, w, b=None: t_conv(x, w, b, stride, padding), arrays, cfg)


@FUZZ
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3),
       st.lists(st.integers(1, 5), min_size=0, max_size=2), st.booleans(),
       st.sampled_from([1e-5, 1e-6, 1e-2]), st.integers(0, 2 ** 31))
def test_fuzz_group_norm(n, groups, per_group, spatial, affine, eps, seed):
    if per_group * math.prod(spatial) < 2:  # torch refuses a group of one value (its variance is undefined)
        spatial = spatial + [2]
    rng = np.random.default_rng(seed)
    c = groups * per_group
    arrays = [rng.standard_normal((n, c, *spatial)) * rng.uniform(0.1, 3) + rng.uniform(-5, 5)]
    if affine:
        arrays += [rng.standard_normal(c), rng.standard_normal(c)]
    _both_dtypes(lambda x, w=None, b=None: ops.group_norm(x, groups, w, b, eps),
                 lambda x, w=None, b=None: F.group_norm(x, groups, w, b, eps), arrays,
                 (n, c, spatial, groups, affine, eps))


@FUZZ
@given(st.integers(1, 2), st.integers(1, 4), st.integers(1, 8), st.integers(1, 12), st.integers(1, 12),
       st.booleans(), st.integers(0, 2 ** 31))
def test_fuzz_attention(b, heads, d, lq, lk, causal, seed):
    if causal:
        lk = lq
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((b, lq, heads * d)), rng.standard_normal((b, lk, heads * d)),
              rng.standard_normal((b, lk, heads * d))]
    _both_dtypes(lambda q, k, v: ops.attention(q, k, v, heads, causal),
                 lambda q, k, v: t_attention(q, k, v, heads, causal), arrays, (b, heads, d, lq, lk, causal))


@FUZZ
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.data(), st.floats(0.1, 1e3), st.integers(0, 2 ** 31))
def test_fuzz_softmax(shape, data, scale, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    _both_dtypes(lambda x: ops.softmax(x, axis), lambda x: F.softmax(x, axis), [x], (shape, axis, scale))


# ------------------------------------------------------------------------------------------ timestep_embedding

def t_timestep_embedding_f64(t, dim, flip, shift, max_period=10000.0):
    """diffusers' get_timestep_embedding pinned to float32; the same formula in torch float64, for the f64 check.

    Anchored to diffusers by test_timestep_float64_oracle_matches_diffusers (bitwise equal when run in float32)."""
    return _t_timestep(t, dim, flip, shift, max_period, torch.float64)


def _t_timestep(t, dim, flip, shift, max_period, dtype):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype) / (half - shift))
    args = t[:, None].to(dtype) * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], -1)
    if flip:
        emb = torch.cat([emb[:, half:], emb[:, :half]], -1)
    return F.pad(emb, (0, dim % 2))


TIMESTEPS = np.array([0, 1, 7, 250, 500.5, 999])
TS_CASES = [(dim, flip, shift) for dim in (320, 33, 8, 1) for flip in (True, False) for shift in (0, 1)]


@pytest.mark.parametrize("dim,flip,shift", TS_CASES, ids=[f"dim{d}_flip{int(f)}_shift{s}" for d, f, s in TS_CASES])
def test_timestep_embedding(dim, flip, shift):
    from diffusers.models.embeddings import get_timestep_embedding

    # float32 against diffusers itself
    t32 = TIMESTEPS.astype(np.float32)
    got32 = ops.timestep_embedding(t32, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift)
    want32 = get_timestep_embedding(torch.from_numpy(t32), dim, flip_sin_to_cos=flip,
                                    downscale_freq_shift=shift).numpy()
    assert got32.dtype == np.float32 and got32.shape == want32.shape == (len(TIMESTEPS), dim)
    # sin/cos of arguments up to ~1000 in float32: an ulp of the argument (6e-5) is the whole error budget, so
    # agreement is compared absolutely; the L2 check bounds it overall.
    assert np.max(np.abs(got32 - want32)) <= 2e-4
    assert rel_l2(got32, want32) <= 3 * F32_TOL
    # integer timesteps (the scheduler's) give the same float32 embedding
    gotint = ops.timestep_embedding(TIMESTEPS.astype(np.int64)[TIMESTEPS % 1 == 0], dim, flip, shift)
    assert gotint.dtype == np.float32
    np.testing.assert_array_equal(gotint, got32[TIMESTEPS % 1 == 0])
    # float64
    got64 = ops.timestep_embedding(TIMESTEPS, dim, flip, shift)
    want64 = t_timestep_embedding_f64(torch.from_numpy(TIMESTEPS), dim, flip, shift).numpy()
    assert got64.dtype == np.float64
    assert rel_l2(got64, want64) <= F64_TOL
    # float16 timesteps (a float16 model's): computed in float32 (sinusoids of t ~ 1000 need float32 arguments),
    # returned in float16: one rounding of values in [-1, 1] adds at most 2^-11 ~ 4.9e-4
    t16 = TIMESTEPS.astype(np.float16)
    got16 = ops.timestep_embedding(t16, dim, flip, shift)
    assert got16.dtype == np.float16
    want16 = get_timestep_embedding(torch.from_numpy(t16.astype(np.float32)), dim, flip, shift).numpy()
    assert np.max(np.abs(got16.astype(np.float32) - want16)) <= 2e-4 + 2.0 ** -11


def test_timestep_embedding_other_max_period():
    t = np.array([3.0, 40.0, 999.0])
    got = ops.timestep_embedding(t, 16, True, 1, max_period=100.0)
    want = t_timestep_embedding_f64(torch.from_numpy(t), 16, True, 1, max_period=100.0).numpy()
    assert rel_l2(got, want) <= F64_TOL


@pytest.mark.parametrize("dim,flip,shift", [(320, True, 0), (33, False, 1)])
def test_timestep_float64_oracle_matches_diffusers(dim, flip, shift):
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.from_numpy(TIMESTEPS.astype(np.float32))
    mine = _t_timestep(t, dim, flip, shift, 10000.0, torch.float32)
    theirs = get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift)
    assert torch.equal(mine, theirs)


# ------------------------------------------------------------------------------------------------ error contract

def _f(*shape, dt=np.float32):
    return np.zeros(shape, dtype=dt)


# (id, call, strings the message must contain besides the op name)
ERRORS = [
    ("matmul/k_mismatch", lambda: ops.matmul(_f(3, 4), _f(5, 2)), ["(3, 4)", "(5, 2)"]),
    ("matmul/3d", lambda: ops.matmul(_f(2, 3, 4), _f(4, 2)), ["(2, 3, 4)", "(4, 2)"]),
    ("batched_matmul/batch_mismatch", lambda: ops.batched_matmul(_f(2, 3, 4), _f(3, 4, 5)),
     ["(2, 3, 4)", "(3, 4, 5)"]),
    ("linear/in_dim_mismatch", lambda: ops.linear(_f(2, 5), _f(3, 4)), ["(2, 5)", "(3, 4)"]),
    ("linear/bias_shape", lambda: ops.linear(_f(2, 4), _f(3, 4), _f(4)), ["(3, 4)", "(4,)"]),
    ("conv2d/channel_mismatch", lambda: ops.conv2d(_f(1, 3, 8, 8), _f(4, 5, 3, 3)),
     ["(1, 3, 8, 8)", "(4, 5, 3, 3)"]),
    ("conv2d/x_not_4d", lambda: ops.conv2d(_f(3, 8, 8), _f(4, 3, 3, 3)), ["(3, 8, 8)"]),
    ("conv2d/bias_shape", lambda: ops.conv2d(_f(1, 3, 8, 8), _f(4, 3, 3, 3), _f(3)), ["(4, 3, 3, 3)", "(3,)"]),
    ("conv2d/kernel_too_big", lambda: ops.conv2d(_f(1, 3, 2, 2), _f(4, 3, 3, 3)), ["(4, 3, 3, 3)"]),
    ("group_norm/not_divisible", lambda: ops.group_norm(_f(2, 6, 4, 4), 4), ["(2, 6, 4, 4)", "4"]),
    ("group_norm/weight_shape", lambda: ops.group_norm(_f(2, 6, 4, 4), 3, _f(4)), ["(2, 6, 4, 4)", "(4,)"]),
    ("layer_norm/weight_shape", lambda: ops.layer_norm(_f(2, 7), _f(6)), ["(2, 7)", "(6,)"]),
    ("attention/heads_not_dividing", lambda: ops.attention(_f(1, 4, 10), _f(1, 4, 10), _f(1, 4, 10), 3),
     ["(1, 4, 10)", "3"]),
    ("attention/k_v_mismatch", lambda: ops.attention(_f(1, 4, 8), _f(1, 5, 8), _f(1, 6, 8), 2),
     ["(1, 5, 8)", "(1, 6, 8)"]),
    ("attention/width_mismatch", lambda: ops.attention(_f(1, 4, 8), _f(1, 5, 6), _f(1, 5, 6), 2),
     ["(1, 4, 8)", "(1, 5, 6)"]),
    ("attention/causal_cross", lambda: ops.attention(_f(1, 4, 8), _f(1, 5, 8), _f(1, 5, 8), 2, causal=True),
     ["(1, 4, 8)", "(1, 5, 8)"]),
    ("add/int_dtype", lambda: ops.add(np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64)),
     ["int64", "(2, 3)"]),
    ("softmax/int_dtype", lambda: ops.softmax(np.zeros((4, 5), np.int32)), ["int32", "(4, 5)"]),
    ("add/mixed_dtypes", lambda: ops.add(_f(2, 3), _f(2, 3, dt=np.float64)), ["float32", "float64", "(2, 3)"]),
    ("linear/mixed_dtypes", lambda: ops.linear(_f(2, 4), _f(3, 4, dt=np.float16)), ["float32", "float16", "(3, 4)"]),
    ("add/not_broadcastable", lambda: ops.add(_f(2, 3), _f(2, 4)), ["(2, 3)", "(2, 4)"]),
    ("mul/b_larger_than_a", lambda: ops.mul(_f(3,), _f(2, 3)), ["(3,)", "(2, 3)"]),
    ("concat/mismatch", lambda: ops.concat([_f(1, 2, 3, 3), _f(1, 2, 4, 3)], 1), ["(1, 2, 3, 3)", "(1, 2, 4, 3)"]),
    ("concat/ndim_mismatch", lambda: ops.concat([_f(2, 3), _f(2, 3, 1)], 1), ["(2, 3)", "(2, 3, 1)"]),
    ("concat/axis_out_of_range", lambda: ops.concat([_f(1, 2, 3, 3), _f(1, 2, 3, 3)], 5), ["(1, 2, 3, 3)", "5"]),
    ("permute/repeated_axis", lambda: ops.permute(_f(2, 3, 4), (0, 1, 1)), ["(2, 3, 4)", "(0, 1, 1)"]),
    ("permute/wrong_length", lambda: ops.permute(_f(2, 3, 4), (1, 0)), ["(2, 3, 4)", "(1, 0)"]),
    ("upsample_nearest2x/not_4d", lambda: ops.upsample_nearest2x(_f(3, 4, 4)), ["(3, 4, 4)"]),
    ("geglu/odd_width", lambda: ops.geglu(_f(2, 5)), ["(2, 5)"]),
    ("token_embedding/id_too_large", lambda: ops.token_embedding(np.array([[0, 10]]), _f(10, 4), _f(8, 4)),
     ["10"]),
    ("token_embedding/negative_id", lambda: ops.token_embedding(np.array([[-1, 3]]), _f(10, 4), _f(8, 4)),
     ["-1"]),
    ("token_embedding/float_ids", lambda: ops.token_embedding(np.zeros((1, 3)), _f(10, 4), _f(8, 4)),
     ["float64", "(1, 3)"]),
    ("token_embedding/too_long", lambda: ops.token_embedding(np.zeros((1, 9), np.int64), _f(10, 4), _f(8, 4)),
     ["(1, 9)", "(8, 4)"]),
    ("timestep_embedding/2d", lambda: ops.timestep_embedding(np.zeros((2, 1)), 8), ["(2, 1)"]),
]


@pytest.mark.parametrize("call,needles", [(c, n) for _, c, n in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_contract(request, call, needles):
    op = request.node.callspec.id.split("/")[0]
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(op + ":"), f"message does not name the op: {msg!r}"
    for n in needles:
        assert n in msg, f"{n!r} missing from {msg!r}"
