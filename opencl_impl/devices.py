"""OpenCL devices: listing, choice, and the capabilities that matter for SD kernels.

Device choice follows pyopencl's conventions: a selector string as `PYOPENCL_CTX` takes it ("0", "0:1",
"portable:0", a platform-name substring then a device index); with no selector, `PYOPENCL_CTX` from the
environment; with neither, PoCL's CPU device (what the README's set-up installs), else the first GPU, else the
first device.
"""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

try:
    import pyopencl as cl
except ImportError as e:  # pragma: no cover - the error is the message
    raise ImportError("sdcl's OpenCL backend needs pyopencl: pip install 'sdcl[opencl]'") from e

POCL_HINT = ("install PoCL, the portable CPU OpenCL driver: `apt-get install pocl-opencl-icd` on Debian/Ubuntu "
             "(pip's pocl-binary-distribution builds no kernels on these CPUs; see README)")


class DeviceError(RuntimeError):
    """No usable OpenCL device, or a device without a feature an op needs."""


class SelectorError(DeviceError, ValueError):
    """A device selector that names no platform or device of this machine (bad input, not a broken machine)."""


def _nvidia_icd_hint() -> str:
    vendors = Path("/etc/OpenCL/vendors")
    has_lib = ctypes.util.find_library("nvidia-opencl") is not None or any(
        Path(p).exists() for p in ("/usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1",
                                   "/usr/local/nvidia/lib64/libnvidia-opencl.so.1", "/usr/lib64/libnvidia-opencl.so.1"))
    has_icd = vendors.is_dir() and any("nvidia" in f.read_text(errors="ignore").lower()
                                       for f in vendors.glob("*.icd"))
    if has_lib and not has_icd:
        return (" NVIDIA's OpenCL driver (libnvidia-opencl.so.1) is installed but no ICD file names it: write it with "
                "`mkdir -p /etc/OpenCL/vendors && echo libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd`.")
    return ""


def platforms() -> list:
    try:
        return cl.get_platforms()
    except cl.Error:  # pyopencl raises when the ICD loader finds no platform at all
        return []


def all_devices() -> list:
    return [d for p in platforms() for d in p.get_devices()]


def default_device() -> "cl.Device":
    devices = all_devices()
    if not devices:
        raise DeviceError("no OpenCL platform found: " + POCL_HINT + "." + _nvidia_icd_hint())
    pocl_cpu = [d for d in devices if "portable" in d.platform.name.lower() and d.type & cl.device_type.CPU]
    gpus = [d for d in devices if d.type & cl.device_type.GPU]
    return (pocl_cpu or gpus or devices)[0]


def select_device(selector: str | None = None) -> "cl.Device":
    """The device a selector names (pyopencl's PYOPENCL_CTX syntax), or the default."""
    selector = selector if selector is not None else os.environ.get("PYOPENCL_CTX")
    if not selector:
        return default_device()
    plats = platforms()
    if not plats:
        raise DeviceError("no OpenCL platform found: " + POCL_HINT + "." + _nvidia_icd_hint())
    parts = selector.split(":")
    plat_sel, dev_sel = parts[0], (parts[1] if len(parts) > 1 else "0")
    if plat_sel.isdigit():
        if int(plat_sel) >= len(plats):
            raise SelectorError(f"device selector {selector!r}: no platform {plat_sel}; have " + _listing())
        plat = plats[int(plat_sel)]
    else:
        # the platform's name or its vendor ("pocl" names PoCL, whose platform is "Portable Computing Language")
        found = [p for p in plats if plat_sel.lower() in f"{p.name} {p.vendor}".lower()]
        if not found:
            raise SelectorError(f"device selector {selector!r}: no platform matches {plat_sel!r}; have " + _listing())
        plat = found[0]
    devs = plat.get_devices()
    if dev_sel.isdigit():
        if int(dev_sel) >= len(devs):
            raise SelectorError(f"device selector {selector!r}: platform {plat.name!r} has {len(devs)} device(s)")
        return devs[int(dev_sel)]
    found = [d for d in devs if dev_sel.lower() in d.name.lower()]
    if not found:
        raise SelectorError(f"device selector {selector!r}: no device matches {dev_sel!r}; have " + _listing())
    return found[0]


def _listing() -> str:
    return "; ".join(f"{i}:{j} {p.name} / {d.name}" for i, p in enumerate(platforms())
                     for j, d in enumerate(p.get_devices()))


def device_info(device: "cl.Device") -> dict:
    """The capabilities that matter for SD kernels."""
    ext = device.extensions.split()
    return {
        "platform": device.platform.name.strip(),
        "device": device.name.strip(),
        "type": next((n for n, t in (("GPU", cl.device_type.GPU), ("CPU", cl.device_type.CPU),
                                     ("ACCELERATOR", cl.device_type.ACCELERATOR)) if device.type & t), "OTHER"),
        "version": device.version.strip(),
        "compute_units": device.max_compute_units,
        "max_work_group_size": device.max_work_group_size,
        "local_mem_kib": device.local_mem_size // 1024,
        "global_mem_mib": device.global_mem_size // 2**20,
        "max_alloc_mib": device.max_mem_alloc_size // 2**20,
        "fp64": "cl_khr_fp64" in ext or device.double_fp_config != 0,
        "fp16": "cl_khr_fp16" in ext,
        "nvidia_ptx": "nvidia" in device.platform.name.lower() and bool(device.type & cl.device_type.GPU),  # asm()
        # Mesa's llvmpipe (rusticl, Clover) ends every loop of a work-item once its loops have taken 65535 back
        # edges in all (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS, one counter per invocation): a kernel that loops
        # longer returns silently wrong results there (tiled_reg at K >= 800, measured). Kernels that need more
        # declare needs=("long_loops",).
        "long_loops": "llvmpipe" not in device.name.lower(),
    }


def device_key(device: "cl.Device") -> str:
    """A short stable name for tuning databases and reports: platform / device / driver version."""
    return f"{device.platform.name.strip()} / {device.name.strip()} / {device.driver_version.strip()}"
