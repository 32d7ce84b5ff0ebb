"""Layer benchmarks: every layer of sdcl.perf.layers (text encoder layer, UNet and VAE decoder blocks) at the real
SD shapes and those of the tiny models, on the device, beside torch. Only the benchmarked layer's weights are on
the device.

The torch baseline runs the same model code on torch tensors with perf.torch_ops (the model is built with host
weights for its checks, then given torch copies of the layer's weights): same graph, torch's kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

from sdcl.opencl_impl.ops import DeviceOps
from sdcl.perf import measure
from sdcl.perf.layers import CONFIGS, LAYERS, MODELS, has_block, layer_weights
from sdcl.reference.configs import get_config
from sdcl.reference.unet import _plan

@pytest.mark.layer
@pytest.mark.parametrize("config,layer", [
    pytest.param(n, layer, marks=[pytest.mark.fullsize] if full else [], id=f"{n}-{layer.name}")
    for n, full in CONFIGS for layer in LAYERS if has_block(n, layer)])
def test_layer(benchmark, rt, torch_device, layer, config, pytestconfig, progress):
    cfg = get_config(config)
    cls, _, part = MODELS[layer.model]
    host_w = layer_weights(cfg, layer)
    rng = np.random.default_rng(0)
    inputs = {k: rng.standard_normal(s).astype(np.float32) for k, s in layer.inputs(cfg).items()}
    plan = _plan(cfg.unet)

    pool = measure.tracking(rt)
    pool.reset()
    dev_w = {k: rt.to_device(v) if k.startswith(layer.prefix) else v for k, v in host_w.items()}
    model = cls(getattr(cfg, part), dev_w, ops=DeviceOps(rt))
    dev_in = {k: rt.to_device(v) for k, v in inputs.items()}
    call = lambda: layer.run(model, plan, **dev_in)

    baseline, why_not = _torch_baseline(torch_device, cls, cfg, part, host_w, layer, plan, inputs)
    bar = progress(f"{config} {layer.name}")
    timing = measure.run(benchmark, rt, call, baseline, budget_s=4 * measure.budget(pytestconfig), min_rounds=3,
                         max_rounds=50, progress=bar, baseline_on_cpu=torch_device[0] == "cpu")
    info = measure.summary(timing, measure.wall_rounds(benchmark), None, None, None)
    benchmark.extra_info.update(kind="layer", device=rt.info["device"], model=config, layer=layer.name,
                                inputs={k: list(v.shape) for k, v in inputs.items()}, dtype="float32",
                                peak_alloc_bytes=pool.peak_bytes, torch_device=torch_device[0] if baseline else None,
                                torch_missing_reason=why_not, **info)


def _torch_baseline(torch_device, cls, cfg, part, host_w, layer, plan, inputs):
    """(callable, None) running the same layer code on torch tensors, or (None, why not)."""
    tdev, why_not = torch_device
    if tdev is None:
        return None, why_not
    try:
        import torch

        from sdcl.perf import torch_ops
        model = cls(getattr(cfg, part), host_w, ops=torch_ops)
        model.w = {k: torch.from_numpy(np.ascontiguousarray(v)).to(tdev) if k.startswith(layer.prefix) else v
                   for k, v in host_w.items()}
        t_in = {k: torch.from_numpy(v).to(tdev) for k, v in inputs.items()}

        def call():
            with torch.inference_mode():
                layer.run(model, plan, **t_in)
            torch_ops.synchronize(tdev)
        call()
        return call, None
    except Exception as e:  # the model code may not run on torch tensors; say so rather than fail the benchmark
        return None, f"the model code did not run on torch tensors: {type(e).__name__}: {e}"
