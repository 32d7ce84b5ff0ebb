"""Kernels built ahead (sdcl.opencl_impl.prebuild): the pass that finds a call's programs launches nothing, the
programs it finds are all the call needs, and a program that fails to build still fails where the call needs it."""

from __future__ import annotations

import numpy as np
import pytest

from sdcl.opencl_impl import prebuild
from sdcl.opencl_impl.backend import opencl_backend_for
from sdcl.opencl_impl.ops import DeviceOps
from sdcl.opencl_impl.runtime import KernelBuildError, Runtime
from sdcl.opencl_impl.selection import policy_for
from sdcl.reference.configs import get_config
from sdcl.reference.pipeline import StableDiffusion, init_weights
from sdcl.resources import kernel_dir


def _programs(rt) -> set:
    return {k for k in rt.programs if len(k) == 2 and isinstance(k[1], tuple)}   # (file, options): built programs


@pytest.mark.parametrize("family", ["tiny-sd1", "tiny-sd2"])
def test_a_prebuilt_pipeline_builds_nothing_more(rt, tmp_path, family):
    r = Runtime(rt.device, cache_dir=tmp_path)
    r.policy = policy_for(r)
    cfg = get_config(family)
    be = opencl_backend_for(r)
    pipe = StableDiffusion(cfg, init_weights(cfg, seed=0), text_backend=be, unet_backend=be, vae_backend=be)
    r.profile = True
    n = prebuild.pipeline(pipe, 16, 24)
    assert n > 5 and len(_programs(r)) == n
    assert not r.events                                    # the pass launched nothing
    r.profile = False
    before = _programs(r)
    pipe("a red bicycle", steps=2, height=16, width=24)
    assert _programs(r) == before


def test_a_broken_program_fails_where_the_call_needs_it_and_is_built_once(rt, tmp_path):
    overlay = tmp_path / "kernels"
    overlay.mkdir()
    (overlay / "elementwise.cl").write_text((kernel_dir() / "elementwise.cl").read_text() + "\nthis is not C;\n")
    r = Runtime(rt.device, kernel_path=(overlay, kernel_dir()), cache_dir=tmp_path / "cache")
    ops, x = DeviceOps(r), r.to_device(np.ones(10, np.float32))
    jobs = prebuild.collect(r, ops.silu, x)
    assert [file for _, file, _, _ in jobs] == ["elementwise.cl"]
    assert prebuild.build(jobs, threads=2) == 1 and len(r.failed_builds) == 1
    with pytest.raises(KernelBuildError, match="elementwise.cl failed to build"):
        ops.silu(x)
    assert len(r.failed_builds) == 1 and not _programs(r)


def test_collecting_leaves_no_state_behind(rt):
    r = Runtime(rt.device)
    x = r.to_device(np.ones(10, np.float32))
    prebuild.collect(r, lambda a: 1 / 0, x)                # the pass's own error is the real call's to raise
    assert r.collecting is None
    np.testing.assert_allclose(DeviceOps(r).silu(x).get(), 1 / (1 + np.exp(-1.0)), rtol=1e-6)
