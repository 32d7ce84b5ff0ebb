"""Half storage: the float16 conversion, which calls the policy sends to the half variants, the model weights so
stored, and the ladder row that runs them. (The half variants themselves are checked against the reference, at
their own tolerance, by test_conformance_ops.py like every other variant.)"""

import numpy as np
import pytest

from sdcl.opencl_impl import ops as O
from sdcl.opencl_impl.dispatch import run_variant
from sdcl.opencl_impl.selection import Policy
from sdcl.opencl_impl.storage import half_weights, is_gemm_weight


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_half_rounds_like_numpy_bit_for_bit(rt, dtype):
    if dtype == np.float64 and not rt.info["fp64"]:
        pytest.skip("no fp64")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(3000) * 10.0 ** rng.integers(-9, 6, 3000),
                        [65504, 65519.9, 65520, 1e6, -1e6, 6e-8, 2.9e-8, 3.1e-8, -0.0, 0.0, np.inf, -np.inf,
                         1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11]]).astype(dtype)   # ties to even, overflow, subnormals
    got = O.to_half(rt, rt.to_device(x)).get()
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_to_half_keeps_nan(rt):
    got = O.to_half(rt, rt.to_device(np.array([np.nan, 1.0], np.float32))).get()
    assert np.isnan(got[0]) and got[1] == 1.0


def test_policy_sends_half_weights_to_half_variants_only(rt):
    pol = Policy(info=rt.info)
    x = rt.to_device(np.ones((3, 8), np.float32))
    w32 = rt.to_device(np.ones((5, 8), np.float32))
    w16 = O.to_half(rt, w32)
    want = "cpu_reg_half" if rt.info["type"] == "CPU" else "tiled_reg_half"
    assert pol("linear", (x, w16, None))[0] == want
    assert not pol("linear", (x, w32, None))[0].endswith("_half")   # float32 weights keep float32 precision
    xc = rt.to_device(np.ones((1, 8, 5, 5), np.float32))
    wc = O.to_half(rt, rt.to_device(np.ones((4, 8, 3, 3), np.float32)))
    assert pol("conv2d", (xc, wc, None, 1, 1))[0] == "im2col_half"


def test_half_weight_through_the_public_op_equals_the_rounded_product(rt):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 33)).astype(np.float32)
    w = rng.standard_normal((9, 33)).astype(np.float32)
    b = rng.standard_normal(9).astype(np.float32)
    saved, rt.policy = rt.policy, None       # no policy: a half weight still runs a half variant
    try:
        got = O.linear(rt, rt.to_device(x), rt.to_device(w.astype(np.float16)), rt.to_device(b)).get()
    finally:
        rt.policy = saved
    # exactly the product with the half-rounded weight, up to float32 accumulation
    want = x.astype(np.float64) @ w.astype(np.float16).astype(np.float64).T + b
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    assert np.abs(got - (x.astype(np.float64) @ w.T.astype(np.float64) + b)).max() > 0   # and the rounding shows


def test_a_float32_variant_refuses_a_half_weight(rt):
    x = rt.to_device(np.ones((3, 8), np.float32))
    w16 = O.to_half(rt, rt.to_device(np.ones((5, 8), np.float32)))
    with pytest.raises(ValueError, match=r"linear: variant 'naive' reads float32/float64 arrays.*half-storage"):
        run_variant(rt, "linear", "naive", {}, x, w16)


def test_half_weight_must_be_contiguous_and_half_activations_need_a_half_weight(rt):
    """float16 activations are the float16 dtype, whose arrays are all half: beside a float32 weight, refused."""
    x16 = O.to_half(rt, rt.to_device(np.ones((3, 8), np.float32)))
    w = rt.to_device(np.ones((5, 8), np.float32))
    with pytest.raises(ValueError, match=r"linear: all inputs must share one dtype, got float16\(3, 8\), "
                                         r"float32\(5, 8\)"):
        O.linear(rt, x16, w)


def test_half_weights_converts_the_gemm_matrices_only():
    w = {"down.0.conv.weight": np.ones((4, 3, 3, 3), np.float32), "proj.weight": np.ones((4, 3), np.float32),
         "proj.bias": np.ones(4, np.float32), "norm.weight": np.ones(4, np.float32),
         "text_model.embeddings.token_embedding.weight": np.ones((10, 4), np.float32),
         "text_model.embeddings.position_embedding.weight": np.ones((7, 4), np.float32),
         "positional_embedding": np.ones((7, 4), np.float32), "attn.in_proj_weight": np.ones((12, 4), np.float32)}
    h = half_weights(w)
    assert {k for k, v in h.items() if v.dtype == np.float16} == {"down.0.conv.weight", "proj.weight",
                                                                   "attn.in_proj_weight"}
    assert all(is_gemm_weight(k, w[k]) == (h[k].dtype == np.float16) for k in w)


def test_half_weights_refuses_a_weight_beyond_half_range():
    with pytest.raises(ValueError, match=r"half storage: weight big\.weight \(2, 2\) has magnitude 70000"):
        half_weights({"big.weight": np.array([[1.0, 70000.0], [0.0, 1.0]], np.float32)})


def test_ladder_half_row_runs_the_half_variants(rt):
    from sdcl.perf import ladder
    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import init_weights

    i = [name for name, _, _ in ladder.rungs()].index("+ half storage")
    config = get_config("tiny-sd2")
    saved = rt.policy
    try:
        [row] = ladder.measure_opencl(rt, config, init_weights(config, seed=0), 64, reps=1, log=lambda *a: None,
                                      rows_wanted={i})
    finally:
        rt.policy = saved
    half = "cpu_reg_half" if rt.info["type"] == "CPU" else "tiled_reg_half"
    assert {f"linear:{half}", "conv2d:im2col_half"} <= set(row["variants"])
    assert not any(v in row["variants"] for v in ("linear:naive", "conv2d:naive"))
    assert all(row[f"{s}_ms"] > 0 for s in ("text_encoder", "unet", "vae"))


def test_half_pipeline_row_judges_the_image_against_the_float32_path(rt, monkeypatch):
    """The gate's half-storage pipeline row (prompt to image with half weights against the device's float32 path,
    PSNR >= 35 dB): it passes on the half variants, and fails where the half path draws another image (here the
    half weights of every conv2d scaled by 0.9, a stand-in for a wrong half kernel)."""
    from sdcl.conformance import models
    from sdcl.opencl_impl import storage
    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import init_weights
    config = get_config("tiny-sd2")
    w64 = init_weights(config, seed=0)
    [row] = [r for r in models._half_storage_rows(rt, config, "tiny-sd2", "d", w64) if r.name.endswith("pipeline")]
    assert row.passed and "image PSNR" in row.metric and "latent rel L2" in row.metric, row.failure
    real = storage.half_weights
    monkeypatch.setattr(storage, "half_weights", lambda ws: {k: (v * np.float16(0.9) if v.dtype == np.float16
                                                                 and v.ndim == 4 else v) for k, v in real(ws).items()})
    [bad] = [r for r in models._half_storage_rows(rt, config, "tiny-sd2", "d", w64) if r.name.endswith("pipeline")]
    assert not bad.passed and "PSNR" in bad.failure, bad.metric


def test_half_psnr_script_reports_the_row_at_any_size(rt, tmp_path):
    """scripts/half_psnr.py (the full-size check of the row above, for a GPU) at a tiny size on the device under
    test: it passes, writes the PSNR and the latents' error, and its exit status is the verdict."""
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "scripts" / "half_psnr.py"
    spec = importlib.util.spec_from_file_location("half_psnr", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "row.json"
    selector = f"{rt.device.platform.name}:{rt.device.name}"
    assert mod.main(["--device", selector, "--model", "tiny-sd1", "--size", "64", "--steps", "2",
                     "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["passed"] and "image PSNR" in row["metric"] and 0 < row["latent_rel_l2"] < 0.05
