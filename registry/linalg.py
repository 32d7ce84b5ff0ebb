"""Registry rows: linear algebra (matmul, batched_matmul, linear, conv2d) and attention.

Shapes named sd15_* / sd21_* are the real SD 1.5 / SD 2.1-base shapes at a 512x512 image (64x64 latent), batch 2
(classifier-free guidance); the VAE decodes one image.
"""

from __future__ import annotations

import math

import numpy as np

from sdcl.registry.spec import DTYPES, Case, OpSpec, Tolerance, Variant, float16_tolerance
from sdcl.registry.fuzz import dim, dims, randn, seed_of
from sdcl.reference import ops as R

NAIVE = "sdcl.opencl_impl.variants.naive:{op}"     # the naive launcher of each op
GEMM = "sdcl.opencl_impl.variants.gemm:{op}"       # matmul, batched_matmul, linear over the gemm kernels
CONV = "sdcl.opencl_impl.variants.conv:"
ATTENTION = "sdcl.opencl_impl.variants.attention:"

# A length-K dot product summed in order: each addition rounds the running sum s_k (|s_k| ~ sqrt(k) for zero-mean
# terms), so the error is a random walk of std ~ eps * K / sqrt(6), while the outputs reach max|ref| ~ 4 sqrt(K)
# (unit inputs, ~1e5 outputs): error / max|ref| ~ 0.1 sqrt(K) eps per element, and ~4.5x that for the largest of
# ~1e5 elements. For K up to 23040 (SD's 3x3 conv over the 2560 concatenated channels of up_blocks.0) that is
# 5e-6 in float32 (measured on PoCL: 5.4e-6) and 1e-14 in float64; the worst-case bound K eps sum|terms| is far
# beyond what rounding does in practice. The bound is absolute (rtol 0) because the error follows the size of the
# terms, not the result's: an output near 0 from cancellation keeps it. Its scale is max|ref|, or per element
# sqrt(sum_k (a_k b_k)^2) where larger (Tolerance "dot"): the size the partial sums of those terms reach with random
# signs, ~sqrt(K) for unit inputs like max|ref|/4, so the same atol holds for a single output whose terms cancel
# ((1x44)@(44x1) on the H200: that output's max|ref| was far below its terms' size).
_DOT_TOL = {
    "float32": Tolerance(0.0, 2e-5, "length-K dot product: rounding random walk ~0.1 sqrt(K) eps of max|ref|, "
                                    "x4.5 for the largest of 1e5 outputs: 5e-6 at K = 23040; 4x margin; "
                                    "cancelling sums: of their terms' size", atol_scale="dot"),
    "float64": Tolerance(0.0, 4e-14, "length-K dot product, as float32 with eps = 2^-53: 1e-14 at K = 23040; "
                                     "4x margin; cancelling sums: of their terms' size", atol_scale="dot"),
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


# Tensor-core float16 attention (flash_mma_f16): q, k and v are rounded to half as they are staged. What that moves
# the result depends on attention's conditioning: a score's error scale * sum_d q_d k_d (dq_d + dk_d), up to
# 2u scale sum|q_d k_d| (u = 2^-11), passes through exp as a relative error of its weight, so at the fuzzer's
# scale 3 the inputs' rounding alone moves the output by ~3e-3 of max|ref|, at SD's 1/sqrt(64) by ~4e-4. That part
# is allowed exactly, per element ("half_inputs": the reference on the half-rounded inputs against the reference);
# atol bounds the kernel's own arithmetic: the weights p rounded to half for P V (u each, random signs: a random
# walk of ~u/sqrt(3) sqrt(sum_j p_j^2 v_j^2) over normalized weights; 4.5x that for the largest of 1e5 outputs,
# 2.6u), the truncating float32 accumulation (<= Lk/16 ulp: 3e-5 at Lk = 4096) and exp2 (a few float32 ulp): 4u = 2e-3
# with margin. Its scale is per element the larger of max|ref| and sqrt(sum_j p_j^2 v_j^2) (_attention_terms), not
# max|ref| alone: where the weighted sum of v cancels, the output is far smaller than its terms (diffuse attention
# over a few keys whose v average out), and the thorough profile on an H100 failed correct kernels so (gemm_mma_f16,
# Lk 15, D 3, scale 0.05); reproduced under the PTX emulation on PoCL, the worst of 100 such cases beyond the inputs'
# rounding: 5.8u of max|ref| (flash_mma_f16: 4.1u), 1.9u (1.1u) of the larger scale.
_F16_ATTN_TOL = {
    "float32": Tolerance(0.0, 2e-3, "tensor-core float16 FlashAttention: the rounding of q, k, v to half allowed "
                                    "exactly per element (its effect grows with scale*|q||k|); the kernel's own: "
                                    "weights p rounded to half for P V (~2.6u of max|ref| at the largest of 1e5 "
                                    "outputs, u = 2^-11), truncated float32 accumulation; 4u",
                         atol_scale="half_inputs")}


def _io_bytes(case: Case, out_elems: int) -> int:
    """Read every input array once, write the output once (itemsize of the first input)."""
    arrays = case.arrays()
    return sum(a.nbytes for a in arrays) + out_elems * arrays[0].itemsize


# -------------------------------------------------------------------------------------------------- matmul

def _matmul_cases(d):
    m, k, n = dim(d, 65), dim(d, 129), dim(d, 65)
    return Case("random", tuple(randn(seed_of(d), (m, k), (k, n))))


def _matmul_sd():
    return [Case("sd21_attn_out_proj_l0_one_image", tuple(randn(0, (4096, 320), (320, 320)))),
            Case("sd21_text_proj", tuple(randn(1, (77, 1024), (1024, 1024))))]


def _matmul_flops(c: Case) -> int:
    (m, k), n = c.args[0].shape, c.args[1].shape[1]
    return 2 * m * k * n


# ------------------------------------------------------------------------------------------ batched_matmul

def _bmm_cases(d):
    b, m, k, n = dim(d, 5), dim(d, 33), dim(d, 65), dim(d, 33)
    return Case("random", tuple(randn(seed_of(d), (b, m, k), (b, k, n))))


def _bmm_sd():
    # per-head attention products of SD 2.1 cross-attention at 64x64: (B*H, Lq, D) @ (B*H, D, Lk), then P @ V
    return [Case("sd21_cross_scores_l0", tuple(randn(0, (10, 4096, 64), (10, 64, 77)))),
            Case("sd21_cross_pv_l0", tuple(randn(1, (10, 4096, 77), (10, 77, 64)))),
            Case("sd21_self_scores_l3", tuple(randn(2, (40, 64, 64), (40, 64, 64))))]


def _bmm_flops(c: Case) -> int:
    (b, m, k), n = c.args[0].shape, c.args[1].shape[2]
    return 2 * b * m * k * n


# -------------------------------------------------------------------------------------------------- linear

def _linear_cases(d):
    lead = dims(d, 2, 17)
    n_in, n_out = dim(d, 129), dim(d, 65)
    x, w, b, r = randn(seed_of(d), lead + (n_in,), (n_out, n_in), (n_out,), lead + (n_out,))
    bias, residual = d.boolean(), d.boolean()
    return Case("random" + "_bias" * bias + "_residual" * residual, (x, w, b) if bias else (x, w),
                {"residual": r} if residual else {})


def _linear_sd():
    x, w, b, r = randn(6, (2, 4096, 320), (320, 320), (320,), (2, 4096, 320))
    return [Case("sd21_qkv_l0", tuple(randn(0, (2, 4096, 320), (960, 320)))),       # to_q/k/v fused, 5 GFLOP
            Case("sd21_ff_proj_l0", tuple(randn(1, (2, 4096, 320), (2560, 320), (2560,)))),  # geglu proj
            Case("sd21_attn_out_l0", (x, w, b), {"residual": r}),   # to_out.0 + the block's skip, in the epilogue
            Case("sd21_cross_kv", tuple(randn(2, (2, 77, 1024), (320, 1024)))),       # to_k of attn2 at level 0
            Case("sd21_time_emb", tuple(randn(3, (2, 320), (1280, 320), (1280,)))),  # time_embedding.linear_1
            Case("sd21_text_fc1", tuple(randn(4, (2, 77, 1024), (4096, 1024), (4096,)))),
            Case("sd15_text_fc2", tuple(randn(5, (2, 77, 3072), (768, 3072), (768,))))]


def _epilogue_adds(c: Case) -> int:
    """Adds per output of linear's and conv2d's epilogue: the bias (argument 2), the residual."""
    return (len(c.args) > 2) + ("residual" in c.kwargs)


def _linear_flops(c: Case) -> int:
    x, w = c.args[0], c.args[1]
    rows = x.size // x.shape[-1]
    return 2 * rows * w.shape[0] * w.shape[1] + rows * w.shape[0] * _epilogue_adds(c)


def _linear_bytes(c: Case) -> int:
    x, w = c.args[0], c.args[1]
    return _io_bytes(c, x.size // x.shape[-1] * w.shape[0])


# ------------------------------------------------------------------------------------------- GEMM variants
# matmul, batched_matmul and linear share the kernels of kernels/gemm/ (launchers: opencl_impl/variants/gemm.py);
# the layout (B or B^T, bias, batch) is a run-time argument, so one build of a config serves all three ops.
# A config is admitted when it fits the device's work-group and local-memory limits; local memory is counted in
# float64 (8 bytes a word), so an admitted config runs in either dtype (the tuner tunes float32, the policy applies
# the same knobs to float64 calls). The tolerance is the rows' _DOT_TOL: tiled, tiled_reg and cpu_reg accumulate
# their length-K dot products with fma in the input dtype (in differing orders; gemm_cpu_reg's B^T path sums KV
# interleaved partial sums, which only shortens the rounding random walk), so the same bound holds; mma_tf32: below.

def _local_fits(words: int, info: dict) -> bool:
    return words * 8 <= info.get("local_mem_kib", 32) * 1024


def _tiled_fits(k: dict, info: dict) -> bool:
    return k["TS"] ** 2 <= info.get("max_work_group_size", 256) and _local_fits(2 * k["TS"] ** 2, info)


def _tiled_reg_fits(k: dict, info: dict) -> bool:
    """Runs of VWM (VWN) rows (columns) tile the work-item's share; register blocks of at most 128 accumulators
    (a GPU has 255 registers per thread, and the prefetched tiles take some), no side over 16: 16 x 8 blocks were
    the H200's fastest at 4096^3 (128 x 256 tiles: 42.0 TFLOP/s; the best 8 x 8 blocks, 64 x 256: 40.3), though
    square blocks give the most fma per local-memory read; the work-group and the staged A and B tiles fit."""
    mwi, nwi = k["MWG"] // k["MDIMC"], k["NWG"] // k["NDIMC"]
    return (k["MWG"] % (k["MDIMC"] * k["VWM"]) == 0 and k["NWG"] % (k["NDIMC"] * k["VWN"]) == 0
            and k["KWG"] % 4 == 0 and mwi * nwi <= 128 and max(mwi, nwi) <= 16
            and k["MDIMC"] * k["NDIMC"] <= info.get("max_work_group_size", 256)
            and _local_fits(k["KWG"] * (k["MWG"] + k["NWG"]), info))


def _mma_fits(k: dict, info: dict) -> bool:
    """Warp tiles of whole 16 x 8 mma tiles, at most 16 of them per warp (two float32 accumulator sets of 64
    registers each: the step's mma sums and the running sums), the work-group and the tiles fit (float32: the
    kernel is float32 only; float64 calls run tiled_reg at its defaults)."""
    wm, wn = k["MWG"] // k["WARPS_M"], k["NWG"] // k["WARPS_N"]
    return (k["MWG"] % (16 * k["WARPS_M"]) == 0 and k["NWG"] % (8 * k["WARPS_N"]) == 0 and k["KWG"] % 8 == 0
            and (wm // 16) * (wn // 8) <= 16
            and 32 * k["WARPS_M"] * k["WARPS_N"] <= info.get("max_work_group_size", 256)
            and (k["MWG"] + k["NWG"]) * (k["KWG"] + 4) * 4 <= info.get("local_mem_kib", 32) * 1024)


_NAIVE = Variant("naive", launcher=NAIVE)
# float16 (arrays in half, the sums in float: common.h DATA) for the GEMM ops, whose kernels (gemm/naive.cl,
# cpu_reg.cl, tiled_reg.cl, mma_f16.cl) read and write DATA; its own Variant, as _NAIVE is shared with other rows.
# The float16 tolerance is derived from the float32 one (spec.float16_tolerance).
_NAIVE_GEMM = Variant("naive", launcher=NAIVE, dtypes=DTYPES)
_GEMM_TILED = Variant("tiled", {"TS": 16}, space={"TS": [8, 16, 32]}, constraint=_tiled_fits, launcher=GEMM,
                      tier="tiled GEMM", dtypes=DTYPES)
# GPU-style (NVIDIA: 64x64 or 128x128 work-group tiles, 8x8 outputs per work-item)
_GEMM_TILED_REG = Variant(
    "tiled_reg", {"MWG": 64, "NWG": 64, "KWG": 16, "MDIMC": 8, "NDIMC": 8, "VWM": 4, "VWN": 4},
    space={"MWG": [64, 128], "NWG": [64, 128, 256], "KWG": [16, 32], "MDIMC": [8, 16], "NDIMC": [8, 16, 32],
           "VWM": [4], "VWN": [4]},
    constraint=_tiled_reg_fits, devices=("GPU",), needs=("long_loops",), launcher=GEMM, tier="tiled GEMM",
    dtypes=DTYPES)
# CPU-style (PoCL): MR x NR register blocks; B (K, N) vectorised along n (NR the vector width), B^T along k (KV).
# One kernel serves both layouts (B^T is a run-time flag), so both declare every knob: KU unrolls the B (K, N) path,
# KV is the B^T path's vector width; each tunes its own.
# GM: block rows per group of consecutive work-items (B's columns reused from cache GM times; 1: none).
_CPU_REG_NN = Variant("cpu_reg", {"MR": 8, "NR": 16, "KU": 4, "KV": 16, "GM": 8},
                      space={"MR": [4, 8], "NR": [8, 16], "KU": [1, 4], "GM": [1, 8, 32]}, devices=("CPU",),
                      launcher=GEMM, tier="tiled GEMM", dtypes=DTYPES)
_CPU_REG_NT = Variant("cpu_reg", {"MR": 4, "NR": 4, "KU": 4, "KV": 16, "GM": 8},
                      space={"MR": [2, 4], "NR": [2, 4], "KV": [8, 16], "GM": [1, 8, 32]}, devices=("CPU",),
                      launcher=GEMM, tier="tiled GEMM", dtypes=DTYPES)
# NVIDIA tensor cores (inline PTX mma.sync m16n8k8 TF32; float32 only: TF32 is a float32 format). SPLIT 3 (3xTF32: x = hi + lo,
# lo*hi + hi*lo + hi*hi, the dropped lo*lo ~2^-22 relative) keeps float32-level products, and each KWG step's mma
# sums (the tensor cores truncate as they accumulate) are added to float32 accumulators with rounded adds, so the
# rows' float32 tolerance holds: measured max|err| / max|C| 6.4e-7 at 4096^3 on an H200 (fma kernels: 3.0e-6).
# SPLIT 1 (plain TF32) is left out of the space: TF32 rounds each operand to 11 significant bits (relative error
# <= 2^-11, products ~2^-10), measured max|err| / max|ref| 1e-4 .. 3.6e-4 (emulated, K = 5 .. 1024; 3.0e-4 at
# 4096^3 on the H200), which the float32 rows' 2e-5 cannot admit, and the registry has one tolerance per op and
# dtype; a row of its own would need ~1.5e-3 (4x margin).
_GEMM_MMA_TF32 = Variant(
    "mma_tf32", {"MWG": 64, "NWG": 64, "KWG": 16, "WARPS_M": 2, "WARPS_N": 2, "SPLIT": 3, "MMA_EMULATE": 0},
    space={"MWG": [64, 128], "NWG": [64, 128], "KWG": [16, 32], "WARPS_M": [2, 4], "WARPS_N": [2, 4]},
    constraint=_mma_fits, needs=("nvidia_ptx",), devices=("GPU",), dtypes=("float32",), launcher=GEMM,
    tier="tensor-core GEMM (3xTF32)")



def mma_f16_local_bytes(k: dict, stages: int) -> int:
    """Local memory of the tensor-core float16 GEMM tiles (kernels/gemm/mma_f16.h) with `stages` buffers: the half
    tiles (MWG + NWG) x (KWG + 8) each."""
    return stages * (k["MWG"] + k["NWG"]) * (k["KWG"] + 8) * 2


def implicit_mma_gather_fits(k: dict) -> bool:
    """conv2d implicit_mma_f16's gather (kernels/conv2d/implicit_mma_f16.cl): each of the 32*WARPS_M*WARPS_N
    work-items keeps one of the NWG columns and KWG / (work-items per column) of its rows, a multiple of 4."""
    wgs = 32 * k["WARPS_M"] * k["WARPS_N"]
    return wgs % k["NWG"] == 0 and k["KWG"] % (4 * (wgs // k["NWG"])) == 0


def _implicit_mma_fits(k: dict, info: dict) -> bool:
    """As _mma_f16_fits, with the gather's rule (kept with NHWC: an input of C % 8 != 0 takes the gather); NHWC's
    copies are cp.async (STAGES 2 to 4; ASYNC, the gather's weight copy, then 0), the gather's STAGES at most 2."""
    nhwc = k.get("NHWC", 0)
    return (_mma_f16_fits({**k, "ASYNC": 1} if nhwc else k, info) and implicit_mma_gather_fits(k)
            and (not k.get("ASYNC") if nhwc else k["STAGES"] <= 2))


def _mma_f16_fits(k: dict, info: dict) -> bool:
    """Warp tiles of whole 16 x 8 mma tiles, at most 32 of them per warp (one set of float32 accumulators, 128
    registers), KWG whole k16 steps, the work-group and the half tiles (MWG + NWG) * (KWG + 8), STAGES times, fit;
    cp.async (ASYNC) with two or more buffers, the register staging with one or two."""
    wm, wn = k["MWG"] // k["WARPS_M"], k["NWG"] // k["WARPS_N"]
    return (k["MWG"] % (16 * k["WARPS_M"]) == 0 and k["NWG"] % (8 * k["WARPS_N"]) == 0 and k["KWG"] % 16 == 0
            and (wm // 16) * (wn // 8) <= 32
            and 32 * k["WARPS_M"] * k["WARPS_N"] <= info.get("max_work_group_size", 256)
            and mma_f16_local_bytes(k, k.get("STAGES", 1)) <= info.get("local_mem_kib", 32) * 1024
            and (k.get("STAGES", 1) >= 2 if k.get("ASYNC") else k.get("STAGES", 1) <= 2))


# Order: untuned selection takes the last variant written for the device type (selection.Policy), so mma_tf32, which
# also needs NVIDIA PTX, comes before tiled_reg and runs only where the tuner measured it.
_GEMM_NN_VARIANTS = (_NAIVE_GEMM, _GEMM_TILED, _GEMM_MMA_TF32, _GEMM_TILED_REG, _CPU_REG_NN)
_GEMM_NT_VARIANTS = (_NAIVE_GEMM, _GEMM_TILED, _GEMM_MMA_TF32, _GEMM_TILED_REG, _CPU_REG_NT)

# Half storage: the weight (and im2col_half's lowered input) is rounded once to IEEE half, 11 significant bits, unit
# roundoff u = 2^-11 = 4.9e-4; products then accumulate in the input dtype. An output's error is sum_k x_k w_k d_k
# with |d_k| <= u (2u + u^2 with both operands rounded): at K = 1 up to u (2u) of |ref| <= max|ref|; for large K a
# random walk of std u/sqrt(3) sqrt(sum (x_k w_k)^2) ~ 0.28e-3 sqrt(K) against max|ref| ~ 4 sqrt(K) (as _DOT_TOL):
# 7e-5 of max|ref| per element (x sqrt 2 for two operands), ~4.5x that, 4.5e-4, for the largest of ~1e5 outputs.
# The float accumulation adds _DOT_TOL's 5e-6. The bound is the storage's, so float64 accumulation keeps it.
# Scale "dot" as _DOT_TOL: where the terms cancel, the worst case 2u sum|x_k w_k| <= 2u sqrt(K) sqrt(sum (x_k w_k)^2)
# stays within 4u of that scale up to K = 4 (the fuzzer's short dots), the random walk's 4.5 sqrt(2/3) u beyond.
_HALF_TOL = {
    dt: Tolerance(0.0, 2e-3, "half storage: each stored operand rounded once to 11 significant bits (u = 2^-11): "
                             "<= 2u of max|ref| at K = 1, ~4.5e-4 for the largest of 1e5 outputs at large K; "
                             "2x margin over the K = 1 worst case; cancelling sums: of their terms' size",
                  atol_scale="dot")
    for dt in ("float32", "float64")}
# Tensor-core float16 (inline PTX mma.sync m16n8k16 f16 x f16 -> f32): both operands are rounded to half (the
# activation as it is staged, the weight where it is not already stored in half), 2u + u^2 of each product as in
# _HALF_TOL's two-operand case; the products of two halves are exact in float32, and the tensor cores add them into
# float32 accumulators with truncation (not round to nearest): at most one float32 ulp (2^-23 relative) of the
# running sum per k16 step, of one sign, so K/16 * 2^-23 of max|ref|: 1.7e-4 at K = 23040, below half rounding's
# 4.5e-4 there. _HALF_TOL (2e-3) holds both.
_F16_TOL = {
    "float32": Tolerance(0.0, 2e-3, "tensor-core float16: both operands rounded to 11 significant bits (u = 2^-11, "
                                    "<= 2u of max|ref| at K = 1, ~4.5e-4 at large K) and truncated float32 "
                                    "accumulation (<= K/16 ulp: 1.7e-4 at K = 23040); 2x margin over K = 1",
                         atol_scale="dot")}
# SPLITK, a host knob: split-K where the tiles leave compute units idle (0: the fewest splits within 10% of the
# fewest waves of work, variants.gemm.split_k; 1: none), the partial products added in order by a second kernel
# with the epilogue. STAGES: one or two local buffers of the staged tiles (the next step's global reads are
# prefetched into registers either way).
# LDSM: the fragments read from the staged tiles with ldmatrix (1; H100, float16 conv2d implicit_mma_f16 at the SD
# shapes: 2.775 ms against 3.282 with 32-bit local loads, linear within 1%) or with 32-bit local loads (0).
# PREFETCH (the GEMM's only: kernels/gemm/mma_f16.cl): the next step's tiles read into registers during the mma (1)
# or when staged (0); on an H100 both ran linear at the SD shapes 1.4x slower than c7ab9b7's kernel (0.733, 0.729
# against 0.524 ms).
# ASYNC (the GEMM's only): 1, where both operands are half and k-contiguous with rows 16-byte aligned (linear in the
# float16 dtype), the tiles are copied global -> local with cp.async, STAGES (2 to 4) buffers deep, no registers
# between; elsewhere, and with 0, the path above. H100, float16 linear at the SD shapes, one call
# (docs/results/ab-knobs-nvidia-h100-2.txt): 0.371 ms at 128 x 128 tiles two buffers deep against 0.733 through
# registers and 0.524 with c7ab9b7's kernel; 0.348 with 128 x 64 tiles (2 x 2 warps) three buffers deep, fastest at
# each of the seven shapes: the declared default since (0.94x of the old one in a later call,
# ab-knobs-nvidia-h100-7.txt; on NVIDIA GPUs tuning/default.json's type knobs, tuned in float32 half mode, still say
# 128 x 128).
# Registers (H100, ptxas through -cl-nv-verbose, `scripts/ab_knobs.py --ptxas`, docs/results/ab-knobs-ptxas-nvidia-h100.txt):
# the float16 GEMM at the declared 128 x 64 tiles with 2 x 2 warps uses 242 registers a work-item (236 with LDSM 0), no
# spills, so an SM holds 2 of its 128-item work-groups (8 warps) where local memory (46 KB) allows 4; 128 x 128 with
# 2 x 2 warps spills (255 registers, 240 bytes of stack), with 2 x 4 warps 216; conv2d implicit_mma_f16's 2 x 4 warps
# use 96-104. In that call the UNet's linear shapes at 64 x 64 latents ran at 36-82 TFLOP/s and 4096^3 at 174: what
# caps them is likely this occupancy, not yet measured against a register cap: with SDCL_BUILD_OPTIONS
# "-cl-nv-maxrregcount=128" (and 168; conv2d's at 64 and 80) the driver's ptxas reported the same registers and the
# kernels ran in the same times (1.211 / 1.214 ms against 1.218 / 1.217 over two shapes, docs/results/
# ab-knobs-regcap-nvidia-h100.txt): NVIDIA's compiler ignores that spelling; its extension (cl_nv_compiler_options)
# spells "-cl-nv-maxrregcount <N>", two tokens, which driver 580 refuses: every build fails (docs/results/
# ab-knobs-regcap-nvidia-h100-2.txt), so no register cap is reachable here. NVIDIA's OpenCL emits PTX for
# .target sm_90, also with -cl-nv-arch sm_90a, and ptxas refuses Hopper's wgmma and setmaxnreg there
# (scripts/wgmma_probe.py, docs/results/wgmma-probe-nvidia-h100.txt): mma.sync is the fastest tensor-core
# instruction an OpenCL kernel reaches on these GPUs.
_MMA_F16_HALF = Variant(
    "mma_f16_half", {"MWG": 128, "NWG": 64, "KWG": 32, "WARPS_M": 2, "WARPS_N": 2, "MMA_EMULATE": 0, "SPLITK": 0,
                     "STAGES": 3, "LDSM": 1, "PREFETCH": 0, "ASYNC": 1},
    space={"MWG": [64, 128, 256], "NWG": [64, 128], "KWG": [16, 32, 64], "WARPS_M": [2, 4], "WARPS_N": [2, 4],
           "SPLITK": [0, 1], "STAGES": [1, 2, 3, 4], "LDSM": [0, 1], "PREFETCH": [0, 1], "ASYNC": [0, 1]},
    constraint=_mma_f16_fits, needs=("nvidia_ptx",), devices=("GPU",), dtypes=("float32", "float16"),
    tolerance=_F16_TOL, half_args=(1,), half_compute=True, launcher=GEMM, tier="tensor-core float16")
# The weight (argument 1) is read as half by the device type's register-blocked kernel (on an NVIDIA GPU by the
# tensor cores, mma_f16_half, declared last so that untuned selection takes it there; elsewhere it is not a
# candidate); a float32 weight passed in is rounded on the device first (a model stored in half passes float16
# weights and pays no conversion).
# float16 (every array half): the inputs are half values already, so no storage rounding is left and these run the
# kernels of tiled_reg and cpu_reg in float16 as they are: the float16 tolerance is theirs, derived from _DOT_TOL's
# float32 one. mma_f16_half in float16 keeps _F16_TOL's (derived): its truncated float32 accumulation (K/16 ulp)
# exceeds _DOT_TOL at SD's K.
_HALF_STORAGE_TOL = {**_HALF_TOL, "float16": float16_tolerance(_DOT_TOL["float32"])}
_LINEAR_VARIANTS = _GEMM_NT_VARIANTS + (
    Variant("tiled_reg_half", _GEMM_TILED_REG.knobs, space=_GEMM_TILED_REG.space, constraint=_tiled_reg_fits,
            devices=("GPU",), needs=_GEMM_TILED_REG.needs, tolerance=_HALF_STORAGE_TOL, half_args=(1,),
            launcher=GEMM, tier="half storage", dtypes=DTYPES),
    Variant("cpu_reg_half", _CPU_REG_NT.knobs, space=_CPU_REG_NT.space, devices=("CPU",),
            tolerance=_HALF_STORAGE_TOL, half_args=(1,), launcher=GEMM, tier="half storage", dtypes=DTYPES),
    _MMA_F16_HALF)


# -------------------------------------------------------------------------------------------------- conv2d

def _conv_cases(d):
    n, c, o = dim(d, 3), dim(d, 33), dim(d, 33)
    kh = d.choice([1, 3, 3, 2, 5])
    kw = d.choice([kh, kh, kh, 1, 3])
    stride = d.choice([1, 1, 2, (2, 1), (1, 3)])
    padding = d.choice([0, 1, 1, (1, 0), (0, 1, 0, 1), (2, 1, 0, 3)])
    # A third of the cases belong to the families that the specialised variants handle, so that their fuzzing is not
    # mostly filtered away by `applies`: 1x1 stride 1 unpadded (gemm1x1), 3x3 stride 1 with any padding (Winograd).
    family = d.choice(["any", "any", "any", "any", "pointwise", "3x3_stride1"])
    if family == "pointwise":
        kh, kw, stride, padding = 1, 1, 1, 0
    elif family == "3x3_stride1":
        kh, kw, stride = 3, 3, 1
    pads = _pads4(padding)
    h = max(dim(d, 33), kh - pads[0] - pads[1])          # at least one output row and column
    w = max(dim(d, 33), kw - pads[2] - pads[3])
    x, wt, b = randn(seed_of(d), (n, c, h, w), (o, c, kh, kw), (o,))
    kwargs = {"stride": stride, "padding": padding}
    bias = d.boolean()
    if d.boolean():   # a residual added in the epilogue: the output's shape, or one value per sample and channel
        n_, o_, oh, ow = _conv_out(Case("", (x, wt), kwargs))
        kwargs["residual"] = randn(seed_of(d) + 1, (n_, o_) + ((oh, ow) if d.boolean() else (1, 1)))[0]
    return Case("random" + "_bias" * bias + "_residual" * ("residual" in kwargs), (x, wt, b) if bias else (x, wt),
                kwargs)


def _conv_sd():
    def case(name, seed, x, w, **kw):
        xs, ws, bs = randn(seed, x, w, (w[0],))
        return Case(name, (xs, ws, bs), kw)
    return [
        case("sd21_conv_in", 0, (2, 4, 64, 64), (320, 4, 3, 3), padding=1),
        # a ResNet block's conv2, its skip connection added in the epilogue
        case("sd21_resnet_conv2_l0", 1, (2, 320, 64, 64), (320, 320, 3, 3), padding=1,
             residual=randn(10, (2, 320, 64, 64))[0]),
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


def _pads4(padding) -> tuple:
    """(top, bottom, left, right) from p, (ph, pw) or the 4-tuple, as the reference reads padding."""
    if isinstance(padding, int):
        return (padding,) * 4
    return (padding[0], padding[0], padding[1], padding[1]) if len(padding) == 2 else tuple(padding)


def _conv_params(args, kwargs) -> tuple:
    """((kh, kw), (sh, sw), (top, bottom, left, right)) of a conv2d call: conformance passes stride and padding by
    keyword, the OpenCL ops' dispatch positionally (x, weight, bias, stride, padding)."""
    st_ = kwargs.get("stride", args[3] if len(args) > 3 else 1)
    padding = kwargs.get("padding", args[4] if len(args) > 4 else 0)
    sh, sw = tuple(st_) if isinstance(st_, (tuple, list)) else (st_, st_)
    return tuple(args[1].shape[2:]), (sh, sw), _pads4(padding)


def _conv_out(c: Case) -> tuple:
    x, w = c.args[0], c.args[1]
    _, (sh, sw), p = _conv_params(c.args, c.kwargs)
    oh = (x.shape[2] + p[0] + p[1] - w.shape[2]) // sh + 1
    ow = (x.shape[3] + p[2] + p[3] - w.shape[3]) // sw + 1
    return x.shape[0], w.shape[0], oh, ow


def _conv_flops(c: Case) -> int:
    n, o, oh, ow = _conv_out(c)
    w = c.args[1]
    return 2 * n * o * oh * ow * w.shape[1] * w.shape[2] * w.shape[3] + n * o * oh * ow * _epilogue_adds(c)


def _conv_bytes(c: Case) -> int:
    return _io_bytes(c, math.prod(_conv_out(c)))


def _pointwise(args, kwargs) -> bool:
    """gemm1x1 handles 1x1 kernels with stride 1 and no padding."""
    return _conv_params(args, kwargs) == ((1, 1), (1, 1), (0, 0, 0, 0))


def _winograd_3x3(args, kwargs) -> bool:
    """Winograd F(m x m, 3 x 3) handles 3x3 kernels with stride 1 and any padding."""
    k, s, _ = _conv_params(args, kwargs)
    return k == (3, 3) and s == (1, 1)


def _wg_fits(k: dict, info: dict) -> bool:
    return k.get("WG", 1) <= info.get("max_work_group_size", 256)


def _direct_fits(k: dict, info: dict) -> bool:
    """The work-group (TILE_W x TILE_H) fits, the register block (OC_PER_ITEM x PX_PER_ITEM accumulators) stays at
    most 128, and the local staging of C_CHUNK channels fits for SD's common case, a 3x3 stride-1 conv in float32
    (the launcher stages fewer channels at once where a shape or float64 needs more room)."""
    ph, pw = k["TILE_H"] - 1 + 3, k["TILE_W"] * k["PX_PER_ITEM"] - 1 + 3
    local_bytes = k["C_CHUNK"] * (ph * pw + k["OC_PER_ITEM"] * 9) * 4
    return (k["TILE_H"] * k["TILE_W"] <= info.get("max_work_group_size", 256)
            and k["OC_PER_ITEM"] * k["PX_PER_ITEM"] <= 128
            and local_bytes <= info.get("local_mem_kib", 32) * 1024)


# Winograd F(4x4, 3x3) interpolates at 0, +-1, +-2 and infinity: B^T holds 4 and 5, A^T the rows
# [0 1 -1 2 -2 0], [0 1 1 4 4 0], [0 1 -1 8 -8 1]. The products summed in the transformed domain are exact in
# real arithmetic but their rounding errors are not cancelled: the output transform scales them by up to 8 per
# dimension, so a tile's last row and column carry ~3x the error of its first per dimension and the corner ~10x
# (measured, docs/WINOGRAD.md). Measured on PoCL (cpu_reg and naive GEMMs): max error 6-12x the direct dot
# product's, up to 3.7e-5 of max|ref| at SD's K = 17280 in float32, 7.8e-14 in float64: 8x _DOT_TOL, ~4x margin.
# F(2x2, 3x3) (points 0, +-1; entries 1 and 1/2) measured below im2col's error everywhere: it keeps the row's.
_WINOGRAD4_TOL = {
    "float32": Tolerance(0.0, 1.6e-4, "F(4x4,3x3): A^T entries up to 8 (points +-2) amplify the transformed "
                                      "products' rounding; measured 3.7e-5 of max|ref| at K = 17280 (6-12x the "
                                      "direct dot's): 8x the dot-product tolerance", atol_scale="dot"),
    "float64": Tolerance(0.0, 3.2e-13, "F(4x4,3x3) as float32 with eps = 2^-53: measured 7.8e-14 at K = 17280; "
                                       "8x the dot-product tolerance", atol_scale="dot"),
}

# Order matters where nothing is tuned: the policy then runs the last variant here that handles the shape
# (opencl_impl/selection.py). So winograd2x2 handles 3x3 stride 1: it is more accurate than the direct sum, and on
# PoCL it stayed within 2.3x of the fastest variant at every SD 3x3 stride-1 shape measured (the fastest at up to
# three of them). gemm1x1 handles pointwise convs, and im2col everything else. winograd4x4
# (fastest at 64x64 latents, 7x slower than im2col at 8x8 with 2560 channels), im2win and direct_tiled run where
# the tuner timed them fastest.
# float16 (arrays in half, the sums in float: common.h DATA) where a kernel reads and writes DATA: the naive conv
# (its own Variant: _NAIVE is shared with other rows), direct_tiled, im2win (its layouts half: copies), im2col and
# gemm1x1 (a float32 product of the half values, one rounding: opencl_impl/variants/conv.py), winograd2x2/4x4 (the
# transforms and their product in float32 scratch, one rounding) and implicit_mma_f16; the float16 tolerance is
# derived from the float32 one (spec.float16_tolerance). im2col_half in float16 would be im2col's float16 path.
_CONV_VARIANTS = (
    Variant("naive", launcher=NAIVE, dtypes=DTYPES),
    # im2win and direct_tiled: CPU-style register blocks, OC_VEC / OC_PER_ITEM output channels as one REAL vector
    Variant("direct_tiled", {"TILE_H": 8, "TILE_W": 4, "PX_PER_ITEM": 8, "OC_PER_ITEM": 16, "C_CHUNK": 32},
            space={"TILE_H": [4, 8], "TILE_W": [4, 8], "PX_PER_ITEM": [4, 8], "OC_PER_ITEM": [8, 16], "C_CHUNK": [16]},
            constraint=_direct_fits, needs=("long_loops",), launcher=CONV + "direct_tiled", tier="tiled direct conv",
            dtypes=DTYPES),
    Variant("im2win", {"WG": 64, "OC_VEC": 16, "OW_BLOCK": 8, "LOCAL_O": 8},
            space={"OC_VEC": [8, 16], "OW_BLOCK": [4, 8], "LOCAL_O": [1, 8]},
            constraint=lambda k, info: _wg_fits(k, info) and k["LOCAL_O"] <= info.get("max_work_group_size", 256),
            launcher=CONV + "im2win", tier="im2win", dtypes=DTYPES),
    # WV: filters per work-item of the weight transform (kernels/conv2d/winograd.cl). Declared 1, the scalar
    # transform the H200 ran (a GPU keeps WV x 63 REALs in registers for F(4x4)); CPUs get 16 from their tables
    Variant("winograd4x4", {"WG": 64, "WV": 1}, space={"WG": [16, 64, 256], "WV": [1, 4, 16]}, constraint=_wg_fits,
            applies=_winograd_3x3,
            tolerance=_WINOGRAD4_TOL, launcher=CONV + "winograd4x4", tier="Winograd", dtypes=DTYPES),
    # GEMM lowerings: the GEMM itself is the matmul / batched_matmul row's business (tuned there); the knobs here are
    # the layout kernels' work-group size and how many lowered columns a work-item writes.
    Variant("im2col", {"WG": 256, "COLS_PER_ITEM": 8}, space={"WG": [64, 256], "COLS_PER_ITEM": [1, 4, 8]},
            constraint=_wg_fits, launcher=CONV + "im2col", tier="im2col", dtypes=DTYPES),
    Variant("gemm1x1", {"WG": 64}, space={"WG": [64, 256]}, constraint=_wg_fits, applies=_pointwise,
            launcher=CONV + "gemm1x1", tier="im2col", dtypes=DTYPES),
    Variant("winograd2x2", {"WG": 64, "WV": 1}, space={"WG": [16, 64, 256], "WV": [1, 4, 16]}, constraint=_wg_fits,
            applies=_winograd_3x3,
            launcher=CONV + "winograd2x2", tier="Winograd", dtypes=DTYPES),
    # half storage of the weight (argument 1) and of the lowered input; the GEMM is the device type's register-blocked
    # kernel at the matmul row's tuned knobs
    Variant("im2col_half", {"WG": 256, "COLS_PER_ITEM": 8}, space={"WG": [64, 256], "COLS_PER_ITEM": [1, 4, 8]},
            constraint=_wg_fits, tolerance=_HALF_TOL, half_args=(1,), launcher=CONV + "im2col_half",
            tier="half storage"),
    # implicit GEMM on NVIDIA tensor cores in float16: im2col's product with the lowered slices gathered into local
    # memory, never written (a work-item keeps one column of the gathered tile and a run of its rows in fours:
    # _implicit_mma_fits);
    # SPLITK, STAGES and LDSM: as mma_f16_half's (split-K over R; local buffers; ldmatrix); ASYNC: the half weight
    # tile copied with cp.async (two buffers), the gather through registers (H100, float16, the SD shapes: 0.97x of
    # ASYNC 0, docs/results/ab-knobs-nvidia-h100-3.txt); NHWC: no gather, x and the weight first transposed to
    # channels-last half copies and both tiles copied with cp.async, STAGES 2 to 4 deep (where C % 8 == 0; elsewhere
    # the gather): 1, with 128 x 64 tiles three buffers deep. H100, float16, the registry's SD shapes, one call
    # (docs/results/ab-knobs-nvidia-h100-5.txt): 1.557 ms against the gather's 2.839 (0.55x; 0.59x at the GEMM's
    # 128 x 128 two deep; 0.40x for the 3x3 320 at 64x64, 0.48x the VAE's 512x512, 0.87x-1.05x at 8x8 and 16x16,
    # where the weight's channels-last copy weighs as much as the product). MWG 16 and 32 (WARPS_M 1): for few output
    # channels: the VAE's conv_out (O = 3) 0.411 ms in 64-row tiles (61 of 64 rows idle), 0.299 in 32-row ones (H100,
    # float16, docs/results/tune-float16-nvidia-h100-3.txt).
    Variant("implicit_mma_f16", {**{k: v for k, v in _MMA_F16_HALF.knobs.items() if k != "PREFETCH"}, "ASYNC": 0,
                                 "NHWC": 1, "WARPS_N": 4},
            space={**{k: v for k, v in _MMA_F16_HALF.space.items() if k != "PREFETCH"},
                   "KWG": [32, 64], "NHWC": [0, 1], "MWG": [16, 32, 64, 128, 256], "WARPS_M": [1, 2, 4]},
            constraint=_implicit_mma_fits,
            needs=("nvidia_ptx",), devices=("GPU",), dtypes=("float32", "float16"), tolerance=_F16_TOL,
            half_args=(1,), half_compute=True, launcher=CONV + "implicit_mma_f16", tier="tensor-core float16"),
)


# ----------------------------------------------------------------------------------------------- attention

def _attention_cases(d):
    b, heads, hd = dim(d, 3), d.choice([1, 2, 3, 5, 8]), dim(d, 17)
    causal = d.boolean()
    lq = dim(d, 33)
    lk = lq if causal else dim(d, 33)
    q, k, v = randn(seed_of(d), (b, lq, heads * hd), (b, lk, heads * hd), (b, lk, heads * hd))
    kwargs = {"causal": causal}
    if d.boolean():
        kwargs["scale"] = d.choice([0.05, 0.125, 1.0, 3.0])
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


def _attention_terms(q, k, v, heads, causal=False, scale=None):
    """sqrt(sum_j (p_j v_j)^2) per output element: the size of the terms of P V's sum over the keys, with P the
    reference's attention weights."""
    p = R.attention_weights(q, k, heads, causal, scale)
    return R.merge_heads(np.sqrt(np.matmul(np.square(p), np.square(R.split_heads(v, heads)))))


def _attention_flops(c: Case) -> int:
    q, k = c.args[0], c.args[1]
    b, lq, hd = q.shape
    lk = k.shape[1]
    pairs = lq * (lq + 1) // 2 if c.kwargs.get("causal") else lq * lk
    return b * pairs * (4 * hd + 3 * c.args[3])     # q.k and p v per pair; exp, sum, max per pair and head


def _attention_bytes(c: Case) -> int:
    return _io_bytes(c, c.args[0].size)


# The tiled kernels compile the head dimension in (-D HEAD_DIM) and hold their tiles in local memory, so a knob
# setting is admitted when its tiles fit the device at SD's largest head dim (160, SD 1.x's 1280 channels / 8
# heads) in float32; the launchers check the actual D and dtype before they build.
MAX_HEAD_DIM = 160


def attention_local_bytes(variant: str, k: dict, d: int, itemsize: int = 4) -> int:
    """Local memory of kernels/attention/tiled.cl's attention_flash / attention_softmax_fused_pv and of
    attention/flash_reg.cl for tile knobs k, head dim d."""
    if variant == "flash_mma_f16":  # half tiles: Q (16*WARPS rows) and K (BK rows), D padded to 16, pitch + 8; V^T
        dk, dn = -(-d // 16) * 16, -(-d // 8) * 8       # (ASYNC: K and V key-major, two buffers of each)
        if k.get("ASYNC"):
            return 2 * (16 * k["WARPS"] + 4 * k["BK"]) * (dk + 8)
        return 2 * ((16 * k["WARPS"] + k["BK"]) * (dk + 8) + dn * (k["BK"] + 8))
    if variant == "flash_reg":      # Q and P tiles (row stride BQ + 4), K tile (BK + 1), V tile, partial max and sum
        dp = -(-d // k["WL"]) * k["WL"]
        return (d * (k["BQ"] + 4) + k["BK"] * (k["BQ"] + 4) + d * (k["BK"] + 1) + k["BK"] * dp
                + 2 * k["BQ"] * k["WL"]) * itemsize
    dp = -(-d // (k["WL"] * k["VEC"])) * k["WL"] * k["VEC"]     # D padded to a multiple of WL*VEC (the V tile)
    words = k["BK"] * dp + k["BQ"] * k["BK"]                    # V tile, P tile
    if variant == "flash":
        words += d * k["BK"] + 2 * k["BQ"] * k["WL"]            # K tile, per-row partial max and sum
    return words * itemsize


def _tiles_fit(variant: str):
    def fits(k: dict, info: dict) -> bool:
        return (k["BK"] % (k["WL"] * k["VEC"]) == 0 and k["BQ"] % k["RQ"] == 0
                and k["WL"] * k["VEC"] > 1                      # one lane of one element: no SIMD at all
                and k["WL"] * k["BQ"] // k["RQ"] <= info.get("max_work_group_size", 256)
                and attention_local_bytes(variant, k, MAX_HEAD_DIM) <= info.get("local_mem_kib", 32) * 1024
                and k.get("TPR", 1) <= k.get("WG", 1) <= info.get("max_work_group_size", 256))
    return fits


def _flash_reg_fits(k: dict, info: dict) -> bool:
    """flash_reg keeps the query tile in local memory, so no useful tile fits at D = 160: its settings are admitted
    at SD 2.x's head dim (64); at larger D the launcher halves BK, then BQ, until they fit (_tile_knobs)."""
    wg = k["WL"] * k["BQ"] // k["RQ"]
    return (k["BK"] % k["WL"] == 0 and k["BQ"] % k["RQ"] == 0 and k["RQ"] % 4 == 0
            and 32 <= wg <= info.get("max_work_group_size", 256)
            and attention_local_bytes("flash_reg", k, 64) <= info.get("local_mem_kib", 32) * 1024)


def _flash_mma_fits(k: dict, info: dict) -> bool:
    """flash_mma_f16's settings, admitted at SD 2.x's head dim (64) as flash_reg's; the launcher shrinks the tiles
    at larger D."""
    return (k["BK"] % 16 == 0 and 32 * k["WARPS"] <= info.get("max_work_group_size", 256)
            and attention_local_bytes("flash_mma_f16", k, 64) <= info.get("local_mem_kib", 32) * 1024)


def _head_dim_at_most_max(args, kwargs) -> bool:
    return args[0].shape[2] // args[3] <= MAX_HEAD_DIM


# Tile knobs of both tiled kernels: BQ query rows x BK keys per tile, work-groups of (WL, BQ/RQ), RQ query rows
# per work-item, vectors of VEC along the keys and the head dimension. VEC 16 with WL 1 is the CPU form (PoCL
# vectorizes explicit vector types, not a work-item's loop: 4x faster than VEC 1 for flash on the 2-core EPYC),
# WL 16 with VEC 1 the GPU form (lanes share a tile's keys and columns); the defaults are the CPU form.
_TILES = {"BQ": 32, "BK": 32, "WL": 1, "RQ": 4, "VEC": 16}
# BQ 128: on a CPU the K tile's transposition into local memory is shared by more query rows (flash at SD 2.x's
# 4096 tokens on PoCL, 2 cores: 460 ms at 32 x 32, 366 at 128 x 64)
_TILE_SPACE = {"BQ": [32, 64, 128], "BK": [16, 32, 64], "WL": [1, 16], "VEC": [1, 16]}   # BK 16: 32 KiB devices
# flash's RQ 1: a work-item's live vectors (RQ x D/VEC accumulators, RQ x BK/VEC scores) within AVX2's 16 vector
# registers, which RQ 4 spills (SD 2.x's 4096 tokens, PoCL on the 2-core AVX2 EPYC, BQ 128, BK 64, VEC 16: 1042 ms
# at RQ 4, 822 at RQ 2, 671 at RQ 1); RQ 2 left out, as softmax_fused's RQ: every setting of a space is built and
# checked in the tests and the dev profile (CI's time)
_FLASH_SPACE = {**_TILE_SPACE, "RQ": [1, 4]}
# float16 (q, k, v and o in half, the arithmetic and every scratch array in float: kernels/common.h DATA) where the
# kernels read and write DATA: naive (its own Variant: _NAIVE is shared with other rows), softmax_fused (q and k
# widened to float32 for its GEMM, so S is float32), flash, flash_reg and flash_mma_f16; the float16 tolerance is
# derived from the float32 one (spec.float16_tolerance; flash_mma_f16's "half_inputs" allowance is zero for inputs
# that are half already, leaving its own atol). gemm stays float32 / float64: its scores are the public GEMM's, which
# would round them to half before exp amplifies that.
_ATTENTION_VARIANTS = (
    Variant("naive", launcher=NAIVE, dtypes=DTYPES),
    # gemm: heads-first permutes, S = Q K^T and P V by the public batched_matmul, the public softmax between
    Variant("gemm", launcher=ATTENTION + "gemm", tier="tiled GEMM", dtypes=DTYPES),
    # softmax_fused (attention/softmax_fused_stats.cl, attention/tiled.cl): S by the GEMM; per-row max and sum (TPR
    # work-items per row, WG per work-group, vectors of VEC); P V with exp(S*scale - max)/sum made per tile in local
    # memory
    Variant("softmax_fused", {**_TILES, "WG": 64, "TPR": 1}, space={**_TILE_SPACE, "TPR": [1, 64]},
            constraint=_tiles_fit("softmax_fused"), applies=_head_dim_at_most_max,
            launcher=ATTENTION + "softmax_fused", tier="partially fused softmax", dtypes=DTYPES),
    # flash (attention/tiled.cl): the same tiles, the online softmax in the work-group, no S in global memory
    Variant("flash", dict(_TILES), space=_FLASH_SPACE, constraint=_tiles_fit("flash"),
            applies=_head_dim_at_most_max, launcher=ATTENTION + "flash", tier="FlashAttention",
            dtypes=DTYPES),
    # flash_reg (attention/flash_reg.cl): flash for GPUs: the query tile in local memory, a work-item's RQ query
    # rows x BK/WL keys of the scores and RQ rows x D/WL columns of the output in registers
    Variant("flash_reg", {"BQ": 64, "BK": 32, "WL": 8, "RQ": 8},
            space={"BQ": [32, 64], "BK": [32, 64], "WL": [8, 16], "RQ": [4, 8]}, constraint=_flash_reg_fits,
            applies=_head_dim_at_most_max, devices=("GPU",), launcher=ATTENTION + "flash_reg", tier="FlashAttention",
            dtypes=DTYPES),
    # flash_cpu_reg (attention/flash_cpu_reg.cl): flash for CPUs: K and V packed into blocks of VEC keys, then each
    # work-item BQ query rows with no local memory and no barriers; per chunk of KC keys (read from cache by every
    # group of RQ rows) the group's scores as VEC-wide fmas (no horizontal sums), one max, rescale and sum a chunk
    # (not a tile), then P V with RQ rows x VEC columns in registers. PoCL, 2-core AVX2 EPYC, SD 2.x's 4096-token
    # self-attention, interleaved rounds: 352-374 ms at VEC 16, BQ 32-64, KC 512, against flash's 842 (its table
    # pick) and torch SDPA's 355 (docs/PERF.md); KC 1024 and VEC 8 with RQ 8 were slower. A work-item's loop trips
    # grow with Lk x BQ (the 77-key cross-attention at BQ 64 ended early on llvmpipe: its output unwritten), so it
    # needs long_loops
    Variant("flash_cpu_reg", {"VEC": 16, "RQ": 4, "BQ": 64, "KC": 512},
            space={"VEC": [8, 16], "RQ": [4, 8], "BQ": [32, 64], "KC": [256, 512]},
            constraint=lambda k, info: k["BQ"] % k["RQ"] == 0 and k["KC"] % k["VEC"] == 0, needs=("long_loops",),
            devices=("CPU",), launcher=ATTENTION + "flash_cpu_reg", tier="FlashAttention", dtypes=DTYPES),
    # flash_mma_f16 (attention/flash_mma_f16.cl): FlashAttention-2 on NVIDIA tensor cores (mma.sync m16n8k16 f16 x
    # f16 -> f32): a warp's 16 query rows x BK keys of scores, the softmax in float32 registers, P V from the score
    # registers; q, k, v and p rounded to half, so a candidate only in half mode (Variant.half_compute) for float32;
    # float16's q, k, v are half already, read as they are. ASYNC (float16 at a head dim of whole 16-byte chunks; 0
    # elsewhere): K and V tiles copied with cp.async, the next during this one's products, V key-major and read
    # with ldmatrix.trans. H100, float16, the registry's SD shapes, one call (docs/results/ab-knobs-nvidia-h100-6.txt):
    # 0.681 ms against 1.736 staged (0.39x; the 4096-token self-attention 0.750 -> 0.262)
    # gemm_mma_f16: gemm's three steps, both products by the tensor-core GEMM (gemm/mma_f16.cl, its knobs and space:
    # mma_f16_half's), S scaled in its epilogue and kept float32, the softmax float32: the roundings of flash_mma_f16
    # (q, k, v and p to half; the accumulations over D and Lk truncated in float32), so its tolerance, at any head
    # dim (the VAE's single 512-wide head, which no flash tile fits; declared before flash_mma_f16, which untuned
    # selection then takes where its tiles fit)
    Variant("gemm_mma_f16", _MMA_F16_HALF.knobs, space=_MMA_F16_HALF.space, constraint=_mma_f16_fits,
            needs=("nvidia_ptx",), devices=("GPU",), dtypes=("float32", "float16"), tolerance=_F16_ATTN_TOL,
            half_compute=True, launcher=ATTENTION + "gemm_mma_f16", tier="tensor-core float16"),
    Variant("flash_mma_f16", {"WARPS": 4, "BK": 64, "MMA_EMULATE": 0, "ASYNC": 1},
            space={"WARPS": [2, 4, 8], "BK": [32, 64], "ASYNC": [0, 1]},
            constraint=_flash_mma_fits, applies=_head_dim_at_most_max, needs=("nvidia_ptx",), devices=("GPU",),
            dtypes=("float32", "float16"), tolerance=_F16_ATTN_TOL, half_compute=True,
            launcher=ATTENTION + "flash_mma_f16", tier="tensor-core float16"),
)


ROWS = [
    OpSpec("matmul", R.matmul, _GEMM_NN_VARIANTS, _matmul_cases, _matmul_sd, _DOT_TOL,
           flops=_matmul_flops, bytes=lambda c: _io_bytes(c, c.args[0].shape[0] * c.args[1].shape[1])),
    OpSpec("batched_matmul", R.batched_matmul, _GEMM_NN_VARIANTS, _bmm_cases, _bmm_sd, _DOT_TOL,
           flops=_bmm_flops, bytes=lambda c: _io_bytes(c, c.args[0].shape[0] * c.args[0].shape[1]
                                                       * c.args[1].shape[2])),
    OpSpec("linear", R.linear, _LINEAR_VARIANTS, _linear_cases, _linear_sd, _DOT_TOL,
           flops=_linear_flops, bytes=_linear_bytes, epilogue_args=("residual",)),
    OpSpec("conv2d", R.conv2d, _CONV_VARIANTS, _conv_cases, _conv_sd, _DOT_TOL,
           flops=_conv_flops, bytes=_conv_bytes, epilogue_args=("residual",)),
    OpSpec("attention", R.attention, _ATTENTION_VARIANTS, _attention_cases, _attention_sd, _ATTN_TOL,
           flops=_attention_flops, bytes=_attention_bytes, terms=_attention_terms),
]
