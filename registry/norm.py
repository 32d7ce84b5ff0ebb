"""Registry rows: normalization (group_norm, layer_norm) and softmax."""

from __future__ import annotations

from dataclasses import replace

import numpy as np


from sdcl.registry.spec import DTYPES, U16, Case, OpSpec, Tolerance, Variant, elementwise_bytes
from sdcl.registry.fuzz import dim, dims, normalized_rows, randn, seed_of, shape
from sdcl.reference import ops as R

# group_norm / layer_norm: mean and variance are sums of n terms, each work-item of the naive kernel adding
# L = ceil(n / WG) of them in order before a log2(WG)-level tree. The mean's error is a random walk of
# ~sqrt(L + 8) eps * mean|x| (worst (L + 8) eps); divided by the std it becomes an absolute error of
# y = (x - mean)/std of ~sqrt(L + 8) eps * mean|x| / std, so the tests keep every row's |mean| <= 3 std
# (strategies.normalized_rows: short random rows are otherwise arbitrarily ill-conditioned); the variance's
# relative error gives y a relative error of half that. For L <= 4096 (VAE groups of 2^20 elements at WG 256)
# the random walk is ~65 eps = 4e-6 (float32); 1e-5 (rtol and atol * max|ref|) holds it with margin; float64:
# same count with eps = 2^-53.
# The reduce and fused variants (norm/group_norm.cl) get the moments by Welford's update per vector lane and Chan
# et al.'s pairwise merges. An error rounded in at a lane's k-th of L' updates reaches its mean damped by k/L', so a
# lane's mean takes a random walk of ~sqrt(L'/3) eps |mean|, and the merged mean averages the lanes' (at least 64:
# the rows' constraint asks WG*VEC >= 64): for n elements ~sqrt(n/3)/64 eps |mean| at most, below the naive
# kernel's sqrt(n/256) eps; the merges only add non-negative terms to M2. The same tolerance holds (measured at
# the SD shapes on PoCL: rel_l2 5e-8 to 4e-7, as the naive kernel's).
_NORM_TOL = {
    "float32": Tolerance(1e-5, 1e-5, "mean/var: sums of L = n/WG terms per work-item + tree: ~sqrt(L) eps * "
                                     "mean|x|/std; <= 4e-6 for L <= 4096 with |mean| <= 3 std"),
    "float64": Tolerance(2e-14, 2e-14, "as float32 with eps = 2^-53: ~sqrt(L) eps = 7e-15 for L <= 4096"),
}

# softmax: each output is exp(d)/s with d = x - max rounded once (relative error |d| eps after exp) and exp's
# own <= 3 ulp; the row sum s adds L positive terms in order, a random walk of relative std ~ eps sqrt(L)/3
# (worst (L-1) eps). For rows of L = 4096 with |d| <= 40 that is ~2e-6 + 2.5e-6; rtol 2e-5 holds the largest of
# thousands of rows. atol (relative to max|ref| >= 1/L) only covers outputs that underflow (exp(d) < 1e-38 in
# float32 is 0 or subnormal).
_SOFTMAX_TOL = {
    "float32": Tolerance(2e-5, 1e-9, "exp(d): (|d| + 3) eps; row sum of L positive terms: ~eps sqrt(L)/3; "
                                     "L <= 4096; atol only for outputs that underflow"),
    "float64": Tolerance(4e-14, 1e-20, "as float32 with eps = 2^-53"),
}


# ---------------------------------------------------------------------------------------------- group_norm

def _affine(d, seed, c):
    w, b = randn(seed + 1, (c,), (c,))
    out = {}
    if d.boolean():
        out["weight"] = w
    if d.boolean():
        out["bias"] = b
    return out


def _group_norm_cases(d):
    n, g, cpg = dim(d, 3), d.choice([1, 2, 3, 4, 8, 32]), dim(d, 9)
    spatial = dims(d, 2, 33)    # (N, C), (N, C, L) or (N, C, H, W)
    seed = seed_of(d)
    offset = d.choice([0.0, 3.0, -2.0])
    std = d.choice([1.0, 1.0, 0.01, 100.0])
    (x,) = randn(seed, (n, g * cpg) + spatial)
    x = normalized_rows(x, x.size // (n * g), std * offset, std)    # each group: mean offset*std, std std
    kwargs = _affine(d, seed, g * cpg)
    if d.boolean():
        kwargs["eps"] = d.choice([1e-6, 1e-3, 1.0])
    return Case("random", (x, g), kwargs)


def _group_norm_sd():
    def case(name, seed, shp, g=32, eps=1e-5):
        x, w, b = randn(seed, shp, shp[1:2], shp[1:2])
        return Case(name, (x, g, w, b), {"eps": eps})
    return [case("sd21_resnet_norm_l0", 0, (2, 320, 64, 64)),
            case("sd21_resnet_norm_l3", 1, (2, 1280, 8, 8)),
            case("sd21_up3_norm_960", 2, (2, 960, 64, 64)),
            case("sd21_transformer_norm_l0", 3, (2, 320, 64, 64), eps=1e-6),
            case("vae_decoder_norm_512", 4, (1, 128, 512, 512), eps=1e-6)]


def _norm_flops(c: Case) -> int:
    # sum, subtract-square-add, subtract-multiply, then the affine multiply and add
    return 8 * c.args[0].size


# ---------------------------------------------------------------------------------------------- layer_norm

def _layer_norm_cases(d):
    # at most 300 rows: each row is a work-group of WG work-items, which a simulator (Oclgrind) runs one by one
    shp = shape(d, min_dims=0, max_dims=2, max_size=65, max_elems=300) + (dim(d, 700),)
    seed = seed_of(d)
    offset = d.choice([0.0, 3.0])
    std = d.choice([1.0, 0.01, 100.0])
    (x,) = randn(seed, shp)
    x = normalized_rows(x, shp[-1], std * offset, std)               # each row: mean offset*std, std std
    kwargs = _affine(d, seed, shp[-1])
    if d.boolean():
        kwargs["eps"] = d.choice([1e-6, 1e-3])
    return Case("random", (x,), kwargs)


def _layer_norm_sd():
    def case(name, seed, shp, eps=1e-5):
        x, w, b = randn(seed, shp, shp[-1:], shp[-1:])
        return Case(name, (x, w, b), {"eps": eps})
    return [case("sd21_transformer_ln_l0", 0, (2, 4096, 320)),
            case("sd21_transformer_ln_l3", 1, (2, 64, 1280)),
            case("sd21_text_ln", 2, (2, 77, 1024)),
            case("sd15_text_ln", 3, (2, 77, 768))]


# ------------------------------------------------------------------------------------------------- softmax

def _softmax_cases(d):
    shp = shape(d, min_dims=1, max_dims=4)
    axis = d.integers(-len(shp), len(shp) - 1)
    seed = seed_of(d)
    kind = d.choice(["randn", "randn", "large", "neg_inf"])
    (x,) = randn(seed, shp, scale=3.0)
    if kind == "large":            # inputs near 10000: exp without subtracting the max overflows
        x = 1e4 + x
    elif kind == "neg_inf":        # masked entries; short lines become all -inf (NaN, as the reference)
        x[np.random.default_rng(seed).random(shp) < 0.3] = -np.inf
    return Case(kind, (x,), {"axis": axis})


def _softmax_sd():
    # a slice of 640 of SD 2.1's 40960 self-attention score rows of 4096 at 64x64; cross-attention rows of 77;
    # the text encoder's causal rows (masked with -inf).
    (self_rows, cross_rows, text) = randn(0, (640, 4096), (2 * 5 * 4096, 77), (2 * 16, 77, 77), scale=3.0)
    text[:, np.triu(np.ones((77, 77), dtype=bool), 1)] = -np.inf
    (nchw,) = randn(1, (2, 320, 64, 64), scale=3.0)
    return [Case("sd21_self_scores_rows_4096", (self_rows,)),
            Case("sd21_cross_scores_rows_77", (cross_rows,)),
            Case("sd21_text_causal_scores", (text,), {"axis": -1}),
            Case("channel_axis_nchw", (nchw,), {"axis": 1})]


def _softmax_flops(c: Case) -> int:
    return 5 * c.args[0].size     # max, subtract, exp, add, divide


def _wg_fits(k, info):
    """Work-group sizes the device admits (the kernels require exactly WG work-items per work-group)."""
    return k["WG"] <= info.get("max_work_group_size", 256)


def _lanes_fit(k, info):
    """group_norm's reduce and fused: at least 64 vector lanes per work-group (see _NORM_TOL), WG the device admits."""
    return k["WG"] * k["VEC"] >= 64 and _wg_fits(k, info)


def _packed(per: str):
    """Row-packed reductions: `per` work-items per row, at most WG, and at most 64 rows per work-group."""
    return lambda k, info: k[per] <= k["WG"] <= 64 * k[per] and _wg_fits(k, info)


# The reduction variants read their rows as vectors of VEC elements (vloadn): VEC 1 with wide work-groups is the
# GPU form; VEC 16 with a handful of work-items the CPU form (PoCL vectorizes explicit vector types, not a
# work-item's loop: on the 2-core EPYC, VEC 16 runs group_norm 2x320x64x64 ~14x faster than VEC 1). The defaults
# are the CPU form, PoCL being the default device; the tuner picks per device.
NAIVE = "sdcl.opencl_impl.variants.naive:{op}"
ROWWISE = "sdcl.opencl_impl.variants.rowwise:"
_NAIVE_NORM = Variant("naive", {"WG": 256}, space={"WG": [32, 64, 128, 256, 512]}, constraint=_wg_fits,
                      launcher=NAIVE, dtypes=DTYPES)
# reduce (norm/group_norm.cl): each (sample, group) split over up to SPLIT work-groups of WG (a host-side knob:
# the chunks are at least WG*VEC elements long), pass 1 moments per chunk, pass 2 combine and normalize.
_GROUP_NORM_REDUCE = Variant("reduce", {"WG": 4, "SPLIT": 8, "VEC": 16},
                             space={"WG": [4, 64, 256], "SPLIT": [8, 64], "VEC": [1, 16]}, constraint=_lanes_fit,
                             launcher=ROWWISE + "{op}_reduce", tier="reductions", dtypes=DTYPES)


def _unfused_silu16(t32: Tolerance) -> Tolerance:
    """group_norm_silu's naive and reduce are group_norm then silu (two launches): in float16 the normalized y is
    stored in half before silu, as a framework's float16 keeps it. float16_tolerance(roundings=2) does not hold it:
    silu amplifies y's relative rounding where y < 0 (measured: 2.5x that bound for y in [-6, -2]). y's rounding,
    |dy| <= U16 |y|, moves silu(y) by U16 |y silu'(y)| = U16 |silu(y)| (1 + y sigmoid(-y)), which is at most
    R U16 |silu(y)| for y >= 0 (R = 1.2785, at y = 1.28) and at most K U16 for y < 0 (K = 0.2646, at y = -2.94: an
    absolute error, where silu(y) itself is small); the output's rounding adds U16 |silu|. With c = 1 + R (1 + U16),
    |y16 - ref| <= (rtol + U16 c (1 + rtol)) |ref| + atol (1 + U16 c) max|ref| + K U16 (1 + U16) + 2 2^-25."""
    r, k = 1.2785, 0.2646
    c = 1 + r * (1 + U16)
    return Tolerance(rtol=t32.rtol + U16 * c * (1 + t32.rtol), atol=t32.atol * (1 + U16 * c),
                     reason=f"float16 storage: the float32 bound ({t32.reason}), y = group_norm rounded to half "
                            "before silu (moves silu by <= 1.2785 U16 |silu| for y >= 0, <= 0.2646 U16 for y < 0) "
                            "and the output rounded to half (U16 = 2^-11)",
                     atol_scale=t32.atol_scale, floor=k * U16 * (1 + U16) + 2 * 2.0 ** -25)


_UNFUSED_SILU_TOL = {**_NORM_TOL, "float16": _unfused_silu16(_NORM_TOL["float32"])}

ROWS = [
    OpSpec("group_norm", R.group_norm, (_NAIVE_NORM, _GROUP_NORM_REDUCE),
           _group_norm_cases, _group_norm_sd, _NORM_TOL, flops=_norm_flops, bytes=elementwise_bytes),
    # group_norm then silu: the same reductions plus one exp and one division per element (see the silu row);
    # reduce: group_norm's reduce then silu; fused (norm/group_norm.cl): SiLU in the normalizing pass. SPLIT 1: one
    # work-group of WG per (sample, group) does statistics, normalization, affine and SiLU in one launch; SPLIT > 1
    # (a host-side knob, as reduce's): each (sample, group) cut into up to SPLIT chunks over as many work-groups,
    # moments then normalize + SiLU, two launches. One work-group per group leaves a GPU idle at the VAE's 32 groups
    # (the H200's table at 1x128x512x512: fused 1.17 ms against reduce's 0.25). Shipped tables tuned before the knob
    # measured SPLIT 1 and say so.
    OpSpec("group_norm_silu", R.group_norm_silu,
           (replace(_NAIVE_NORM, tolerance=_UNFUSED_SILU_TOL), replace(_GROUP_NORM_REDUCE, tolerance=_UNFUSED_SILU_TOL),
            Variant("fused", {"WG": 4, "VEC": 16, "SPLIT": 8},
                    space={"WG": [4, 16, 64, 256], "VEC": [1, 16], "SPLIT": [1, 8, 64]},
                    constraint=_lanes_fit, launcher=ROWWISE + "group_norm_silu_fused", tier="fused GroupNorm",
                    dtypes=DTYPES)),
           _group_norm_cases, _group_norm_sd, _NORM_TOL, flops=lambda c: _norm_flops(c) + 4 * c.args[0].size,
           bytes=elementwise_bytes),
    # reduce (norm/layer_norm.cl): TPR work-items per row, WG/TPR rows per work-group
    OpSpec("layer_norm", R.layer_norm,
           (_NAIVE_NORM, Variant("reduce", {"WG": 8, "TPR": 1, "VEC": 16},
                                 space={"WG": [8, 64, 256], "TPR": [1, 4, 32], "VEC": [1, 16]},
                                 constraint=_packed("TPR"), launcher=ROWWISE + "layer_norm_reduce",
                                 tier="reductions", dtypes=DTYPES)),
           _layer_norm_cases, _layer_norm_sd, _NORM_TOL, flops=_norm_flops, bytes=elementwise_bytes),
    # reduce (norm/softmax.cl): TPL work-items per line, WG/TPL lines per work-group
    OpSpec("softmax", R.softmax,
           (Variant("naive", launcher=NAIVE, dtypes=DTYPES),
            Variant("reduce", {"WG": 16, "TPL": 1, "VEC": 16},
                    space={"WG": [16, 64, 256], "TPL": [1, 4, 64], "VEC": [1, 16]},
                    constraint=_packed("TPL"), launcher=ROWWISE + "softmax_reduce", tier="reductions",
                    dtypes=DTYPES)),
           _softmax_cases, _softmax_sd, _SOFTMAX_TOL, flops=_softmax_flops, bytes=elementwise_bytes),
]
