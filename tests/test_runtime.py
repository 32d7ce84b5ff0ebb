"""The runtime's errors and choices as a user meets them: no platform, a missing NVIDIA ICD, a bad selector,
a kernel that does not build, the -D options and the program cache."""

import numpy as np
import pytest

cl = pytest.importorskip("pyopencl")

from sdcl.opencl_impl import runtime  # noqa: E402
from sdcl.opencl_impl.runtime import DeviceError, KernelBuildError, build_options, select_device  # noqa: E402


def test_no_platform_says_how_to_install_pocl(monkeypatch):
    monkeypatch.setattr(runtime, "platforms", lambda: [])
    monkeypatch.delenv("PYOPENCL_CTX", raising=False)
    with pytest.raises(DeviceError, match="pocl-opencl-icd"):
        runtime.default_device()
    with pytest.raises(DeviceError, match="no OpenCL platform"):
        select_device("0:0")


def test_nvidia_driver_without_icd_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime.ctypes.util, "find_library", lambda name: "libnvidia-opencl.so.1")
    monkeypatch.setattr(runtime, "Path", lambda p: tmp_path / "vendors" if p == "/etc/OpenCL/vendors" else tmp_path / "x")
    hint = runtime._nvidia_icd_hint()
    assert "/etc/OpenCL/vendors/nvidia.icd" in hint and "libnvidia-opencl.so.1" in hint


def test_bad_selectors_are_named(monkeypatch):
    monkeypatch.delenv("PYOPENCL_CTX", raising=False)
    with pytest.raises(DeviceError, match="no platform matches 'nosuchvendor'"):
        select_device("nosuchvendor")
    with pytest.raises(DeviceError, match="no platform 99"):
        select_device("99")


def test_default_is_pocl_cpu(monkeypatch):
    monkeypatch.delenv("PYOPENCL_CTX", raising=False)
    dev = runtime.default_device()
    assert "portable" in dev.platform.name.lower()


def test_options_are_d_macros():
    assert build_options({"WG": 64, "HAS_BIAS": True}) == ["-DREAL=float", "-DHAS_BIAS", "-DWG=64"]
    assert build_options({}, np.float64)[:2] == ["-DREAL=double", "-DREAL_IS_DOUBLE"]


def test_a_kernel_that_fails_to_build_reports_device_options_and_log(tmp_path):
    rt = runtime.Runtime(runtime.default_device())
    bad = tmp_path / "broken.cl"
    bad.write_text("__kernel void broken_naive(__global float *y) { y[0] = undeclared_name; }\n")
    with pytest.raises(KernelBuildError) as err:
        rt.program(str(bad), {"WG": 32})
    msg = str(err.value)
    assert "broken.cl" in msg and rt.info["device"] in msg and "-DWG=32" in msg and "undeclared_name" in msg


def test_programs_are_cached_per_file_and_options(tmp_path):
    rt = runtime.Runtime(runtime.default_device())
    src = tmp_path / "k.cl"
    src.write_text("__kernel void k_naive(__global float *y) { y[get_global_id(0)] = WG; }\n")
    a = rt.program(str(src), {"WG": 2})
    assert rt.program(str(src), {"WG": 2}) is a
    assert rt.program(str(src), {"WG": 3}) is not a


def test_included_headers_are_built_and_their_changes_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "KERNEL_DIR", tmp_path)
    (tmp_path / "k.cl").write_text('#include "two.h"\n'
                                   "__kernel void k_naive(__global float *y) { y[get_global_id(0)] = TWO; }\n")
    out = np.zeros(4, np.float32)
    for value in (2, 5):   # the header changes between two runtimes: the (disk-cached) binary must follow it
        (tmp_path / "two.h").write_text(f"#define TWO {value}.0f\n")
        rt = runtime.Runtime(runtime.default_device())
        buf = cl.Buffer(rt.context, cl.mem_flags.WRITE_ONLY, out.nbytes)
        rt.program("k.cl").k_naive(rt.queue, (4,), None, buf)
        cl.enqueue_copy(rt.queue, out, buf)
        assert (out == value).all()
