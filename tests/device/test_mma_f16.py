"""The tensor-core float16 GEMM (kernels/gemm/mma_f16.cl: mma.sync m16n8k16 f16 x f16 -> f32) and the variants that
run it: linear's mma_f16_half and conv2d's implicit_mma_f16 (kernels/conv2d/implicit_mma_f16.cl); attention's
flash_mma_f16 (kernels/attention/flash_mma_f16.cl: FlashAttention-2 on the same instruction).

Where the device has NVIDIA PTX the real instruction runs; elsewhere the OpenCL C emulation of mma.sync
(MMA_EMULATE=1), which checks the fragment layouts, staging, tiling and tails, not the PTX (built without
optimization there: tests/conftest.py's emulation_at_source_level). The kernel rounds both
operands to half (or reads them as half) and accumulates in float32, so against the float64 product of the
half-rounded operands it is exact up to float32 accumulation: 1e-5 of max|C| here (K <= 52), far below what a
missed rounding (~5e-4) or a misplaced fragment element (O(1)) would leave.
"""

import numpy as np
import pytest

from sdcl.conformance.check import run_case
from sdcl.registry import REGISTRY, Case
from sdcl.registry.fuzz import randn

MMA_KNOBS = tuple(REGISTRY["linear"].variant("mma_f16_half").knobs)
pytestmark = pytest.mark.usefixtures("emulation_at_source_level")     # tests/conftest.py


def _extra(rt) -> dict:
    return {} if rt.info.get("nvidia_ptx") else {"MMA_EMULATE": 1}


def _configs(rt, every: bool, op: str = "linear", variant: str = "mma_f16_half") -> list:
    """every: every config the tuner may pick where the PTX runs but for ASYNC's and KWG 16's (else the default and
    the largest), with a small config whose full tiles the shapes below fill (the staging's vector path); emulated:
    the default, the largest and the small one; the default with one local buffer (STAGES 1), for the GEMM with the
    other PREFETCH, and with cp.async (ASYNC 1: the GEMM two to four buffers deep, the conv's gather two; the small
    config too); the conv's gather at its default tiles, its NHWC (the default) also two deep and the small config
    four. Where the PTX runs, also the default with the fragments read the other way (LDSM: ldmatrix or 32-bit
    loads) and, for the GEMM, a warp tile of three mma columns (ldmatrix's x2 tail; the emulation reads fragments
    one way only)."""
    v = REGISTRY[op].variant(variant)
    configs = v.configs(rt.info)
    ptx = rt.info.get("nvidia_ptx")
    if not (every and ptx):
        configs = [v.knobs, max(configs, key=lambda k: (k["MWG"] * k["NWG"], k["KWG"]))]
    else:   # the tile shapes, each fetched through registers (ASYNC's copies: the float16 tests, below)
        configs = [k for k in configs if not k.get("ASYNC") and k["KWG"] >= 32]
    configs.append({**v.knobs, "STAGES": 1})
    if "PREFETCH" in v.knobs:       # the GEMM's: its tiles read into registers a step ahead, or when staged
        configs.append({**v.knobs, "PREFETCH": 1 - v.knobs["PREFETCH"]})
    deep = (2, 3, 4) if op == "linear" else (2,)    # cp.async: the GEMM's two to four buffers deep, the conv's two
    gather = {"NHWC": 0} if "NHWC" in v.knobs else {}      # the conv's ASYNC: its gather path's
    configs += [{**v.knobs, "ASYNC": 1, "STAGES": s, **gather} for s in deep]
    if ptx:
        configs.append({**v.knobs, "LDSM": 1 - v.knobs["LDSM"]})
        if op == "linear":
            configs.append(v.complete({"MWG": 32, "NWG": 24, "KWG": 16, "WARPS_M": 2, "WARPS_N": 1}))
    small = v.complete({"MWG": 32, "NWG": 16, "KWG": 16, "WARPS_M": 2, "WARPS_N": 1})
    configs.append({**small, "ASYNC": 1, "STAGES": deep[-1], **gather})
    if gather:      # the conv: its gather at the default tiles; its channels-last copies two deep, the small four;
        # one warp row of 16 (few output channels), both paths
        configs += [{**v.knobs, "NHWC": 0, "STAGES": 2}, {**v.knobs, "NHWC": 1, "STAGES": 2},
                    {**small, "NHWC": 1, "STAGES": 4}, v.complete({"MWG": 16, "WARPS_M": 1}),
                    v.complete({"MWG": 16, "WARPS_M": 1, "NHWC": 0, "STAGES": 2})]
    return [{**k, **_extra(rt)} for k in configs + [small]]


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("a_half,b_half", [(False, False), (False, True), (True, True)])
def test_product_of_half_rounded_operands(rt, trans_b, a_half, b_half):
    """C = A @ B + bias over m + R through gemm() in a batch, in both B layouts, with each operand given as float32
    (rounded by the kernel) or as half: equal to the float64 product of the half-rounded operands. Every config in
    the layout linear's mma_f16_half runs (B^T, the weight half), a few in the others (gemm() serves any caller); the
    small one also split along K in 3."""
    from sdcl.opencl_impl.variants.gemm import gemm
    rng = np.random.default_rng(11)
    failures = []
    for z, m, n, k in ((2, 70, 44, 52), (1, 37, 21, 19)):   # aligned (vector staging of full tiles), odd (scalar)
        a = rng.standard_normal((z, m, k)).astype(np.float32)
        b = rng.standard_normal((z, n, k) if trans_b else (z, k, n)).astype(np.float32)
        bias = rng.standard_normal(m).astype(np.float32)
        r = rng.standard_normal((z, m, n)).astype(np.float32)
        h = lambda x: x.astype(np.float16).astype(np.float64)      # noqa: E731  (round to nearest even, as the kernel)
        want = np.matmul(h(a), np.swapaxes(h(b), 1, 2) if trans_b else h(b)) + bias[:, None] + r
        da = rt.to_device(a.astype(np.float16) if a_half else a)
        db = rt.to_device(b.astype(np.float16) if b_half else b)
        configs = _configs(rt, every=(trans_b, a_half, b_half) == (True, False, True))
        for knobs in configs + [{**configs[-1], "SPLITK": 3}]:     # split-K: partial products, then the epilogue
            c = rt.empty((z, m, n), np.float32)
            gemm(rt, "matmul", "mma_f16", knobs, da.data, db.data, c.data, m, n, k, lda=k,
                 ldb=k if trans_b else n, ldc=n, trans_b=trans_b, bias=rt.to_device(bias).data, bias_axis="m",
                 residual=rt.to_device(r).data, batch=z, a_strides=(m * k, 0), b_strides=(n * k, 0),
                 c_strides=(m * n, 0), a_half=a_half, b_half=b_half)
            err = float(np.abs(c.get() - want).max() / np.abs(want).max())
            if not err <= 1e-5:
                failures.append(f"{(z, m, n, k)} {knobs}: max error {err:.2e} of max|C|")
    assert not failures, "\n".join(failures)


def test_linear_variant_passes_its_row(rt):
    """linear mma_f16_half through the gate's own check (the weight stored in half, as a model in half passes it)
    at its declared tolerance, against the float64 reference."""
    x, w, b, r = randn(5, (3, 29, 40), (36, 40), (36,), (3, 29, 36))
    res = run_case(rt, REGISTRY["linear"], "mma_f16_half", _extra(rt),
                   Case("bias_residual", (x, w, b), {"residual": r}), "float32")
    assert res.passed, res.message


def _past_one_rounding(got, want, knobs) -> list:
    """A float16 output against the float64 reference on its half inputs: each element within one rounding to half
    (2^-11 |y|, 2^-25 absolute) and 1e-5 max|y| of float32 accumulation; the failure, named, or nothing."""
    bound = 2.0 ** -11 * np.abs(want) + 1e-5 * np.abs(want).max() + 2.0 ** -25
    err = np.abs(got.astype(np.float64) - want)
    if np.all(err <= bound):
        return []
    at = np.unravel_index(int(np.argmax(err - bound)), err.shape)
    return [f"{knobs}: {int(np.sum(err > bound))} element(s) past 2^-11 |y| + 1e-5 max|y|; "
            f"at {at}: got {float(got[at])!r}, reference {float(want[at])!r}"]


@pytest.mark.parametrize("xs,n_out", [((2, 35, 48), 44), ((1, 37, 19), 21)])   # aligned (vector staging), odd
def test_linear_in_float16(rt, xs, n_out):
    """linear mma_f16_half in the float16 dtype (x, weight, bias and residual all half: -DDATA_HALF, A and B staged
    as the half bits they are, the epilogue reading bias and residual with vload_half, y stored with
    vstore_half_rte) against the float64 reference on those half values, at the default, largest and a small
    config, the small one also split along K (SPLITK 3: float partial sums, the half output written by
    gemm_splitk_sum). The products of halves are exact and the float32 accumulation adds ~1e-6 of max|y| here
    (K <= 48), so each element is within its own rounding to half (2^-11 |y|) of the reference, plus 1e-5 max|y|
    and half a subnormal spacing. And bit for bit the float32 run on the same values, rounded to half to nearest
    even: the same staging and arithmetic, the output's rounding the only difference, so a truncating store or
    partial sums kept in half show here even where the bound would hide them."""
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.reference import ops as R
    x, w, b, r = (a.astype(np.float16) for a in randn(12, xs, (n_out, xs[-1]), (n_out,), xs[:-1] + (n_out,)))
    want = R.linear(*(a.astype(np.float64) for a in (x, w, b)), residual=r.astype(np.float64))
    failures = []
    configs = _configs(rt, every=False)
    for knobs in configs + [{**configs[-1], "SPLITK": 3}]:
        got = run_variant(rt, "linear", "mma_f16_half", knobs, rt.to_device(x), rt.to_device(w), rt.to_device(b),
                          residual=rt.to_device(r)).get()
        assert got.dtype == np.float16
        failures += _past_one_rounding(got, want, knobs)
        wide = run_variant(rt, "linear", "mma_f16_half", knobs, rt.to_device(x.astype(np.float32)), rt.to_device(w),
                           rt.to_device(b.astype(np.float32)), residual=rt.to_device(r.astype(np.float32))).get()
        if not np.array_equal(got.view(np.uint16), wide.astype(np.float16).view(np.uint16)):
            failures.append(f"{knobs}: {int(np.sum(got != wide.astype(np.float16)))} element(s) differ from the "
                            f"float32 run rounded to half")
    assert not failures, "\n".join(failures)


def test_async_copies_with_padded_rows_and_ragged_depth(rt):
    """The cp.async path (ASYNC 1, float16 A and B^T with rows 16-byte aligned) where a 16-byte chunk straddles the
    end of K (K = 52 in rows padded to 56: the chunk at k 48 copies 4 halves and zero-fills 4; padding that leaked
    in would add its products) and M, N end inside a tile, over several k steps at each depth of the pipeline,
    split along K too, in a batch: equal to the float64 product of the same halves (float32 accumulation: 1e-5 of
    max|C|). And a row pitch that is not a multiple of 8 takes the path through registers, to the same result."""
    from sdcl.opencl_impl.variants.gemm import gemm
    rng = np.random.default_rng(13)
    z, m, n, k = 2, 45, 27, 52
    failures = []
    for ld in (56, 53):
        a = rng.standard_normal((z, m, ld)).astype(np.float16)
        b = rng.standard_normal((z, n, ld)).astype(np.float16)
        a[..., k:] = b[..., k:] = 1e4                      # beyond K: must not be read
        want = np.matmul(a[..., :k].astype(np.float64), np.swapaxes(b[..., :k].astype(np.float64), 1, 2))
        v = REGISTRY["linear"].variant("mma_f16_half")
        small = v.complete({"MWG": 32, "NWG": 16, "KWG": 16, "WARPS_M": 2, "WARPS_N": 1, **_extra(rt)})
        for knobs in [{**small, "ASYNC": 1, "STAGES": s} for s in (2, 3, 4)] + [{**small, "ASYNC": 1, "SPLITK": 2}]:
            c = rt.empty((z, m, n), np.float16)
            gemm(rt, "matmul", "mma_f16", knobs, rt.to_device(a).data, rt.to_device(b).data, c.data, m, n, k,
                 lda=ld, ldb=ld, ldc=n, trans_b=True, batch=z, a_strides=(m * ld, 0), b_strides=(n * ld, 0),
                 c_strides=(m * n, 0), dtype=np.float16)
            failures += [f"ld {ld}: {f}" for f in _past_one_rounding(c.get(), want, knobs)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("shape", [
    ((2, 12, 11, 9), (20, 12, 3, 3), 1, 1, "same"),          # a ResNet conv, batch 2, residual of y's shape
    ((1, 7, 13, 10), (9, 7, 5, 3), (2, 1), (2, 1, 0, 3), "nc11"),   # strided, asymmetric padding, (N, O, 1, 1)
    ((2, 33, 6, 5), (40, 33, 1, 1), 1, 0, None),             # pointwise: R = C, odd; tiles cross samples
    ((1, 16, 9, 8), (128, 16, 3, 3), 1, 1, "same"),          # whole weight tiles (O = MWG, R % 4 = 0): vector reads
    ((2, 8, 7, 6), (20, 8, 3, 3), 1, 1, "same"),             # R = 72: weight rows 16-byte aligned (ASYNC's copies)
    ((1, 24, 13, 10), (9, 24, 5, 3), (2, 1), (2, 1, 0, 3), "nc11"),  # NHWC: C % 8 == 0, C % KWG != 0, strided
    ((2, 48, 5, 7), (40, 48, 1, 1), 1, 0, None),             # NHWC pointwise, tiles across samples
    ((1, 264, 5, 4), (16, 264, 3, 3), 1, 1, "same"),         # NHWC: C past the copies' blocks of 64 and 32, ragged
    ((1, 8, 9, 9), (8, 8, 7, 7), 1, 3, None),                # NHWC: 49 taps a weight row
])
def test_implicit_conv_equals_the_conv_of_half_rounded_operands(rt, shape):
    """conv2d implicit_mma_f16 (gathering its slices of the lowered matrix from x) against the float64 reference
    conv of the half-rounded input and weight (the weight given in half, as a model in half mode passes it), with
    the bias and a residual: exact up to float32 accumulation, at the default, largest and a small config, the small
    one also split along R (SPLITK 3: partial products added by conv2d_implicit_splitk_sum, with the epilogue)."""
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.reference import ops as R
    xs, ws, stride, padding, res_kind = shape
    x, w, b = (a.astype(np.float32) for a in randn(9, xs, ws, (ws[0],)))
    h = lambda a: a.astype(np.float16).astype(np.float64)   # noqa: E731
    want = R.conv2d(h(x), h(w), b.astype(np.float64), stride=stride, padding=padding)
    r = None if res_kind is None else randn(10, want.shape if res_kind == "same" else want.shape[:2] + (1, 1))[0]
    if r is not None:
        want = want + r
        r = rt.to_device(r.astype(np.float32))
    failures = []
    configs = _configs(rt, False, "conv2d", "implicit_mma_f16")
    for knobs in configs + [{**configs[-1], "SPLITK": 3}]:
        # NHWC's weight copy also rounds a float32 weight (elsewhere the staging does, as mma_f16_half's tests check)
        for wd in (np.float16, np.float32) if knobs.get("NHWC") else (np.float16,):
            got = run_variant(rt, "conv2d", "implicit_mma_f16", knobs, rt.to_device(x), rt.to_device(w.astype(wd)),
                              rt.to_device(b), stride=stride, padding=padding, residual=r).get()
            err = float(np.abs(got - want).max() / np.abs(want).max())
            if not err <= 1e-5:
                failures.append(f"{knobs}, weight {np.dtype(wd).name}: max error {err:.2e} of max|y|")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("shape", [
    ((2, 12, 11, 9), (20, 12, 3, 3), 1, 1, "same"),          # a ResNet conv, batch 2, residual of y's shape
    ((1, 7, 13, 10), (9, 7, 5, 3), (2, 1), (2, 1, 0, 3), "nc11"),   # strided, asymmetric padding, (N, O, 1, 1)
    ((2, 33, 6, 5), (40, 33, 1, 1), 1, 0, None),             # pointwise: R = C, odd; tiles cross samples
    ((1, 16, 9, 8), (128, 16, 3, 3), 1, 1, "same"),          # whole weight tiles (O = MWG, R % 4 = 0): vector reads
    ((2, 8, 7, 6), (20, 8, 3, 3), 1, 1, "same"),             # R = 72: weight rows 16-byte aligned (ASYNC's copies)
    ((1, 24, 13, 10), (9, 24, 5, 3), (2, 1), (2, 1, 0, 3), "nc11"),  # NHWC: C % 8 == 0, C % KWG != 0, strided
    ((2, 48, 5, 7), (40, 48, 1, 1), 1, 0, None),             # NHWC pointwise, tiles across samples
    ((1, 264, 5, 4), (16, 264, 3, 3), 1, 1, "same"),         # NHWC: C past the copies' blocks of 64 and 32, ragged
    ((1, 8, 9, 9), (8, 8, 7, 7), 1, 3, None),                # NHWC: 49 taps a weight row
])
def test_implicit_conv_in_float16(rt, shape):
    """conv2d implicit_mma_f16 in the float16 dtype (x, weight, bias and residual all half: the gather copies x's
    half bits, the epilogue reads the bias and residual with vload_half and stores y with vstore_half_rte) against
    the float64 reference conv of those half values: the products of halves are exact and the float32 accumulation
    adds 1e-5 of max|y| at most here, so each element is within its own rounding to half (2^-11 |y|) of that, plus
    the accumulation's 1e-5 and half a subnormal spacing; the default, largest and a small config, the small one
    also split along R (SPLITK 3: float32 partial sums, the half output written by conv2d_implicit_splitk_sum)."""
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.reference import ops as R
    xs, ws, stride, padding, res_kind = shape
    x, w, b = (a.astype(np.float16) for a in randn(9, xs, ws, (ws[0],)))
    want = R.conv2d(*(a.astype(np.float64) for a in (x, w, b)), stride=stride, padding=padding)
    r = None if res_kind is None else randn(10, want.shape if res_kind == "same" else want.shape[:2] + (1, 1))[0]
    if r is not None:
        r = r.astype(np.float16)
        want = want + r.astype(np.float64)
        r = rt.to_device(r)
    failures = []
    configs = _configs(rt, False, "conv2d", "implicit_mma_f16")
    for knobs in configs + [{**configs[-1], "SPLITK": 3}]:
        got = run_variant(rt, "conv2d", "implicit_mma_f16", knobs, rt.to_device(x), rt.to_device(w),
                          rt.to_device(b), stride=stride, padding=padding, residual=r).get()
        assert got.dtype == np.float16
        failures += _past_one_rounding(got, want, knobs)
    assert not failures, "\n".join(failures)


def test_split_k_fills_the_device_and_covers_the_depth_once():
    """Split-K's plan: none from twice as many work-groups as compute units on, or when asked for none; auto takes
    the fewest splits within 10% of the cheapest in KWG steps (waves of one work-group per unit, times the steps of
    a split, plus SPLIT_COST for splitting at all), each split keeping >= 4 KWG steps; the splits tile the depth in
    KWG multiples with none empty."""
    from sdcl.opencl_impl.variants.gemm import SPLIT_COST, split_k
    assert SPLIT_COST == 24     # the figures below are worked with it
    k = {"KWG": 32, "SPLITK": 0}
    assert split_k(k, 264, 2880, 132) == (1, 2880)          # two full waves: none
    # 10 work-groups on 132 units, 360 steps: 11 splits take one wave of 33 steps, + 24 = 57 (13: 28 + 24 = 52)
    assert split_k(k, 10, 11520, 132) == (11, 1056)
    # 80 (the 1280-channel 3x3 at 16x16, 360 steps): one wave of 360; 3 splits, two waves of 120, + 24 = 264
    assert split_k(k, 80, 11520, 132) == (3, 3840)
    # 80 at 40 steps (linear (512, 1280) x 1280): 40 unsplit against 2 * 14 + 24 = 52 in three: none
    assert split_k(k, 80, 1280, 132) == (1, 1280)
    # 192 (the 3x3 320 at 64x64, 90 steps): two waves, 180; 2 splits, three waves of 45, + 24 = 159
    assert split_k(k, 192, 2880, 132) == (2, 1440)
    assert split_k(k, 8, 256, 132) == (1, 256)              # 8 steps: a split costs more than it saves
    assert split_k({**k, "SPLITK": 1}, 10, 11520, 132) == (1, 11520)
    for want, depth in ((3, 108), (16, 100), (5, 33), (0, 4000)):
        splits, chunk = split_k({"KWG": 16, "SPLITK": want}, 4, depth, 132)
        assert chunk % 16 == 0 and (splits - 1) * chunk < depth <= splits * chunk


def test_refuses_devices_without_nvidia_ptx_and_float64(rt):
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.opencl_impl.variants.gemm import MmaUnavailable
    x, w = randn(8, (4, 16), (8, 16))
    if not rt.info.get("nvidia_ptx"):
        with pytest.raises(MmaUnavailable, match=r"gemm mma_f16 runs NVIDIA PTX \(mma.sync m16n8k16 float16"):
            run_variant(rt, "linear", "mma_f16_half", {}, rt.to_device(x.astype(np.float32)),
                        rt.to_device(w.astype(np.float16)))
    if rt.info["fp64"]:
        with pytest.raises(ValueError, match="linear: variant 'mma_f16_half' implements float32, float16, not float64"):
            run_variant(rt, "linear", "mma_f16_half", _extra(rt), rt.to_device(x.astype(np.float64)),
                        rt.to_device(w.astype(np.float16)))


def _attention_configs(rt) -> list:
    """Every config the tuner may pick where the PTX runs; emulated: the default and the smallest (WARPS 2, BK 32:
    several key tiles, the online softmax's rescaling), that one with the tiles copied (ASYNC 1, the default) and
    staged."""
    v = REGISTRY["attention"].variant("flash_mma_f16")
    small = v.complete({"WARPS": 2, "BK": 32})
    configs = v.configs(rt.info) if rt.info.get("nvidia_ptx") else [v.knobs, small, {**small, "ASYNC": 0}]
    return [{**k, **_extra(rt)} for k in configs]


@pytest.mark.parametrize("shape", [
    (1, 33, 47, 2, 17, False, None),    # D = 17: both paddings (16 for Q K^T's k, 8 for P V's n); Lk not a tile
    (2, 40, 40, 3, 24, True, 3.0),      # causal, a sharp softmax (scale 3)
    (1, 70, 130, 1, 64, False, None),   # SD 2.x's head dim, several key tiles, Lq not a query tile
    (2, 19, 77, 2, 40, False, 1.0),     # SD 1.x's head dim 40, the text's 77 keys (cross-attention)
    (1, 50, 50, 1, 80, True, None),     # head dim 80, causal
])
def test_flash_attention_equals_attention_of_half_rounded_inputs(rt, shape):
    """attention flash_mma_f16 against the float64 reference on the half-rounded q, k, v: within 2e-3 of max|ref|, the
    kernel's own error bound (registry/linalg.py _F16_ATTN_TOL: the weights p rounded to half for P V, ~1.7e-4
    measured), far below what a misplaced fragment, a lost rescaling or a wrong mask leaves (O(1) or 1e-2)."""
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.reference import ops as R
    b, lq, lk, heads, d, causal, scale = shape
    q, k, v = randn(21, (b, lq, heads * d), (b, lk, heads * d), (b, lk, heads * d))
    kw = {"causal": causal} if scale is None else {"causal": causal, "scale": scale}
    h = lambda a: a.astype(np.float16).astype(np.float64)   # noqa: E731
    want = R.attention(h(q), h(k), h(v), heads, **kw)
    failures = []
    for knobs in _attention_configs(rt):
        got = run_variant(rt, "attention", "flash_mma_f16", knobs, *(rt.to_device(a.astype(np.float32))
                                                                     for a in (q, k, v)), heads, **kw).get()
        err = float(np.abs(got - want).max() / np.abs(want).max())
        if not err <= 2e-3:
            failures.append(f"{knobs}: max error {err:.2e} of max|ref|")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("d", [40, 64, 20])     # 20: not whole 16-byte chunks, the tiles staged (ASYNC's fallback)
def test_flash_attention_in_float16(rt, d, causal):
    """attention flash_mma_f16 in the float16 dtype (q, k, v half already: their bits staged as they are; o stored
    with vstore_half_rte) against the float64 reference on those half values, within the variant's float16 tolerance
    (registry: _F16_ATTN_TOL's float32 bound, its "half_inputs" allowance zero for inputs that are half already, plus
    the output's rounding to half); and bit for bit the float32 run on the same (half) values rounded to half to
    nearest even: the same staging and arithmetic, the output's rounding the only difference, so a truncating store
    or a misread half shows here though the tolerance (4u of max|ref|, for the weights p in half) would hide it. The
    float32 run stages its tiles (ASYNC is float16's), so with ASYNC this also holds the copied, double-buffered,
    key-major tiles to the staged ones bit for bit."""
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.reference import ops as R
    b, heads = 2, 2
    lq, lk = (45, 45) if causal else (45, 77)      # several key tiles at BK 32; neither length a whole tile
    q, k, v = (a.astype(np.float16) for a in randn(24, (b, lq, heads * d), (b, lk, heads * d), (b, lk, heads * d)))
    want = R.attention(*(a.astype(np.float64) for a in (q, k, v)), heads, causal=causal)
    tol = REGISTRY["attention"].tolerance_of("flash_mma_f16", "float16")
    bound = tol.rtol * np.abs(want) + tol.atol * np.abs(want).max() + tol.floor
    failures = []
    for knobs in _attention_configs(rt):
        got = run_variant(rt, "attention", "flash_mma_f16", knobs, *(rt.to_device(a) for a in (q, k, v)), heads,
                          causal=causal).get()
        assert got.dtype == np.float16
        err = np.abs(got.astype(np.float64) - want)
        if not np.all(err <= bound):
            failures.append(f"{knobs}: {int(np.sum(err > bound))} element(s) past the float16 tolerance; max error "
                            f"{float(err.max() / np.abs(want).max()):.2e} of max|ref|")
        wide = run_variant(rt, "attention", "flash_mma_f16", knobs, *(rt.to_device(a.astype(np.float32))
                                                                      for a in (q, k, v)), heads, causal=causal).get()
        differ = int(np.sum(got.view(np.uint16) != wide.astype(np.float16).view(np.uint16)))
        if differ:
            failures.append(f"{knobs}: {differ} element(s) differ from the float32 run rounded to half")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("shape", [
    (1, 70, 70, 1, 512, False),     # the VAE's single 512-wide head (no flash tile fits it), Lq not a tile
    (2, 45, 77, 2, 40, False),      # heads permuted first and back; the text's 77 keys
    (2, 33, 33, 3, 24, True),       # causal: the mask kernel between the products
])
def test_gemm_attention_on_tensor_cores(rt, shape):
    """attention gemm_mma_f16 (both products by gemm_mma_f16): float32 against the float64 reference on the
    half-rounded q, k, v within 2e-3 of max|ref| (its tolerance's own part: p rounded to half), and float16 within
    the variant's float16 tolerance; the float16 run is the float32 run on the same half values rounded to half, bit
    for bit (the same staged halves and sums: S and the softmax float32 in both, the output rounded once), at the
    default tiles and at small ones (several k steps in both products, the register staging)."""
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.reference import ops as R
    b, lq, lk, heads, d, causal = shape
    q, k, v = (a.astype(np.float16) for a in randn(25, (b, lq, heads * d), (b, lk, heads * d), (b, lk, heads * d)))
    want = R.attention(*(a.astype(np.float64) for a in (q, k, v)), heads, causal=causal)
    tol = REGISTRY["attention"].tolerance_of("gemm_mma_f16", "float16")
    bound = tol.rtol * np.abs(want) + tol.atol * np.abs(want).max() + tol.floor
    v16 = REGISTRY["attention"].variant("gemm_mma_f16")
    failures = []
    for knobs in ([v16.knobs, {**v16.knobs, "MWG": 64, "NWG": 64, "KWG": 16, "ASYNC": 0, "STAGES": 2}]):
        knobs = {**knobs, **_extra(rt)}
        wide = run_variant(rt, "attention", "gemm_mma_f16", knobs, *(rt.to_device(a.astype(np.float32))
                                                                     for a in (q, k, v)), heads, causal=causal).get()
        err = float(np.abs(wide - want).max() / np.abs(want).max())
        if not err <= 2e-3:
            failures.append(f"{knobs} float32: max error {err:.2e} of max|ref|")
        got = run_variant(rt, "attention", "gemm_mma_f16", knobs, *(rt.to_device(a) for a in (q, k, v)), heads,
                          causal=causal).get()
        assert got.dtype == np.float16
        past = np.abs(got.astype(np.float64) - want) > bound
        if past.any():
            failures.append(f"{knobs} float16: {int(past.sum())} element(s) past the float16 tolerance")
        differ = int(np.sum(got.view(np.uint16) != wide.astype(np.float16).view(np.uint16)))
        if differ:
            failures.append(f"{knobs}: {differ} element(s) differ from the float32 run rounded to half")
    assert not failures, "\n".join(failures)


def test_attention_variant_passes_its_row_and_refuses_what_it_cannot_run(rt):
    """flash_mma_f16 through the gate's own check (tolerance "half_inputs": the inputs' rounding allowed exactly)
    against the float64 reference; without NVIDIA PTX and not emulated it says so; float64 is refused by name."""
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.opencl_impl.variants.gemm import MmaUnavailable
    q, k, v = randn(22, (2, 45, 96), (2, 45, 96), (2, 45, 96))
    res = run_case(rt, REGISTRY["attention"], "flash_mma_f16", _extra(rt), Case("causal", (q, k, v, 3),
                                                                                  {"causal": True, "scale": 3.0}),
                   "float32")
    assert res.passed, res.message
    x = rt.to_device(q.astype(np.float32))
    if not rt.info.get("nvidia_ptx"):
        with pytest.raises(MmaUnavailable, match=r"attention flash_mma_f16 runs NVIDIA PTX \(mma.sync m16n8k16"):
            run_variant(rt, "attention", "flash_mma_f16", {}, x, x, x, 3)
    if rt.info["fp64"]:
        y = rt.to_device(q.astype(np.float64))
        with pytest.raises(ValueError, match="attention: variant 'flash_mma_f16' implements float32, float16, "
                                             "not float64"):
            run_variant(rt, "attention", "flash_mma_f16", _extra(rt), y, y, y, 3)


@pytest.mark.parametrize("variant", ["gemm_mma_f16", "flash_mma_f16"])
def test_attention_whose_output_cancels_passes_by_its_terms_size(rt, variant):
    """The gate's check of the tensor-core attention variants on diffuse attention over keys whose values average
    out (Lk 15, D 3, scale 0.05: the H100 thorough run's failing case, made sharper): the weights p rounded to half
    for P V move outputs near 0 by ~u of their terms' size sqrt(sum_j p_j^2 v_j^2), far past 4u of max|ref|; the
    tolerance's scale is the terms' size per element (OpSpec.terms), so the right kernel passes."""
    q, k, v = randn(5, (1, 24, 3), (1, 15, 3), (1, 15, 3))
    v = v - v.mean(axis=1, keepdims=True)
    res = run_case(rt, REGISTRY["attention"], variant, _extra(rt), Case("cancelling", (q, k, v, 1), {"scale": 0.05}),
                   "float32")
    assert res.passed, res.message


def test_two_local_buffers_only_where_they_fit():
    """STAGES 2 doubles the staged tiles' local memory: a tuned config whose one buffer fits NVIDIA's 48 KiB but whose
    two do not (128 x 128 x 64: 36,864 B once) is built with one; 128 x 128 x 32 (20,480 B) keeps two."""
    from sdcl.opencl_impl.variants.gemm import mma_stages
    rt48 = type("R", (), {"device": type("D", (), {"local_mem_size": 48 * 1024})()})()
    k = {"MWG": 128, "NWG": 128, "KWG": 64, "STAGES": 2}
    assert mma_stages(rt48, k)["STAGES"] == 1
    assert mma_stages(rt48, {**k, "KWG": 32})["STAGES"] == 2
    assert mma_stages(rt48, {**k, "KWG": 32, "STAGES": 1})["STAGES"] == 1
    # cp.async's deeper pipelines: as many buffers as fit (128 x 128 x 32: two of 20,480 B), none of them below two
    assert mma_stages(rt48, {**k, "KWG": 32, "STAGES": 4, "ASYNC": 1}) == {**k, "KWG": 32, "STAGES": 2, "ASYNC": 1}
    assert mma_stages(rt48, {**k, "KWG": 16, "STAGES": 4, "ASYNC": 1})["STAGES"] == 4      # 4 x 12,288 B
    assert mma_stages(rt48, {**k, "STAGES": 3, "ASYNC": 1}) == {**k, "STAGES": 1, "ASYNC": 0}
    assert mma_stages(rt48, {**k, "KWG": 32, "STAGES": 1, "ASYNC": 1})["ASYNC"] == 0     # one buffer: registers
