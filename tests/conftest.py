"""Shared fixtures: the OpenCL devices under test, chosen as pyopencl's tests choose them (PYOPENCL_TEST)."""

import os

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
