"""conv2d variants at every configuration the tuner may pick, on small awkward shapes; their scratch chunking; and
`applies` against what the launchers accept.

test_conformance_ops runs each variant at its default knobs over fuzzed and SD shapes; here every knob setting of
`Variant.configs(rt.info)` is checked (each is a different kernel build; the tensor-core implicit_mma_f16 off NVIDIA:
emulated at its default and largest tiles), on cases chosen to hit the tails: sizes that
are not multiples of any tile or block, odd output sizes for Winograd's 2x2 / 4x4 tiles, asymmetric padding,
strides, batch > 1, bias and the residual (added in each kernel's epilogue) on and off.
"""

import numpy as np
import pytest

from sdcl.conformance.check import reference_output, run_case
from sdcl.registry import REGISTRY, Case
from sdcl.registry.fuzz import randn

SPEC = REGISTRY["conv2d"]


def _case(name, seed, x, w, bias=True, residual=False, **kwargs):
    """residual: True, the output's shape; "channel", (N, O, 1, 1)."""
    arrays = randn(seed, x, w, (w[0],))
    if residual:     # the output's shape, from the reference on these inputs
        out = REGISTRY["conv2d"].reference(*arrays[:2], **kwargs).shape
        kwargs["residual"] = randn(seed + 100, out if residual is True else out[:2] + (1, 1))[0]
    return Case(name, tuple(arrays if bias else arrays[:2]), kwargs)


GENERAL = [
    _case("3x3_pad1_bias_residual", 0, (2, 3, 11, 7), (5, 3, 3, 3), residual=True, padding=1),
    _case("5x3_stride2x1_asym_pad_residual", 1, (1, 6, 9, 13), (9, 6, 5, 3), bias=False, residual=True,
          stride=(2, 1), padding=(2, 1, 0, 3)),
    _case("1x1_batch3_bias", 2, (3, 5, 4, 7), (10, 5, 1, 1)),
    _case("3x3_batch2_channel_residual", 10, (2, 4, 6, 9), (7, 4, 3, 3), residual="channel", padding=1),
]
POINTWISE = [
    _case("1x1_one_sample_bias_residual", 3, (1, 7, 5, 3), (11, 7, 1, 1), residual=True),
    _case("1x1_batch3_residual", 4, (3, 5, 4, 7), (10, 5, 1, 1), bias=False, residual=True),
    _case("1x1_batch3_bias_channel_residual", 9, (3, 5, 4, 7), (10, 5, 1, 1), residual="channel"),
]
WINOGRAD = [   # OH x OW = 7 x 10, 8 x 6 and 3 x 11: tails in both directions for m = 2 and m = 4
    _case("3x3_pad1_7x10_bias_residual", 5, (2, 3, 7, 10), (5, 3, 3, 3), residual=True, padding=1),
    _case("3x3_asym_pad_residual", 6, (1, 4, 7, 5), (6, 4, 3, 3), bias=False, residual=True, padding=(0, 3, 1, 2)),
    _case("3x3_unpadded_channel_residual", 7, (1, 2, 5, 13), (3, 2, 3, 3), residual="channel", padding=0),
]
CASES = {"gemm1x1": POINTWISE, "winograd2x2": WINOGRAD, "winograd4x4": WINOGRAD}
VARIANTS = [v.name for v in SPEC.variants if v.name != "naive"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_config(rt, variant):
    v = SPEC.variant(variant)
    cases = CASES.get(variant, GENERAL)
    assert all(v.applies is None or v.applies(c.args, c.kwargs) for c in cases)
    expected = {c.name: reference_output(SPEC, c, np.float32) for c in cases}
    configs = v.configs(rt.info)
    if not v.runs_on(rt.info) and "nvidia_ptx" in v.needs:   # the tensor-core kernel's OpenCL C emulation of mma.sync
        configs = [{**k, "MMA_EMULATE": 1} for k in (configs[0], max(configs, key=lambda k: k["MWG"] * k["NWG"]))]
    failures = []
    for knobs in configs:
        for case in cases:
            res = run_case(rt, SPEC, variant, knobs, case, np.float32, expected=expected[case.name])
            if not res.passed:
                failures.append(f"{knobs} {case.summary()}: {res.message}")
    assert not failures, f"{len(failures)} of {len(configs) * len(cases)} failed:\n" + "\n".join(failures)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_default(rt, variant):
    if not rt.info["fp64"]:
        pytest.skip(f"{rt.info['device']} has no fp64")
    v = SPEC.variant(variant)
    if "float64" not in v.dtypes:
        pytest.skip(f"conv2d {variant} implements {', '.join(v.dtypes)} only")
    for case in CASES.get(variant, GENERAL):
        res = run_case(rt, SPEC, variant, v.knobs, case, np.float64)
        assert res.passed, f"{case.summary()}: {res.message}"


# ---------------------------------------------------------------------------------------------- scratch chunks

def _run_chunked(rt, variant, fn, case, *extra):
    """fn(*extra, rt, knobs, x, w, b, stride, padding, scratch_bytes=..., residual=...) on the device, against the
    reference with the variant's tolerance; returns the number of kernel launches."""
    from sdcl.opencl_impl.variants.conv import ConvShape

    x, w = (rt.to_device(a.astype(np.float32)) for a in case.args[:2])
    b = rt.to_device(case.args[2].astype(np.float32)) if len(case.args) > 2 else None
    r = case.kwargs.get("residual")
    r = None if r is None else rt.to_device(r.astype(np.float32))
    s = ConvShape.of(x, w, case.kwargs.get("stride", 1), case.kwargs.get("padding", 0))
    rt.profile, rt.events[:] = True, []
    try:
        got = fn(*extra, rt, SPEC.variant(variant).knobs, x, w, b, case.kwargs.get("stride", 1),
                 case.kwargs.get("padding", 0), scratch_bytes=2048, residual=r).get()
        launches = len(rt.events)
    finally:
        rt.profile, rt.events[:] = False, []
    ref = reference_output(SPEC, case, np.float32)
    tol = SPEC.tolerance_of(variant, "float32")
    assert got.shape == ref.shape == (s.n, s.o, s.oh, s.ow)
    assert np.all(np.abs(got - ref) <= tol.atol * np.abs(ref).max()), np.abs(got - ref).max()
    return launches


def test_im2col_chunks(rt):
    from sdcl.opencl_impl.variants.conv import im2col_conv
    # 2*7*10 = 140 output positions of (27 lowered rows + 5 outputs) * 4 bytes: 2 KiB hold 16, so 9 chunks of
    # (lower, GEMM, scatter)
    assert _run_chunked(rt, "im2col", im2col_conv, WINOGRAD[0]) >= 3 * 9


def test_im2win_chunks(rt):
    from sdcl.opencl_impl.variants.conv import im2win_conv
    # one output row of the 5x3 stride-(2, 1) case is 6 channels x 16 window columns x 5 rows = 1920 bytes: 4 chunks
    # of one row each (transform, inner), after the weight reordering
    assert _run_chunked(rt, "im2win", im2win_conv, GENERAL[1]) >= 1 + 2 * 4


@pytest.mark.parametrize("m,chunks", [(2, 10), (4, 12)])
def test_winograd_chunks(rt, m, chunks):
    from sdcl.opencl_impl.variants.conv import winograd_conv
    # a tile takes (m+2)^2 * (3 + 5) * 4 bytes: 2 KiB hold 4 of the 40 tiles for m = 2, 1 of the 12 for m = 4
    assert _run_chunked(rt, f"winograd{m}x{m}", winograd_conv, WINOGRAD[0], m) >= 1 + 3 * chunks


# ------------------------------------------------------------------------------------------ applies vs launchers

@pytest.mark.parametrize("variant,case", [("gemm1x1", GENERAL[0]), ("gemm1x1", _case("1x1_pad", 8, (1, 2, 3, 3),
                                                                                           (2, 2, 1, 1), padding=1)),
                                          ("winograd2x2", GENERAL[1]), ("winograd4x4", GENERAL[2])])
def test_launcher_refuses_what_applies_excludes(rt, variant, case):
    from sdcl.opencl_impl.dispatch import run_variant
    v = SPEC.variant(variant)
    assert not v.applies(case.args, case.kwargs)
    x, w = (rt.to_device(a.astype(np.float32)) for a in case.args[:2])
    with pytest.raises(ValueError, match=f"conv2d {variant}: handles"):
        run_variant(rt, "conv2d", variant, v.knobs, x, w, None, case.kwargs.get("stride", 1), case.kwargs.get("padding", 0))


def test_applies_reads_positional_and_keyword_calls():
    """The policy sees the OpenCL op's positional call (x, w, bias, stride, padding); conformance passes keywords."""
    x, w = np.zeros((1, 4, 8, 8)), np.zeros((4, 4, 3, 3))
    wino = SPEC.variant("winograd4x4").applies
    assert wino((x, w, None, 1, 1), {}) and wino((x, w), {"padding": 1})
    assert not wino((x, w, None, 2, 1), {}) and not wino((x, w), {"stride": (1, 2)})
    pw = SPEC.variant("gemm1x1").applies
    w1 = np.zeros((4, 4, 1, 1))
    assert pw((x, w1, None, 1, 0), {}) and pw((x, w1), {"padding": (0, 0, 0, 0)})
    assert not pw((x, w1, None, 1, (0, 1, 0, 0)), {}) and not pw((x, w1), {"stride": 2})


def test_direct_tiled_stages_what_local_memory_the_kernel_leaves(rt, monkeypatch):
    """The launcher sizes its channel chunk by the local memory the built kernel leaves (the device's less the
    kernel's own: NVIDIA refused 48 KiB passed beside the kernel's 1 byte); with room for one channel it stages one
    at a time and still gives the reference's answer, with none it says so."""
    from sdcl.opencl_impl.variants.conv import direct_local_elements
    case = Case("few", tuple(randn(3, (1, 5, 9, 11), (4, 5, 3, 3), (4,))), {"padding": 1})
    k = SPEC.variant("direct_tiled").knobs
    one = direct_local_elements(k, 3, 3, 1, 1, 1) * 4
    monkeypatch.setattr(type(rt), "local_bytes_left", lambda self, knl: one)
    res = run_case(rt, SPEC, "direct_tiled", k, case, np.float32)
    assert res.passed, res.message
    monkeypatch.setattr(type(rt), "local_bytes_left", lambda self, knl: one - 1)
    with pytest.raises(ValueError, match=f"leaves this kernel {one - 1} bytes"):
        run_case(rt, SPEC, "direct_tiled", k, case, np.float32)
