"""The torch baseline computes the same thing as the reference: each perf.torch_ops function against reference.ops
on small float64 inputs (a ratio against a baseline that computes something else would mean nothing), and
every reference op has a baseline."""

from __future__ import annotations

import numpy as np
import pytest

from sdcl.perf import torch_ops
from sdcl.reference import ops as R

rng = np.random.default_rng(0)
r = lambda *s: rng.standard_normal(s)

CASES = {
    "matmul": [((r(5, 7), r(7, 3)), {})],
    "batched_matmul": [((r(2, 5, 7), r(2, 7, 3)), {})],
    "linear": [((r(2, 5, 7), r(3, 7), r(3)), {}), ((r(4, 7), r(3, 7)), {})],
    "conv2d": [((r(2, 3, 9, 8), r(4, 3, 3, 3), r(4)), {"padding": 1}),
               ((r(1, 3, 9, 8), r(4, 3, 3, 3), r(4)), {"stride": 2, "padding": (0, 1, 0, 1)})],
    "group_norm": [((r(2, 6, 5, 4), 3, r(6), r(6)), {"eps": 1e-5})],
    "group_norm_silu": [((r(2, 6, 5, 4), 3, r(6), r(6)), {"eps": 1e-6})],
    "layer_norm": [((r(2, 5, 8), r(8), r(8)), {"eps": 1e-5})],
    "softmax": [((r(3, 7),), {}), ((r(2, 4, 3, 3),), {"axis": 1})],
    "gelu": [((r(4, 9),), {})],
    "gelu_tanh": [((r(4, 9),), {})],
    "quick_gelu": [((r(4, 9),), {})],
    "silu": [((r(4, 9),), {})],
    "geglu": [((r(2, 3, 10),), {})],
    "attention": [((r(2, 5, 8), r(2, 6, 8), r(2, 6, 8), 2), {}), ((r(2, 5, 8), r(2, 5, 8), r(2, 5, 8), 4),
                                                                 {"causal": True})],
    "timestep_embedding": [((np.array([1.0, 500.0, 999.0]), 10), {}),
                           ((np.array([3.0, 999.0]), 7), {"flip_sin_to_cos": False, "downscale_freq_shift": 1.0})],
    "token_embedding": [((np.array([[1, 4, 2], [0, 3, 3]]), r(6, 5), r(4, 5)), {})],
    "add": [((r(2, 3, 4, 4), r(1, 3, 1, 1)), {})],
    "mul": [((r(2, 3, 4, 4), r(2, 3, 1, 1)), {})],
    "concat": [(([r(2, 3, 4), r(2, 5, 4)],), {"axis": 1})],
    "upsample_nearest2x": [((r(1, 2, 3, 5),), {})],
    "permute": [((r(2, 3, 4, 5),), {"axes": (0, 2, 3, 1)})],
}


def test_every_reference_op_has_a_torch_baseline_and_a_case():
    assert sorted(op for op in R.OPS if not hasattr(torch_ops, op)) == []
    assert sorted(op for op in R.OPS if op not in CASES) == []


@pytest.mark.parametrize("op", sorted(CASES))
def test_torch_baseline_matches_reference(op):
    if not hasattr(R, op):
        pytest.skip(f"reference.ops has no {op}")
    for args, kwargs in CASES[op]:
        expected = getattr(R, op)(*args, **kwargs)
        got = getattr(torch_ops, op)(*[torch_ops.to_torch(a, "cpu") for a in args],
                                     **{k: torch_ops.to_torch(v, "cpu") for k, v in kwargs.items()})
        got = got.numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=op)


def test_op_call_runs_on_float32_host_arrays():
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    call = torch_ops.op_call("silu", (x,), {}, "cpu")
    call()  # returns nothing; waits for the result
    assert torch_ops.baseline_device({"type": "CPU", "platform": "Portable Computing Language"}) == ("cpu", None)
    dev, why = torch_ops.baseline_device({"type": "GPU", "platform": "AMD Accelerated Parallel Processing"})
    assert dev is None and "no torch backend" in why


def test_torch_pipeline_baseline_denoises_like_the_reference():
    """The end-to-end benchmarks' torch baseline (torch_ops.torch_pipeline) is the same computation as the NumPy
    reference pipeline: same latents after the DDIM loop, to float32 rounding."""
    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import StableDiffusion, init_weights
    cfg = get_config("tiny-sd2")
    size = cfg.vae.sample_size
    weights = init_weights(cfg, seed=0)
    expected = StableDiffusion(cfg, weights).denoise("a red bicycle", "", 3, 2, 7.5, size, size, "ddim", 0.0)
    got = torch_ops.torch_pipeline(cfg, weights, "cpu").denoise("a red bicycle", "", 3, 2, 7.5, size, size, "ddim", 0.0)
    assert isinstance(got, np.ndarray) and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
