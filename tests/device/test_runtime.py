"""The runtime's errors and choices as a user meets them: no platform, a missing NVIDIA ICD, a bad selector,
a kernel that does not build, the -D options and the program cache."""

import os
import subprocess
import sys

import numpy as np
import pyopencl as cl
import pytest

from sdcl.opencl_impl import devices, runtime
from sdcl.opencl_impl.devices import DeviceError, select_device
from sdcl.opencl_impl.runtime import KernelBuildError, Runtime, build_options


def test_no_platform_says_how_to_install_pocl(monkeypatch):
    monkeypatch.setattr(devices, "platforms", lambda: [])
    monkeypatch.delenv("PYOPENCL_CTX", raising=False)
    with pytest.raises(DeviceError, match="pocl-opencl-icd"):
        devices.default_device()
    with pytest.raises(DeviceError, match="no OpenCL platform"):
        select_device("0:0")


def test_nvidia_driver_without_icd_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(devices.ctypes.util, "find_library", lambda name: "libnvidia-opencl.so.1")
    monkeypatch.setattr(devices, "Path", lambda p: tmp_path / "vendors" if p == "/etc/OpenCL/vendors" else tmp_path / "x")
    hint = devices._nvidia_icd_hint()
    assert "/etc/OpenCL/vendors/nvidia.icd" in hint and "libnvidia-opencl.so.1" in hint


def test_bad_selectors_are_named(monkeypatch):
    monkeypatch.delenv("PYOPENCL_CTX", raising=False)
    with pytest.raises(DeviceError, match="no platform matches 'nosuchvendor'"):
        select_device("nosuchvendor")
    with pytest.raises(DeviceError, match="no platform 99"):
        select_device("99")


def test_default_is_pocl_cpu(monkeypatch):
    monkeypatch.delenv("PYOPENCL_CTX", raising=False)
    dev = devices.default_device()
    assert "portable" in dev.platform.name.lower()


def test_pocl_selector_names_pocl_by_its_vendor(monkeypatch):
    # PoCL's platform is "Portable Computing Language"; users type "pocl", its vendor's word ("The pocl project")
    monkeypatch.delenv("PYOPENCL_CTX", raising=False)
    assert select_device("pocl").platform.vendor == "The pocl project"


def test_options_are_d_macros():
    assert build_options({"WG": 64, "HAS_BIAS": True}) == ["-DREAL=float", "-DHAS_BIAS", "-DWG=64"]
    assert build_options({}, np.float64)[:2] == ["-DREAL=double", "-DREAL_IS_DOUBLE"]


def test_a_kernel_that_fails_to_build_reports_device_options_and_log_once(tmp_path, monkeypatch):
    rt = Runtime(devices.default_device(), kernel_path=[tmp_path])
    (tmp_path / "broken.cl").write_text("__kernel void broken_naive(__global float *y) { y[0] = undeclared_name; }\n")
    with pytest.raises(KernelBuildError) as err:
        rt.program("broken.cl", {"WG": 32})
    msg = str(err.value)
    assert "broken.cl" in msg and rt.info["device"] in msg and "-DWG=32" in msg and "undeclared_name" in msg
    # built once: asking again reports the same failure without compiling again
    monkeypatch.setattr(cl, "Program", lambda *a, **k: pytest.fail("a failed build was compiled again"))
    with pytest.raises(KernelBuildError, match="undeclared_name"):
        rt.program("broken.cl", {"WG": 32})


def test_a_work_group_past_the_kernels_limit_is_refused_with_the_limits(tmp_path):
    from sdcl.opencl_impl.runtime import LaunchLimitError
    rt = Runtime(devices.default_device(), kernel_path=[tmp_path])
    (tmp_path / "k.cl").write_text("__kernel void k_naive(__global float *y) { y[get_global_id(0)] = 1; }\n")
    knl = rt.kernel("k.cl", "k_naive")
    wg, _, fixed = rt.kernel_limits(knl)
    assert not fixed and 1 <= wg <= rt.device.max_work_group_size
    y = rt.empty((2 * wg,))
    rt.launch("k", knl, (wg,), (wg,), y.data)       # at the limit: runs
    with pytest.raises(LaunchLimitError, match=rf"k_naive .*work-group \({2 * wg},\).*allows work-groups of {wg}"):
        rt.launch("k", knl, (2 * wg,), (2 * wg,), y.data)


def test_a_launch_the_driver_refuses_is_named_with_the_limits(tmp_path):
    """A kernel built for 8-wide work-groups launched with 4: not prechecked (its size is fixed at build time), the
    driver's INVALID_WORK_GROUP_SIZE comes back as LaunchLimitError with the kernel and sizes."""
    from sdcl.opencl_impl.runtime import LaunchLimitError
    rt = Runtime(devices.default_device(), kernel_path=[tmp_path])
    (tmp_path / "k.cl").write_text("__kernel __attribute__((reqd_work_group_size(8, 1, 1))) "
                                   "void k_naive(__global float *y) { y[get_global_id(0)] = 1; }\n")
    knl = rt.kernel("k.cl", "k_naive")
    assert rt.kernel_limits(knl)[2]
    y = rt.empty((16,))
    rt.launch("k", knl, (16,), (8,), y.data)
    with pytest.raises(LaunchLimitError, match=r"k_naive was refused \(.*INVALID_WORK_GROUP_SIZE.*work-group \(4,\)"):
        rt.launch("k", knl, (16,), (4,), y.data)


def test_programs_are_cached_per_file_and_options(tmp_path):
    rt = Runtime(devices.default_device(), kernel_path=[tmp_path])
    (tmp_path / "k.cl").write_text("__kernel void k_naive(__global float *y) { y[get_global_id(0)] = WG; }\n")
    a = rt.program("k.cl", {"WG": 2})
    assert rt.program("k.cl", {"WG": 2}) is a
    assert rt.program("k.cl", {"WG": 3}) is not a


def test_sdcl_build_options_reach_every_build(tmp_path, monkeypatch):
    """SDCL_BUILD_OPTIONS (e.g. "-cl-nv-verbose" on NVIDIA) is appended to every build's options: a macro given
    there is seen by the kernel, and an option the compiler refuses fails the build naming it."""
    rt = Runtime(devices.default_device(), kernel_path=[tmp_path])
    (tmp_path / "k.cl").write_text("__kernel void k_naive(__global float *y) { y[get_global_id(0)] = FROM_ENV; }\n")
    monkeypatch.setenv("SDCL_BUILD_OPTIONS", "-DFROM_ENV=7")
    y = rt.empty((4,))
    rt.launch("k", rt.kernel("k.cl", "k_naive"), (4,), None, y.data)
    assert (y.get() == 7).all()
    monkeypatch.setenv("SDCL_BUILD_OPTIONS", "-cl-no-such-option")
    with pytest.raises(KernelBuildError, match="-cl-no-such-option"):
        rt.program("k.cl", {"WG": 1})


def test_the_kernel_path_is_searched_in_order(tmp_path):
    """A folder before sdcl's kernels on the path replaces a file of the same name (an A/B overlay, a plugin)."""
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, value in ((first, 1), (second, 2)):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "k.cl").write_text(f"__kernel void k(__global float *y) {{ y[0] = {value}; }}\n")
    (second / "only.cl").write_text("__kernel void k(__global float *y) { y[0] = 3; }\n")
    assert "= 1;" in runtime.kernel_source("sub/k.cl", [first, second])
    assert "= 3;" in runtime.kernel_source("only.cl", [first, second])
    with pytest.raises(FileNotFoundError, match="missing.cl"):
        runtime.kernel_source("missing.cl", [first, second])


def test_included_headers_are_built_and_their_changes_rebuild(tmp_path):
    (tmp_path / "k.cl").write_text('#include "two.h"\n'
                                   "__kernel void k_naive(__global float *y) { y[get_global_id(0)] = TWO; }\n")
    out = np.zeros(4, np.float32)
    for value in (2, 5):   # the header changes between two runtimes: the (disk-cached) binary must follow it
        (tmp_path / "two.h").write_text(f"#define TWO {value}.0f\n")
        rt = Runtime(devices.default_device(), kernel_path=[tmp_path])
        buf = cl.Buffer(rt.context, cl.mem_flags.WRITE_ONLY, out.nbytes)
        rt.program("k.cl").k_naive(rt.queue, (4,), None, buf)
        cl.enqueue_copy(rt.queue, out, buf)
        assert (out == value).all()


def test_headers_resolve_beside_the_including_file_then_at_the_top_each_once(tmp_path):
    (tmp_path / "fam").mkdir()
    (tmp_path / "common.h").write_text("#define TOP 1\n")
    (tmp_path / "fam" / "local.h").write_text('#include "common.h"\n#define LOCAL 2\n')
    (tmp_path / "fam" / "k.cl").write_text('#include "common.h"\n#include "local.h"\nint x = TOP + LOCAL;\n')
    src = runtime.kernel_source("fam/k.cl", [tmp_path])
    assert src.count("#define TOP 1") == 1 and "#define LOCAL 2" in src and "#include" not in src


_WG_FUNCTIONS = """
import sys
import numpy as np
from sdcl.opencl_impl.devices import select_device
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.variants.gemm import gemm
from sdcl.registry import REGISTRY
rt = Runtime(select_device("pocl"), cache_dir=sys.argv[1])
for op in ("matmul", "linear"):                                 # B (K, N) and B^T (N, K)
    knobs = REGISTRY[op].variant("cpu_reg").complete({})
    for m, n, k in ((5, 7, 3), (13, 33, 9), (40, 100, 17)):    # three global sizes (PoCL's choice: three local sizes)
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
        c = rt.empty((m, n))
        bt = op == "linear"
        gemm(rt, op, "cpu_reg", knobs, rt.to_device(a).data, rt.to_device(b.T.copy() if bt else b).data, c.data,
             m, n, k, lda=k, ldb=k if bt else n, ldc=n, trans_b=bt)
        assert np.allclose(c.get(), a @ b, atol=1e-4), (op, m, n, k)
"""


def test_gemm_cpu_reg_is_built_for_one_work_group_size_on_pocl(tmp_path):
    # PoCL generates a kernel's work-group function for each local size it launches with: left to the driver, the
    # local size followed each fuzzed shape, and code generation was most of a fresh machine's test time
    if not any("portable" in p.name.lower() for p in cl.get_platforms()):
        pytest.skip("PoCL is not installed")
    res = subprocess.run([sys.executable, "-c", _WG_FUNCTIONS, str(tmp_path / "programs")],
                         env={**os.environ, "POCL_CACHE_DIR": str(tmp_path / "pocl")}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    built = [d for d in (tmp_path / "pocl").rglob("gemm_cpu_reg") if d.is_dir()]
    assert len(built) == 2, built           # the two declarations' knobs: two programs
    for kernel in built:                    # each launched at three shapes, one work-group function
        assert len([d for d in kernel.iterdir() if d.is_dir()]) == 1, sorted(kernel.iterdir())
