"""Registry rows: activations, embeddings, elementwise and layout ops."""

from __future__ import annotations

import numpy as np


from sdcl.registry.spec import DTYPES, Case, OpSpec, Tolerance, Variant, elementwise_bytes, float16_tolerance
from sdcl.registry.fuzz import dim, randn, seed_of, shape
from sdcl.reference import ops as R

# One transcendental (exp) and one division per element: a few ulps in float32 (OpenCL's exp is 3 ulp, native
# division 2.5 ulp), ~1 ulp in float64. atol covers results near zero, where relative error is meaningless.
_ACT_TOL = {"float32": Tolerance(1e-6, 1e-7, "exp: 3 ulp + division: 2.5 ulp in OpenCL float (2^-23 = 1.2e-7)"),
            "float64": Tolerance(1e-14, 1e-16, "exp and division within a few ulp of double (2^-52 = 2.2e-16)")}

# gelu = x/2 (1 + erf(x/sqrt 2)) (the reference's formula): erf is within 16 ulp in OpenCL (float and double),
# an error of up to 16 ulp(1) absolute as |erf| -> 1; where x -> -inf, 1 + erf cancels and keeps that absolute
# error, so |err| <= |x|/2 (16 + 2) ulp(1) = 9 |x| eps: absolute in |x|, hence atol relative to max|x|.
# Elsewhere the three roundings around erf give a few eps relative.
_GELU_TOL = {
    "float32": Tolerance(4e-7, 6e-7, "erf <= 16 ulp; 1 + erf cancels as x -> -inf: |err| <= 9 eps |x| "
                                     "(eps = 2^-24), relative to max|x|", atol_scale="input"),
    "float64": Tolerance(8e-16, 1.1e-15, "as float32 with eps = 2^-53: |err| <= 9 eps |x|", atol_scale="input"),
}
# gelu_tanh: tanh within 5 ulp (float and double), its argument u = sqrt(2/pi)(x + 0.044715 x^3) carries ~4
# roundings (tanh'(u) u <= 0.45 turns them into < 2 eps absolute); 1 + tanh cancels as x -> -inf:
# |err| <= |x|/2 (5 + 2 + 2) ulp(1) = 4.5 |x| eps, relative to max|x|.
_GELU_TANH_TOL = {
    "float32": Tolerance(4e-7, 3e-7, "tanh <= 5 ulp; 1 + tanh cancels as x -> -inf: |err| <= 4.5 eps |x|",
                         atol_scale="input"),
    "float64": Tolerance(8e-16, 5.5e-16, "as float32 with eps = 2^-53: |err| <= 4.5 eps |x|",
                         atol_scale="input"),
}
# quick_gelu = x / (1 + exp(-1.702 x)): the argument -1.702 x is rounded and 1.702 itself is rounded to the
# dtype, so exp's result carries ~1.5 * 1.702 |x| eps relative error on top of its 3 ulp, plus 1 + and the
# division: (2.6 |x| + 6) eps relative, <= 46 eps = 2.7e-6 for |x| <= 15 (the tests draw 3 * N(0, 1)).
_QUICK_GELU_TOL = {
    "float32": Tolerance(3e-6, 1e-7, "exp(-1.702 x): (2.6|x| + 6) eps relative, |x| <= 15"),
    "float64": Tolerance(6e-15, 1e-16, "as float32 with eps = 2^-53: (2.6|x| + 6) eps, |x| <= 15"),
}
# geglu = h * gelu(g): gelu's error times |h|, |err| <= 9 eps |h| |g| <= 9 eps max|x|^2, plus one rounding.
# Relative to max|x| that is 9 eps max|x|: the tests draw unit normals, max|x| <= 7, so 63 eps.
_GEGLU_TOL = {
    "float32": Tolerance(5e-7, 4e-6, "gelu's 9 eps |g| absolute error times |h|: <= 9 eps max|x| of max|x| "
                                     "with max|x| <= 7 (unit normal inputs)", atol_scale="input"),
    "float64": Tolerance(1e-15, 7e-15, "as float32 with eps = 2^-53", atol_scale="input"),
}

# timestep_embedding: the argument t f_k is what loses accuracy: f_k = exp(-log(P) k / denom) carries
# (2a + 3) eps relative error for exponent a (rounded argument, exp's 3 ulp), t f_k one more; the absolute
# error t f_k (2a + 4) eps = t e^-a (2a + 4) eps peaks near a = 0 at 4 t eps: 2.4e-4 rad for t < 1000 in float32,
# which sin and cos (|derivative| <= 1, own 4 ulp) pass on unchanged. Outputs are in [-1, 1].
_TIME_TOL = {
    "float32": Tolerance(0.0, 3e-4, "argument t*f with t < 1000: |err| <= 4 t eps = 2.4e-4 rad, passed on by "
                                    "sin/cos; outputs in [-1, 1]"),
    "float64": Tolerance(0.0, 6e-13, "as float32 with eps = 2^-53: 4 t eps = 4.4e-13 rad for t < 1000"),
}

# One correctly rounded + or * per element (OpenCL requires + - * correctly rounded): |err| <= 2^-24 |y|
# (float32) and 2^-53 |y| (float64), relative to the element itself.
_ONE_ROUNDING_TOL = {
    "float32": Tolerance(6e-8, 0.0, "one correctly rounded operation: |err| <= 2^-24 |y| = 5.96e-8 |y|"),
    "float64": Tolerance(1.12e-16, 0.0, "one correctly rounded operation: |err| <= 2^-53 |y| = 1.11e-16 |y|"),
}

# Copies: the output holds input elements, bit for bit.
_EXACT_TOL = {
    "float32": Tolerance(0.0, 0.0, "a copy: every output element is an input element"),
    "float64": Tolerance(0.0, 0.0, "a copy: every output element is an input element"),
    "float16": Tolerance(0.0, 0.0, "a copy: every output element is an input element"),
}


# --------------------------------------------------------------------------------------------- activations

def _any_shape(d):
    return Case("random", tuple(randn(seed_of(d), shape(d), scale=3.0)))


def _sd_activation_cases():
    # SD 2.1-base 64x64 latent, batch 2 (CFG): ResBlock activations at the first and last UNet levels.
    return [Case("sd21_unet_l0", tuple(randn(0, (2, 320, 64, 64)))),
            Case("sd21_unet_l3", tuple(randn(1, (2, 1280, 8, 8))))]


def _sd_gelu_cases():
    # SD 2.x's OpenCLIP text encoder MLP (gelu), and the geglu gate of SD's transformer blocks at level 0.
    return [Case("sd21_text_mlp", tuple(randn(0, (2, 77, 4096)))),
            Case("sd21_geglu_gate_l0", tuple(randn(1, (2, 4096, 1280))))]


def _sd_quick_gelu_cases():
    # SD 1.5's CLIP ViT-L text encoder MLP.
    return [Case("sd15_text_mlp", tuple(randn(0, (2, 77, 3072))))]


def _geglu_cases(d):
    shp = shape(d, max_elems=50_000)
    f = dim(d, 65)
    return Case("random", tuple(randn(seed_of(d), shp[:-1] + (2 * f,))))


def _sd_geglu_cases():
    return [Case("sd21_ff_l0", tuple(randn(0, (2, 4096, 2560)))),
            Case("sd21_ff_l3", tuple(randn(1, (2, 64, 10240))))]


def _geglu_bytes(c: Case) -> int:
    return c.args[0].nbytes * 3 // 2


# ---------------------------------------------------------------------------------------------- embeddings

def _timestep_cases(d):
    n, dimension = dim(d, 5), dim(d, 129)
    shift = d.choice([0.0, 1.0])
    if dimension // 2 == shift:     # denominator half - shift = 0: NaN frequencies, a degenerate config
        shift = 0.0
    rng = np.random.default_rng(seed_of(d))
    t = rng.uniform(0, 1000, n)
    if d.boolean():
        t = np.floor(t)             # the integer steps samplers use
    return Case("random", (t, dimension), {"flip_sin_to_cos": d.boolean(), "downscale_freq_shift": shift,
                                           "max_period": d.choice([10000.0, 1000.0])})


def _timestep_sd():
    return [Case("sd_unet_time_proj", (np.array([999.0, 999.0]), 320), {"flip_sin_to_cos": True,
                                                                         "downscale_freq_shift": 0.0}),
            Case("sd_unet_time_proj_t1", (np.array([1.0, 1.0]), 320), {"flip_sin_to_cos": True,
                                                                       "downscale_freq_shift": 0.0})]


def _token_cases(d):
    b, length, vocab, width = dim(d, 3), dim(d, 17), dim(d, 33), dim(d, 65)
    extra = d.choice([0, 1, 7])
    seed = seed_of(d)
    ids = np.random.default_rng(seed).integers(0, vocab, (b, length))
    ids = ids.astype(d.choice([np.int64, np.int32]))
    tok, pos = randn(seed, (vocab, width), (length + extra, width))
    return Case("random", (ids, tok, pos))


def _token_sd():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 49408, (2, 77))
    ids[:, 0], ids[:, -1] = 49406, 49407            # start and end tokens, the largest ids of CLIP's vocabulary
    tok, pos = randn(1, (49408, 768), (77, 768))
    return [Case("sd15_clip_embeddings", (ids, tok, pos))]


def _token_bytes(c: Case) -> int:
    ids, tok, pos = c.args
    out = ids.size * tok.shape[1] * tok.itemsize
    return ids.nbytes + 2 * out + out       # ids, the gathered rows of both tables, the output


# ----------------------------------------------------------------------------------------- add, mul (broadcast)

def _broadcast_cases(d):
    a_shape = shape(d, min_dims=1, max_dims=4)
    keep = [d.boolean() for _ in a_shape]
    b_shape = tuple(s if k else 1 for s, k in zip(a_shape, keep))
    b_shape = b_shape[d.integers(0, len(b_shape)):]          # b may have fewer axes, even none
    a, b = randn(seed_of(d), a_shape, b_shape)
    return Case("random", (a, np.asarray(b)))   # a 0-d b is an array too


def _broadcast_sd():
    return [Case("sd21_residual_l0", tuple(randn(0, (2, 320, 64, 64), (2, 320, 64, 64)))),
            Case("sd21_time_emb_l0", tuple(randn(1, (2, 320, 64, 64), (2, 320, 1, 1)))),
            Case("sd21_channel_bias", tuple(randn(2, (2, 320, 64, 64), (1, 320, 1, 1)))),
            Case("sd21_tokens_bias_l0", tuple(randn(3, (2, 4096, 320), (320,))))]


# ------------------------------------------------------------------------------------------------- layout

def _concat_cases(d):
    base = list(shape(d, min_dims=1, max_dims=4, max_elems=20_000))
    axis = d.integers(-len(base), len(base) - 1)
    seed = seed_of(d)
    shapes = []
    for _ in range(d.integers(1, 4)):
        s = list(base)
        s[axis] = dim(d, 17)
        shapes.append(tuple(s))
    return Case("random", (randn(seed, *shapes),), {"axis": axis})


def _concat_sd():
    return [Case("sd21_up3_skip", (randn(0, (2, 640, 64, 64), (2, 320, 64, 64)),), {"axis": 1}),
            Case("sd21_up0_skip", (randn(1, (2, 1280, 8, 8), (2, 1280, 8, 8)),), {"axis": 1})]


def _concat_bytes(c: Case) -> int:
    return 2 * sum(x.nbytes for x in c.args[0])


def _upsample_cases(d):
    return Case("random", tuple(randn(seed_of(d), shape(d, min_dims=4, max_dims=4, max_size=33,
                                                                  max_elems=20_000))))


def _upsample_sd():
    return [Case("sd21_upsample_l1", tuple(randn(0, (2, 1280, 16, 16)))),
            Case("sd21_upsample_l2", tuple(randn(1, (2, 640, 32, 32)))),
            Case("vae_upsample_128", tuple(randn(2, (1, 512, 128, 128))))]


def _permute_cases(d):
    shp = shape(d, min_dims=1, max_dims=4)
    axes = tuple(d.permutation(len(shp)))
    return Case("random", tuple(randn(seed_of(d), shp)), {"axes": axes})


def _permute_sd():
    return [Case("sd21_nchw_to_nhwc_l0", tuple(randn(0, (2, 320, 64, 64))), {"axes": (0, 2, 3, 1)}),
            Case("sd21_nhwc_to_nchw_l0", tuple(randn(1, (2, 64, 64, 320))), {"axes": (0, 3, 1, 2)}),
            Case("sd_crop_rows", tuple(randn(2, (2, 4, 65, 64))), {"axes": (2, 0, 1, 3)})]


_NAIVE16 = Variant("naive", launcher="sdcl.opencl_impl.variants.naive:{op}", dtypes=DTYPES)   # float16 too
# vec (activation.cl): VEC elements per work-item, the activation applied to a REALn vector: one vector erf / exp
# call per VEC elements where the naive kernel makes one scalar call per element (PoCL vectorizes explicit vectors
# only). OpenCL bounds a builtin's vector forms by the same ulps as its scalar one, so the rows' tolerances hold.
# Defaults VEC 4, WG 64: geglu's tuned knobs on the H200; on PoCL VEC 16 (tuned: 15x naive for gelu's erf).
_ACT_VEC = Variant("vec", {"VEC": 4, "WG": 64}, space={"VEC": [1, 4, 16], "WG": [64, 256]},
                   constraint=lambda k, info: k["WG"] <= info.get("max_work_group_size", 64),
                   launcher="sdcl.opencl_impl.variants.rowwise:activation_vec", tier="fused GELU", dtypes=DTYPES)

# upsample_nearest2x rows (kernels/upsample.cl): a work-item per VEC inputs of a row, each written to its 2 x 2 block,
# 32-bit indices (the naive kernel: three 64-bit divisions per output element). Exact, as naive. PoCL on 2 cores,
# the VAE's 512 channels at 128x128: 18.7 ms against naive's 150.4 (one run, as permute's below); H100, float16, the
# VAE's 256 channels at 256x256: 0.076 ms against 0.323 (docs/results/tune-float16-nvidia-h100-3.txt's call). Ladder
# row: the elementwise work per work-item of the activations' vec.
_UPSAMPLE_ROWS = Variant("rows", {"VEC": 2, "WG": 256}, space={"VEC": [1, 2, 4], "WG": [64, 256]},
                         constraint=lambda k, info: k["WG"] <= info.get("max_work_group_size", 256),
                         launcher="sdcl.opencl_impl.variants.layout:upsample_nearest2x", tier="fused GELU",
                         dtypes=DTYPES)


def batched_transpose(args, kwargs) -> bool:
    """Whether permute's axes, size-1 axes of x left out, keep a run of leading axes in place and swap the two runs
    of axes after it, x (B, Q, P) -> y (B, P, Q): the permutations permute `tiled` handles (NCHW <-> N(HW)C)."""
    x, axes = args[0], (args[1] if len(args) > 1 else kwargs["axes"])
    kept = sorted(a for a in axes if x.shape[a] != 1)
    order = [kept.index(a) for a in axes if x.shape[a] != 1]
    b = next((i for i, a in enumerate(order) if a != i), len(order))
    if b == len(order):
        return False                        # no axis moves: a copy
    k = order[b]
    return order[b:] == list(range(k, len(order))) + list(range(b, k))


# permute tiled (kernels/transpose.cl): a batched transpose through TS x TS tiles in local memory, reads and writes
# along rows (the naive kernel reads x with a stride where it transposes, and divides in 64 bits per element); PoCL
# on 2 cores, UNet's NCHW <-> NHWC at 64x64: 10.7-13.4 ms against naive's 18.6-19.2 (`sdcl perf run -k "test_op and
# permute"`, one run); H100, float16, the eleven shapes of a 512 pass: 0.007-0.012 ms against 0.008-0.030 (the
# tuner's call, as above). Ladder row: local-memory tiles.
_PERMUTE_TILED = Variant("tiled", {"TS": 32, "ROWS": 8}, space={"TS": [16, 32], "ROWS": [4, 8]},
                         constraint=lambda k, info: k["TS"] * k["ROWS"] <= info.get("max_work_group_size", 256),
                         applies=batched_transpose,
                         launcher="sdcl.opencl_impl.variants.layout:permute", tier="tiled GEMM", dtypes=DTYPES)

ROWS = [
    OpSpec("silu", R.silu, (_NAIVE16, _ACT_VEC), _any_shape, _sd_activation_cases, _ACT_TOL,
           flops=lambda c: 4 * c.args[0].size, bytes=elementwise_bytes),
    OpSpec("gelu", R.gelu, (_NAIVE16, _ACT_VEC), _any_shape, _sd_gelu_cases, _GELU_TOL,
           flops=lambda c: 6 * c.args[0].size, bytes=elementwise_bytes),
    OpSpec("gelu_tanh", R.gelu_tanh, (_NAIVE16, _ACT_VEC), _any_shape, _sd_gelu_cases, _GELU_TANH_TOL,
           flops=lambda c: 9 * c.args[0].size, bytes=elementwise_bytes),
    OpSpec("quick_gelu", R.quick_gelu, (_NAIVE16, _ACT_VEC), _any_shape, _sd_quick_gelu_cases, _QUICK_GELU_TOL,
           flops=lambda c: 4 * c.args[0].size, bytes=elementwise_bytes),
    # naive: unfused (split, gelu, multiply: three launches); fused (geglu.cl): one launch, VEC outputs per
    # work-item with vector loads and stores, WG work-items per work-group along a row
    OpSpec("geglu", R.geglu,
           (Variant("naive", launcher="sdcl.opencl_impl.variants.naive:{op}", dtypes=DTYPES,
                    # float16: gelu(g) is stored in half before the product, as a framework's float16 keeps it
                    tolerance={**_GEGLU_TOL, "float16": float16_tolerance(_GEGLU_TOL["float32"], roundings=2)}),
            Variant("fused", {"VEC": 16, "WG": 64}, space={"VEC": [1, 4, 16], "WG": [16, 64]},
                    constraint=lambda k, info: k["WG"] <= info.get("max_work_group_size", 64),
                    launcher="sdcl.opencl_impl.variants.rowwise:geglu_fused", tier="fused GELU", dtypes=DTYPES)),
           _geglu_cases, _sd_geglu_cases, _GEGLU_TOL, flops=lambda c: 4 * c.args[0].size, bytes=_geglu_bytes),
    # float16: float16 timesteps give a float16 embedding (the reference's contract; computed in float, the output
    # rounded to half once: the tolerance derived from float32's)
    OpSpec("timestep_embedding", R.timestep_embedding, (_NAIVE16,), _timestep_cases, _timestep_sd,
           _TIME_TOL, flops=lambda c: 6 * c.args[0].size * c.args[1],
           bytes=lambda c: c.args[0].nbytes + c.args[0].size * c.args[1] * c.args[0].itemsize),
    OpSpec("token_embedding", R.token_embedding, (_NAIVE16,), _token_cases, _token_sd,
           _ONE_ROUNDING_TOL, flops=lambda c: c.args[0].size * c.args[1].shape[1], bytes=_token_bytes),
    OpSpec("add", R.add, (_NAIVE16,), _broadcast_cases, _broadcast_sd, _ONE_ROUNDING_TOL,
           flops=lambda c: c.args[0].size, bytes=elementwise_bytes),
    OpSpec("mul", R.mul, (_NAIVE16,), _broadcast_cases, _broadcast_sd, _ONE_ROUNDING_TOL,
           flops=lambda c: c.args[0].size, bytes=elementwise_bytes),
    OpSpec("concat", R.concat, (_NAIVE16,), _concat_cases, _concat_sd, _EXACT_TOL,
           flops=lambda c: 0, bytes=_concat_bytes),
    OpSpec("upsample_nearest2x", R.upsample_nearest2x, (_NAIVE16, _UPSAMPLE_ROWS), _upsample_cases, _upsample_sd,
           _EXACT_TOL, flops=lambda c: 0, bytes=lambda c: 5 * c.args[0].nbytes),
    OpSpec("permute", R.permute, (_NAIVE16, _PERMUTE_TILED), _permute_cases, _permute_sd, _EXACT_TOL,
           flops=lambda c: 0, bytes=elementwise_bytes),
]
