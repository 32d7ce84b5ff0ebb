"""Registry rows: linear algebra (matmul, batched_matmul, linear, conv2d) and attention.

Shapes named sd15_* / sd21_* are the real SD 1.5 / SD 2.1-base shapes at a 512x512 image (64x64 latent), batch 2
(classifier-free guidance); the VAE decodes one image.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from conformance.registry import Case, OpSpec, Tolerance, Variant
from conformance.strategies import dim, randn, seeds
from reference import ops as R

# A length-K dot product summed in order: each addition rounds the running sum s_k (|s_k| ~ sqrt(k) for zero-mean
# terms), so the error is a random walk of std ~ eps * K / sqrt(6), while the outputs reach max|ref| ~ 4 sqrt(K)
# (unit inputs, ~1e5 outputs): error / max|ref| ~ 0.1 sqrt(K) eps per element, and ~4.5x that for the largest of
# ~1e5 elements. For K up to 23040 (SD's 3x3 conv over the 2560 concatenated channels of up_blocks.0) that is
# 5e-6 in float32 (measured on PoCL: 5.4e-6) and 1e-14 in float64; the worst-case bound K eps sum|terms| is far
# beyond what rounding does in practice. The bound is absolute (atol * max|ref|, rtol 0) because the error
# follows the row's magnitude, not the element's (an output near 0 from cancellation keeps it).
_DOT_TOL = {
    "float32": Tolerance(0.0, 2e-5, "length-K dot product: rounding random walk ~0.1 sqrt(K) eps of max|ref|, "
                                    "x4.5 for the largest of 1e5 outputs: 5e-6 at K = 23040; 4x margin"),
    "float64": Tolerance(0.0, 4e-14, "length-K dot product, as float32 with eps = 2^-53: 1e-14 at K = 23040; "
                                     "4x margin"),
}

# Attention: scores s = q.k * scale are D-term dot products (error ~ sqrt(D) eps |s|-scale, passed by exp to the
# weights p_j as relative error); the output sums Lk terms p_j v_j / l with weights <= 1, so its rounding is
# a random walk of std ~ sqrt(Lk) eps max|v|, over outputs that, for diffuse attention, are only ~max|v|/sqrt(Lk)
# large. Relative to max|ref| both parts stay below ~Lk^(1/2) * 8 eps: 4e-5 / 8e-14 cover Lk <= 4096 (SD's
# self-attention at 64x64 latents) with margin.
_ATTN_TOL = {
    "float32": Tolerance(0.0, 4e-5, "scores: D-term dots, exp; output: Lk-term weighted sum of v, diffuse "
                                    "attention has max|ref| ~ max|v|/sqrt(Lk): ~8 sqrt(Lk) eps, Lk <= 4096"),
    "float64": Tolerance(0.0, 8e-14, "as float32 with eps = 2^-53: ~8 sqrt(Lk) eps of max|ref|, Lk <= 4096"),
}


def _io_bytes(case: Case, out_elems: int) -> int:
    """Read every input array once, write the output once (itemsize of the first input)."""
    arrays = case.arrays()
    return sum(a.nbytes for a in arrays) + out_elems * arrays[0].itemsize


# -------------------------------------------------------------------------------------------------- matmul

@st.composite
def _matmul_cases(draw):
    m, k, n = draw(dim(65)), draw(dim(129)), draw(dim(65))
    return Case("random", tuple(randn(draw(seeds()), (m, k), (k, n))))


def _matmul_sd():
    return [Case("sd21_attn_out_proj_l0_one_image", tuple(randn(0, (4096, 320), (320, 320)))),
            Case("sd21_text_proj", tuple(randn(1, (77, 1024), (1024, 1024))))]


def _matmul_flops(c: Case) -> int:
    (m, k), n = c.args[0].shape, c.args[1].shape[1]
    return 2 * m * k * n


# ------------------------------------------------------------------------------------------ batched_matmul

@st.composite
def _bmm_cases(draw):
    b, m, k, n = draw(dim(5)), draw(dim(33)), draw(dim(65)), draw(dim(33))
    return Case("random", tuple(randn(draw(seeds()), (b, m, k), (b, k, n))))


def _bmm_sd():
    # per-head attention products of SD 2.1 cross-attention at 64x64: (B*H, Lq, D) @ (B*H, D, Lk), then P @ V
    return [Case("sd21_cross_scores_l0", tuple(randn(0, (10, 4096, 64), (10, 64, 77)))),
            Case("sd21_cross_pv_l0", tuple(randn(1, (10, 4096, 77), (10, 77, 64)))),
            Case("sd21_self_scores_l3", tuple(randn(2, (40, 64, 64), (40, 64, 64))))]


def _bmm_flops(c: Case) -> int:
    (b, m, k), n = c.args[0].shape, c.args[1].shape[2]
    return 2 * b * m * k * n


# -------------------------------------------------------------------------------------------------- linear

@st.composite
def _linear_cases(draw):
    lead = tuple(draw(st.lists(dim(17), min_size=0, max_size=2)))
    n_in, n_out = draw(dim(129)), draw(dim(65))
    x, w, b = randn(draw(seeds()), lead + (n_in,), (n_out, n_in), (n_out,))
    if draw(st.booleans()):
        return Case("random_bias", (x, w, b))
    return Case("random", (x, w))


def _linear_sd():
    return [Case("sd21_qkv_l0", tuple(randn(0, (2, 4096, 320), (960, 320)))),       # to_q/k/v fused, 5 GFLOP
            Case("sd21_ff_proj_l0", tuple(randn(1, (2, 4096, 320), (2560, 320), (2560,)))),  # geglu proj
            Case("sd21_cross_kv", tuple(randn(2, (2, 77, 1024), (320, 1024)))),       # to_k of attn2 at level 0
            Case("sd21_time_emb", tuple(randn(3, (2, 320), (1280, 320), (1280,)))),  # time_embedding.linear_1
            Case("sd21_text_fc1", tuple(randn(4, (2, 77, 1024), (4096, 1024), (4096,)))),
            Case("sd15_text_fc2", tuple(randn(5, (2, 77, 3072), (768, 3072), (768,))))]


def _linear_flops(c: Case) -> int:
    x, w = c.args[0], c.args[1]
    rows = x.size // x.shape[-1]
    return 2 * rows * w.shape[0] * w.shape[1] + (rows * w.shape[0] if len(c.args) > 2 else 0)


def _linear_bytes(c: Case) -> int:
    x, w = c.args[0], c.args[1]
    return _io_bytes(c, x.size // x.shape[-1] * w.shape[0])


# -------------------------------------------------------------------------------------------------- conv2d

@st.composite
def _conv_cases(draw):
    n, c, o = draw(dim(3)), draw(dim(33)), draw(dim(33))
    kh = draw(st.sampled_from([1, 3, 3, 2, 5]))
    kw = draw(st.sampled_from([kh, kh, kh, 1, 3]))
    stride = draw(st.sampled_from([1, 1, 2, (2, 1), (1, 3)]))
    padding = draw(st.sampled_from([0, 1, 1, (1, 0), (0, 1, 0, 1), (2, 1, 0, 3)]))
    pads = (padding,) * 4 if isinstance(padding, int) else \
        (padding[0], padding[0], padding[1], padding[1]) if len(padding) == 2 else padding
    h = max(draw(dim(33)), kh - pads[0] - pads[1])          # at least one output row and column
    w = max(draw(dim(33)), kw - pads[2] - pads[3])
    x, wt, b = randn(draw(seeds()), (n, c, h, w), (o, c, kh, kw), (o,))
    kwargs = {"stride": stride, "padding": padding}
    if draw(st.booleans()):
        return Case("random_bias", (x, wt, b), kwargs)
    return Case("random", (x, wt), kwargs)


def _conv_sd():
    def case(name, seed, x, w, **kw):
        xs, ws, bs = randn(seed, x, w, (w[0],))
        return Case(name, (xs, ws, bs), kw)
    return [
        case("sd21_conv_in", 0, (2, 4, 64, 64), (320, 4, 3, 3), padding=1),
        case("sd21_resnet_conv_l0", 1, (2, 320, 64, 64), (320, 320, 3, 3), padding=1),
        case("sd21_conv_out", 2, (2, 320, 64, 64), (4, 320, 3, 3), padding=1),
        case("sd21_downsample_l0", 3, (2, 320, 64, 64), (320, 320, 3, 3), stride=2, padding=1),
        case("sd21_downsample_l2", 4, (2, 640, 16, 16), (640, 640, 3, 3), stride=2, padding=1),
        case("sd21_shortcut_1x1_l1", 5, (2, 640, 32, 32), (1280, 640, 1, 1)),
        case("sd21_up0_shortcut_1x1", 6, (2, 2560, 8, 8), (1280, 2560, 1, 1)),
        case("sd21_up0_resnet_conv_l3", 7, (2, 2560, 8, 8), (1280, 2560, 3, 3), padding=1),
        case("vae_encoder_downsample_asym", 8, (1, 128, 512, 512), (128, 128, 3, 3), stride=2,
             padding=(0, 1, 0, 1)),
        case("vae_decoder_conv_512", 9, (1, 128, 512, 512), (128, 128, 3, 3), padding=1),
    ]


def _conv_out(c: Case) -> tuple:
    x, w = c.args[0], c.args[1]
    ref_pad = c.kwargs.get("padding", 0)
    st_ = c.kwargs.get("stride", 1)
    sh, sw = st_ if isinstance(st_, tuple) else (st_, st_)
    p = (ref_pad,) * 4 if isinstance(ref_pad, int) else \
        (ref_pad[0], ref_pad[0], ref_pad[1], ref_pad[1]) if len(ref_pad) == 2 else ref_pad
    oh = (x.shape[2] + p[0] + p[1] - w.shape[2]) // sh + 1
    ow = (x.shape[3] + p[2] + p[3] - w.shape[3]) // sw + 1
    return x.shape[0], w.shape[0], oh, ow


def _conv_flops(c: Case) -> int:
    n, o, oh, ow = _conv_out(c)
    w = c.args[1]
    return 2 * n * o * oh * ow * w.shape[1] * w.shape[2] * w.shape[3] + (n * o * oh * ow if len(c.args) > 2 else 0)


def _conv_bytes(c: Case) -> int:
    return _io_bytes(c, math.prod(_conv_out(c)))


# ----------------------------------------------------------------------------------------------- attention

@st.composite
def _attention_cases(draw):
    b, heads, d = draw(dim(3)), draw(st.sampled_from([1, 2, 3, 5, 8])), draw(dim(17))
    causal = draw(st.booleans())
    lq = draw(dim(33))
    lk = lq if causal else draw(dim(33))
    q, k, v = randn(draw(seeds()), (b, lq, heads * d), (b, lk, heads * d), (b, lk, heads * d))
    kwargs = {"causal": causal}
    if draw(st.booleans()):
        kwargs["scale"] = draw(st.sampled_from([0.05, 0.125, 1.0, 3.0]))
    return Case("random", (q, k, v, heads), kwargs)


def _attention_sd():
    def case(name, seed, b, lq, lk, hd, heads, **kw):
        return Case(name, tuple(randn(seed, (b, lq, hd), (b, lk, hd), (b, lk, hd))) + (heads,), kw)
    return [
        case("sd21_self_l0", 0, 2, 4096, 4096, 320, 5),           # head dim 64
        case("sd15_self_l0", 1, 2, 4096, 4096, 320, 8),           # head dim 40
        case("sd21_cross_l0", 2, 2, 4096, 77, 320, 5),            # Lk = 77 text tokens
        case("sd15_cross_l1", 3, 2, 1024, 77, 640, 8),            # head dim 80
        case("sd21_self_l3", 4, 2, 64, 64, 1280, 20),             # 8x8 latent, head dim 64
        case("sd21_text_causal", 5, 2, 77, 77, 1024, 16, causal=True),
        case("sd15_text_causal", 6, 2, 77, 77, 768, 12, causal=True),
    ]


def _attention_flops(c: Case) -> int:
    q, k = c.args[0], c.args[1]
    b, lq, hd = q.shape
    lk = k.shape[1]
    pairs = lq * (lq + 1) // 2 if c.kwargs.get("causal") else lq * lk
    return b * pairs * (4 * hd + 3 * c.args[3])     # q.k and p v per pair; exp, sum, max per pair and head


def _attention_bytes(c: Case) -> int:
    return _io_bytes(c, c.args[0].size)


ROWS = [
    OpSpec("matmul", R.matmul, (Variant("naive"),), _matmul_cases, _matmul_sd, _DOT_TOL,
           flops=_matmul_flops, bytes=lambda c: _io_bytes(c, c.args[0].shape[0] * c.args[1].shape[1])),
    OpSpec("batched_matmul", R.batched_matmul, (Variant("naive"),), _bmm_cases, _bmm_sd, _DOT_TOL,
           flops=_bmm_flops, bytes=lambda c: _io_bytes(c, c.args[0].shape[0] * c.args[0].shape[1]
                                                       * c.args[1].shape[2])),
    OpSpec("linear", R.linear, (Variant("naive"),), _linear_cases, _linear_sd, _DOT_TOL,
           flops=_linear_flops, bytes=_linear_bytes),
    OpSpec("conv2d", R.conv2d, (Variant("naive"),), _conv_cases, _conv_sd, _DOT_TOL,
           flops=_conv_flops, bytes=_conv_bytes),
    OpSpec("attention", R.attention, (Variant("naive"),), _attention_cases, _attention_sd, _ATTN_TOL,
           flops=_attention_flops, bytes=_attention_bytes),
]
