"""End-to-end benchmarks: prompt to PNG through reference.pipeline.StableDiffusion with every stage on the OpenCL
device (opencl_impl.backend.opencl_backend), seeded random weights; tiny models by default, the full-size ones
(512 x 512, 20 DDIM steps) under `-m fullsize` (`sdcl perf run --full-size`).

extra_info holds the pipeline's own per-stage timings of the last round (text encoder, UNet loop, per step,
VAE decode), the kernel time of the whole call and the peak device memory. The torch baseline is the same pipeline
code with torch ops in every stage (perf.torch_ops.pipeline_backend: same prompt, seed, steps, size and PNG write),
interleaved with our rounds like every other baseline.
"""

from __future__ import annotations

import pytest

try:
    from opencl_impl.backend import opencl_backend
    from reference.configs import get_config
    from reference.pipeline import StableDiffusion, init_weights
except ImportError as e:  # the pipeline and models are written in parallel with these benchmarks
    pytest.skip(f"pipeline not importable: {e}", allow_module_level=True)

from perf import measure

PROMPT = "a red bicycle leaning against a brick wall"
CASES = [("tiny-sd1", 4, None, False), ("tiny-sd2", 4, None, False),
         ("sd15", 20, 512, True), ("sd21-base", 20, 512, True)]


TINY_OF = {"tiny-sd1": "tiny-sd1", "tiny-sd2": "tiny-sd2", "sd15": "tiny-sd1", "sd21-base": "tiny-sd2"}


def _ops_used(model: str) -> set:
    """The op names the pipeline calls, found by running the tiny model of the family (same code paths) once
    on NumPy through a recording ops namespace."""
    from reference import ops as R
    from reference.pipeline import Backend

    used = set()

    class Recorder:
        def __getattr__(self, name):
            used.add(name)
            return getattr(R, name)
    cfg = get_config(model)
    b = Backend("recorder", Recorder())
    StableDiffusion(cfg, init_weights(cfg, seed=0), text_backend=b, unet_backend=b, vae_backend=b)(
        PROMPT, steps=1, height=cfg.vae.sample_size, width=cfg.vae.sample_size)
    return used


def _torch_pipeline(torch_device, cfg, weights, steps, size, out):
    """(callable, None) running the pipeline with torch ops in every stage, or (None, why not)."""
    tdev, why_not = torch_device
    if tdev is None:
        return None, why_not
    try:
        import torch
        from PIL import Image

        from perf.torch_ops import synchronize, torch_pipeline
        pipe = torch_pipeline(cfg, weights, tdev)

        def call():
            with torch.inference_mode():
                Image.fromarray(pipe(PROMPT, seed=0, steps=steps, height=size, width=size)).save(out)
            synchronize(tdev)
        return call, None
    except Exception as e:  # the pipeline code may not run on torch tensors; say so rather than fail the benchmark
        return None, f"the pipeline did not run on torch tensors: {type(e).__name__}: {e}"


@pytest.mark.e2e
@pytest.mark.parametrize("model,steps,size", [
    pytest.param(m, s, z, id=f"{m}-{s}steps", marks=[pytest.mark.fullsize] if full else []) for m, s, z, full in CASES])
def test_prompt_to_png(benchmark, rt, torch_device, model, steps, size, pytestconfig, tmp_path, progress):
    from PIL import Image

    from opencl_impl import ops as cl_ops
    missing = sorted(op for op in _ops_used(TINY_OF[model]) if not hasattr(cl_ops, op))
    if missing:
        pytest.skip(f"OpenCL ops not implemented yet: {', '.join(missing)}")

    cfg = get_config(model)
    size = size or cfg.vae.sample_size
    backend = opencl_backend(pytestconfig.getoption("--device"))
    pool = measure.tracking(rt)
    pool.reset()
    weights = init_weights(cfg, seed=0)
    pipe = StableDiffusion(cfg, weights, text_backend=backend, unet_backend=backend, vae_backend=backend)
    out = tmp_path / "out.png"

    def call():
        Image.fromarray(pipe(PROMPT, seed=0, steps=steps, height=size, width=size)).save(out)

    from perf.conftest import budget
    baseline, why_not = _torch_pipeline(torch_device, cfg, weights, steps, size, tmp_path / "torch.png")
    timing = measure.run(benchmark, rt, call, baseline, budget_s=10 * budget(pytestconfig), min_rounds=1,
                         max_rounds=20, progress=progress(f"{model} prompt to PNG"))
    info = measure.summary(timing, measure.wall_rounds(benchmark), None, None, None)
    assert out.stat().st_size > 0
    benchmark.extra_info.update(kind="e2e", device=rt.info["device"], model=model, steps=steps, size=size,
                                sampler="ddim", stages_s=dict(pipe.timings), peak_alloc_bytes=pool.peak_bytes,
                                torch_device=torch_device[0] if baseline else None, torch_missing_reason=why_not,
                                **info)
