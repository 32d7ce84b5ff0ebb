"""OpenCL runtime: device choice, the one kernel build function with its caches, and a profiled queue.

Device choice follows pyopencl's conventions: a selector string as `PYOPENCL_CTX` takes it ("0", "0:1",
"portable:0", a platform-name substring then a device index); with no selector, `PYOPENCL_CTX` from the
environment; with neither, PoCL's CPU device (what the README's set-up installs), else the first GPU, else the
first device.
"""

from __future__ import annotations

import ctypes.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import pyopencl as cl
    import pyopencl.array as cla
    import pyopencl.tools as cltools
except ImportError as e:  # pragma: no cover - the error is the message
    raise ImportError("sdcl's OpenCL backend needs pyopencl: pip install 'sdcl[opencl]'") from e

from kernels import KERNEL_DIR

POCL_HINT = ("install PoCL, the portable CPU OpenCL driver: `apt-get install pocl-opencl-icd` on Debian/Ubuntu "
             "(pip's pocl-binary-distribution builds no kernels on these CPUs; see README)")


# A NaN bit pattern no arithmetic produces: an output word still holding it was never written.
POISON = 0x7FBADBAD


class DeviceError(RuntimeError):
    """No usable OpenCL device, or a device without a feature an op needs."""


class KernelBuildError(RuntimeError):
    """A kernel failed to compile; the message carries the device, the options and the compiler log."""


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
            raise DeviceError(f"device selector {selector!r}: no platform {plat_sel}; have " + _listing())
        plat = plats[int(plat_sel)]
    else:
        found = [p for p in plats if plat_sel.lower() in p.name.lower()]
        if not found:
            raise DeviceError(f"device selector {selector!r}: no platform matches {plat_sel!r}; have " + _listing())
        plat = found[0]
    devs = plat.get_devices()
    if dev_sel.isdigit():
        if int(dev_sel) >= len(devs):
            raise DeviceError(f"device selector {selector!r}: platform {plat.name!r} has {len(devs)} device(s)")
        return devs[int(dev_sel)]
    found = [d for d in devs if dev_sel.lower() in d.name.lower()]
    if not found:
        raise DeviceError(f"device selector {selector!r}: no device matches {dev_sel!r}; have " + _listing())
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
    }


def device_key(device: "cl.Device") -> str:
    """A short stable name for tuning databases and reports: platform / device / driver version."""
    return f"{device.platform.name.strip()} / {device.name.strip()} / {device.driver_version.strip()}"


def cache_dir() -> Path:
    base = os.environ.get("SDCL_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "sdcl")
    path = Path(base).expanduser() / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_options(defines: dict | None = None, dtype=np.float32) -> list:
    """-D macros from a dict (True -> a bare define), plus the precision define every kernel reads (REAL)."""
    opts = [f"-DREAL={'double' if np.dtype(dtype) == np.float64 else 'float'}"]
    if np.dtype(dtype) == np.float64:
        opts.append("-DREAL_IS_DOUBLE")
    for name, value in sorted((defines or {}).items()):
        opts.append(f"-D{name}" if value is True else f"-D{name}={value}")
    return opts


@dataclass
class Runtime:
    """One device: its context, a profiling queue, a memory pool and the program cache."""

    device: "cl.Device"
    context: "cl.Context" = None
    queue: "cl.CommandQueue" = None
    allocator: object = None
    programs: dict = field(default_factory=dict)
    events: list = field(default_factory=list)   # (op name, event) when profiling is on
    profile: bool = False
    policy: object = None                         # (op, args, kwargs) -> (variant, knobs); None: naive everywhere
    guard_bytes: int = 0                          # conformance: outputs sit between poisoned guard regions
    guarded: list = field(default_factory=list)   # (parent buffer, guard bytes, payload bytes) since last check

    def __post_init__(self):
        self.context = self.context or cl.Context([self.device])
        self.queue = self.queue or cl.CommandQueue(
            self.context, properties=cl.command_queue_properties.PROFILING_ENABLE)
        # Buffers are reused across steps: freed arrays go back to the pool, not to the driver.
        self.allocator = self.allocator or cltools.MemoryPool(cltools.ImmediateAllocator(self.queue))
        self.info = device_info(self.device)
        _RUNTIMES[self.context.int_ptr] = self

    # --- kernels -------------------------------------------------------------------------------------------------
    def program(self, file: str, defines: dict | None = None, dtype=np.float32) -> "cl.Program":
        """Build kernels/<file> with -D options; cached per (device, file, options) in memory and on disk."""
        if np.dtype(dtype) == np.float64 and not self.info["fp64"]:
            raise DeviceError(f"{self.info['device']}: float64 needs cl_khr_fp64, which this device lacks")
        options = build_options(defines, dtype)
        key = (file, tuple(options))
        prg = self.programs.get(key)
        if prg is None:
            source = kernel_source(file)
            try:
                # pyopencl's binary cache keys on the source, the options and the device.
                prg = cl.Program(self.context, source).build(options=options, cache_dir=str(cache_dir()))
            except (cl.RuntimeError, cl.LogicError) as e:
                raise KernelBuildError(
                    f"kernel {file} failed to build on {self.info['device']} ({self.info['platform']}) "
                    f"with options {' '.join(options)}:\n{e}") from None
            self.programs[key] = prg
        return prg

    def kernel(self, file: str, name: str, defines: dict | None = None, dtype=np.float32) -> "cl.Kernel":
        """The kernel object `name` of kernels/<file> built with these defines (kept, not re-created per call)."""
        # keyed by the defines themselves: no option strings built per call (host time matters on a fast GPU);
        # program() shares the build between keys that give the same options
        key = ("kernel", file, name, tuple(sorted(defines.items())) if defines else (), np.dtype(dtype).char)
        knl = self.programs.get(key)
        if knl is None:
            knl = self.programs[key] = getattr(self.program(file, defines, dtype), name)
        return knl

    def launch(self, op: str, knl: "cl.Kernel", global_size: tuple, local_size: tuple | None, *args) -> "cl.Event":
        """Enqueue a kernel; keep its event for per-op timing when profiling is on."""
        ev = knl(self.queue, global_size, local_size, *args)
        if self.profile:
            self.events.append((op, ev))
        return ev

    # --- arrays --------------------------------------------------------------------------------------------------
    def to_device(self, a: np.ndarray) -> "cla.Array":
        return cla.to_device(self.queue, np.ascontiguousarray(a), allocator=self.allocator)

    def empty(self, shape: tuple, dtype=np.float32) -> "cla.Array":
        """Every launcher allocates its outputs (and scratch) here. With guard_bytes set, the array is a
        sub-buffer of a larger allocation filled with the POISON pattern, so that an element the kernel never
        writes, or a write outside the array, is seen by `check_guards` on any device."""
        shape = tuple(int(s) for s in shape)
        if not self.guard_bytes:
            return cla.empty(self.queue, shape, dtype, allocator=self.allocator)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        g = self.guard_bytes
        total = 2 * g + -(-nbytes // 4) * 4          # the fill pattern is 4 bytes (half arrays may be odd-sized)
        parent = cl.Buffer(self.context, cl.mem_flags.READ_WRITE, total)
        cl.enqueue_fill_buffer(self.queue, parent, np.uint32(POISON), 0, total)
        self.guarded.append((parent, g, nbytes))
        return cla.Array(self.queue, shape, dtype, data=parent.get_sub_region(g, max(nbytes, 4)))

    def check_guards(self) -> list:
        """Problems found in the guard regions of arrays allocated since the last call (and forget them)."""
        problems = []
        for parent, g, nbytes in self.guarded:
            host = np.empty(parent.size, dtype=np.uint8)
            cl.enqueue_copy(self.queue, host, parent)
            poison = np.full(parent.size // 4, POISON, dtype=np.uint32).view(np.uint8)
            for where, lo, hi in (("before", 0, g), ("after", g + nbytes, parent.size)):
                bad = np.flatnonzero(host[lo:hi] != poison[lo:hi])
                if bad.size:
                    problems.append(f"out-of-bounds write {where} an array of {nbytes} bytes: "
                                    f"{bad.size} byte(s) changed, first at byte {lo + bad[0] - g} "
                                    f"relative to the array start")
        self.guarded.clear()
        return problems

    def kernel_times(self) -> dict:
        """Seconds per op from the profiling events recorded since the last call; clears them."""
        self.queue.finish()
        out: dict = {}
        for op, ev in self.events:
            out[op] = out.get(op, 0.0) + (ev.profile.end - ev.profile.start) * 1e-9
        self.events.clear()
        return out


_RUNTIMES: dict = {}


def runtime_of(a: "cla.Array") -> Runtime:
    """The runtime that owns an array (by its context)."""
    try:
        return _RUNTIMES[a.context.int_ptr]
    except (KeyError, AttributeError):
        raise DeviceError("array does not belong to an sdcl Runtime; create arrays with Runtime.to_device") from None


_INCLUDE = re.compile(r'^#include "([\w.]+)"[ \t]*$', re.M)


def kernel_source(file: str) -> str:
    """kernels/<file> with each `#include "x.h"` line replaced by kernels/x.h (headers include nothing further): the
    text that is built, so pyopencl's binary cache, keyed on it, sees a header's changes too."""
    return _INCLUDE.sub(lambda m: (KERNEL_DIR / m.group(1)).read_text(), (KERNEL_DIR / file).read_text())
