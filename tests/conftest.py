"""The test tiers and the shared fixtures.

Tiers, one folder each, marked by the folder (`pytest -m unit`, `-m "not integration"`, ...):
- unit: no device, no oracle (NumPy only): the reference's own behaviour, the package's shape, statistics;
- device: on the OpenCL devices under test (default PoCL; `PYOPENCL_TEST` as pyopencl's tests choose them), tiny
  shapes: every variant against the reference, the runtime, the policy;
- oracle: the reference against independent implementations (torch, diffusers, transformers, open_clip);
- integration: the CLI, the benchmark suite and a built wheel, as a user runs them (subprocesses, fresh venvs).
"""

import os
from pathlib import Path

import pytest

import sdcl.conformance.profiles  # noqa: F401  (registers the Hypothesis profiles)
from hypothesis import settings

if not os.environ.get("_SDCL_PROFILE_SET"):
    settings.load_profile(os.environ.get("SDCL_HYPOTHESIS_PROFILE", "ci"))


def _devices():
    try:
        import pyopencl.tools
        from sdcl.opencl_impl.devices import default_device
    except ImportError:
        return []
    if os.environ.get("PYOPENCL_TEST"):
        return [d for _, devs in pyopencl.tools.get_test_platforms_and_devices() for d in devs]
    return [default_device()]


_RUNTIMES = {}


def pytest_generate_tests(metafunc):
    if "rt" in metafunc.fixturenames:
        devs = _devices()
        metafunc.parametrize("rt", devs, ids=[f"{d.platform.name.split()[0]}:{d.name.strip()[:24]}" for d in devs],
                             indirect=True)


@pytest.fixture
def rt(request):
    """A Runtime for the device under test, shared by all tests of the session."""
    from sdcl.opencl_impl.runtime import Runtime
    dev = request.param
    key = dev.int_ptr
    if key not in _RUNTIMES:
        _RUNTIMES[key] = Runtime(dev)
    return _RUNTIMES[key]


@pytest.fixture
def emulation_at_source_level(rt):
    """Where NVIDIA's PTX does not run, the tensor-core kernels run their OpenCL C emulation of it (MMA_EMULATE 1),
    which no user's device runs: what it checks is the source (fragment layouts, staging, tiling, tails), so it is
    built without optimization, as the gate builds another device's knob settings (conformance.runner.
    SOURCE_CHECK_FLAGS). PoCL's optimized code generation for these tiles was most of tests/device/test_mma_f16.py's
    time: two of its tests 161 s with empty caches, 22 s built with -cl-opt-disable (2-core AVX2 EPYC, 2026-12-07)."""
    from sdcl.conformance.runner import SOURCE_CHECK_FLAGS
    with rt.built_with(() if rt.info.get("nvidia_ptx") else SOURCE_CHECK_FLAGS):
        yield


TIERS = ("unit", "device", "oracle", "integration")


def pytest_collection_modifyitems(config, items):
    """Mark every test with the tier of its folder; a test outside the tier folders is an error."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of the tier folders tests/{{{','.join(TIERS)}}}")
        item.add_marker(getattr(pytest.mark, tier))
