"""End-to-end benchmarks: prompt to PNG through sdcl.reference.pipeline.StableDiffusion with every stage on the OpenCL
device (sdcl.opencl_impl.backend), seeded random weights; tiny models by default, the full-size ones
(512 x 512, 20 DDIM steps) under `-m fullsize` (`sdcl perf run --full-size`). Each in float32, and SD 2.x in the float16
dtype too (weights and activations half between kernels; the torch baseline runs the same half weights in float16),
whose peak device memory against the float32 row's of the same run is the float16 claim of docs/PERF.md.

extra_info holds the pipeline's own per-stage timings of the last round (text encoder, UNet loop, per step,
VAE decode), the kernel time of the whole call and the peak device memory. The torch baseline is the same pipeline
code with torch ops in every stage (perf.torch_ops.pipeline_backend: same prompt, seed, steps, size and PNG write),
interleaved with our rounds like every other baseline.
"""

from __future__ import annotations

import numpy as np
import pytest

from sdcl.opencl_impl.backend import opencl_backend_for
from sdcl.perf import measure
from sdcl.reference.configs import get_config
from sdcl.reference.pipeline import StableDiffusion, init_weights

PROMPT = "a red bicycle leaning against a brick wall"
CASES = [("tiny-sd1", 4, None, False, "float32"), ("tiny-sd2", 4, None, False, "float32"),
         ("tiny-sd2", 4, None, False, "float16"), ("sd15", 20, 512, True, "float32"),
         ("sd21-base", 20, 512, True, "float32"), ("sd21-base", 20, 512, True, "float16")]


def _torch_pipeline(torch_device, cfg, weights, steps, size, out, dtype):
    """(callable, None) running the pipeline with torch ops in every stage, or (None, why not)."""
    tdev, why_not = torch_device
    if tdev is None:
        return None, why_not
    try:
        import torch
        from PIL import Image

        from sdcl.perf.torch_ops import synchronize, torch_pipeline
        pipe = torch_pipeline(cfg, weights, tdev)

        def call():
            with torch.inference_mode():
                Image.fromarray(pipe(PROMPT, seed=0, steps=steps, height=size, width=size, dtype=dtype)).save(out)
            synchronize(tdev)
        return call, None
    except Exception as e:  # the pipeline code may not run on torch tensors; say so rather than fail the benchmark
        return None, f"the pipeline did not run on torch tensors: {type(e).__name__}: {e}"


@pytest.mark.e2e
@pytest.mark.parametrize("model,steps,size,dtype", [
    pytest.param(m, s, z, np.dtype(d), id=f"{m}-{s}steps" + ("" if d == "float32" else f"-{d}"),
                 marks=[pytest.mark.fullsize] if full else []) for m, s, z, full, d in CASES])
def test_prompt_to_png(benchmark, rt, torch_device, model, steps, size, dtype, pytestconfig, tmp_path, progress):
    from PIL import Image

    cfg = get_config(model)
    size = size or cfg.vae.sample_size
    backend = opencl_backend_for(rt)
    pool = measure.tracking(rt)
    pool.reset()
    weights = init_weights(cfg, seed=0, dtype=dtype)
    pipe = StableDiffusion(cfg, weights, text_backend=backend, unet_backend=backend, vae_backend=backend)
    out = tmp_path / "out.png"

    def call():
        Image.fromarray(pipe(PROMPT, seed=0, steps=steps, height=size, width=size, dtype=dtype)).save(out)

    baseline, why_not = _torch_pipeline(torch_device, cfg, weights, steps, size, tmp_path / "torch.png", dtype)
    timing = measure.run(benchmark, rt, call, baseline, budget_s=10 * measure.budget(pytestconfig), min_rounds=1,
                         max_rounds=20, progress=progress(f"{model} prompt to PNG"),
                         baseline_on_cpu=torch_device[0] == "cpu")
    info = measure.summary(timing, measure.wall_rounds(benchmark), None, None, None)
    assert out.stat().st_size > 0
    benchmark.extra_info.update(kind="e2e", device=rt.info["device"], model=model, steps=steps, size=size,
                                sampler="ddim", dtype=dtype.name, stages_s=dict(pipe.timings),
                                peak_alloc_bytes=pool.peak_bytes,
                                torch_device=torch_device[0] if baseline else None, torch_missing_reason=why_not,
                                **info)
