"""The benchmark session: one OpenCL device (--device, else PYOPENCL_CTX, else PoCL), its measured peak, and the
run's device and environment written into pytest-benchmark's machine_info for the history store.

Options:
  --device SELECTOR        pyopencl's PYOPENCL_CTX syntax ("portable", "nvidia", "0:1")
  --kernel-overlay DIR     kernel files in DIR replace the same-named files of sdcl's kernels for this run (A/B a
                           kernel change before committing it; the run records the overlaid files' hashes)
  --refresh-peak           measure the device peak again instead of using the cached one
  --bench-budget SECONDS   time per benchmark, ours and torch's rounds together (default 1.0; 0.3 under -m quick)
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import pytest

# PoCL's pthread device pins its worker threads to cores (before any OpenCL call reads it): unpinned, on a 2-core
# machine its two workers sometimes share one core for a whole process, and a 0.1 ms kernel runs at ~0.095 or
# ~0.165 ms by process (quick silu, whole runs in one mode: CI flagged a rerun of the same code at +70.8%); pinned,
# 12 processes of 3 runs measured 0.0936-0.0954 ms and ours/torch 4.15-4.25 (docs/PERF.md). A value the user set
# wins; the run's environment records it.
os.environ.setdefault("POCL_AFFINITY", "1")

MARKERS = {
    "quick": "a few small op benchmarks for CI (seconds)",
    "op": "one registry op variant at a real SD shape",
    "layer": "one model layer (UNet block, text encoder layer, VAE block) at SD shapes",
    "e2e": "prompt to PNG through the whole pipeline",
    "fullsize": "full-size models (sd15, sd21-base): minutes to hours on a CPU",
}


def pytest_addoption(parser):
    g = parser.getgroup("sdcl perf")
    g.addoption("--device", default=None, help="OpenCL device selector (PYOPENCL_CTX syntax); default: PoCL")
    g.addoption("--kernel-overlay", default=None, help="folder of .cl files that replace those of kernels/")
    g.addoption("--refresh-peak", action="store_true", help="measure the device peak again")
    g.addoption("--bench-budget", type=float, default=None, help="seconds per benchmark (default 1.0)")


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def pytest_configure(config):
    _SESSION["loadavg_start"] = _loadavg()
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    overlay = config.getoption("--kernel-overlay", default=None)
    config._sdcl_overlay = _apply_overlay(Path(overlay)) if overlay else {}
    config._sdcl_overlay_dir = Path(overlay) if overlay else None


def _apply_overlay(folder: Path) -> dict:
    """The overlay folder's kernel files and their hashes, {file: sha256[:12]}; the session's Runtime searches the
    folder before sdcl's kernels."""
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".cl", ".h"))
    if not files:
        raise pytest.UsageError(f"--kernel-overlay {folder}: no .cl or .h files there")
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in files}


_SESSION: dict = {}


@pytest.fixture(scope="session")
def rt(pytestconfig):
    """The Runtime of the device under test, with the device's selection policy (layer and end-to-end runs go
    through it), kernels looked up in the --kernel-overlay folder first, its allocator wrapped to record peak
    memory."""
    from sdcl.opencl_impl.devices import select_device
    from sdcl.opencl_impl.runtime import Runtime
    from sdcl.opencl_impl.selection import policy_for
    from sdcl.perf.measure import tracking
    from sdcl.resources import kernel_dir

    overlay = pytestconfig._sdcl_overlay_dir
    rt = Runtime(select_device(pytestconfig.getoption("--device")),
                 kernel_path=((overlay,) if overlay else ()) + (kernel_dir(),))
    rt.policy = policy_for(rt)
    tracking(rt)
    _SESSION["rt"] = rt
    return rt


@pytest.fixture(scope="session")
def peak(rt, pytestconfig):
    from sdcl.perf.peak import get_peak
    p = get_peak(rt, refresh=pytestconfig.getoption("--refresh-peak"))
    _SESSION["peak"] = p
    return p


@pytest.fixture(scope="session")
def torch_device(rt):
    """(torch device, None) or (None, reason there is no comparable torch baseline)."""
    try:
        from sdcl.perf.torch_ops import baseline_device
    except ImportError as e:
        return None, f"torch is not importable: {e}"
    return baseline_device(rt.info)


@pytest.fixture
def progress(capsys):
    """A tqdm bar on the terminal (outside pytest's capture) for long benchmarks; call it with a description."""
    from tqdm import tqdm
    bars = []

    def make(desc: str, total: int | None = None):
        bar = tqdm(total=total, desc=desc, unit="round", leave=False, dynamic_ncols=True)
        bars.append(bar)
        return bar

    with capsys.disabled():
        yield make
        for bar in bars:
            bar.close()


def pytest_benchmark_update_machine_info(config, machine_info):
    """The device and its peak go into the run's machine_info, which `sdcl perf import` reads."""
    from sdcl.opencl_impl.devices import device_info, device_key, select_device
    rt = _SESSION.get("rt")
    dev = rt.device if rt is not None else select_device(config.getoption("--device"))
    env = {k: v for k, v in os.environ.items() if k.startswith(("PYOPENCL_", "POCL_", "SDCL_", "CUDA_VISIBLE"))}
    versions = {}
    for mod in ("numpy", "pyopencl", "torch", "pytest_benchmark"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    machine_info["sdcl"] = {
        "device": device_key(dev),
        "device_info": device_info(dev),
        "peak": _SESSION.get("peak"),
        "kernel_overlay": config._sdcl_overlay,
        "environment": {"python": platform.python_version(), "versions": versions, "env": env,
                        "torch_threads": _torch_threads(), "cpu_count": os.cpu_count(),
                        # other processes competing for the CPU make host-side timings (and CPU devices) noisy
                        "loadavg_start": _SESSION.get("loadavg_start"), "loadavg_end": _loadavg()},
    }


def _torch_threads():
    try:
        import torch
        return torch.get_num_threads()
    except ImportError:
        return None
