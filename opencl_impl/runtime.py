"""The OpenCL runtime of one device: context, profiling queue, memory pool, and the one kernel build function with
its caches. Where kernels are found, where tuning tables are read and written and where built binaries are cached
are parameters of the Runtime, not module globals.
"""

from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pyopencl.tools as cltools

from sdcl.opencl_impl.devices import DeviceError, device_info
from sdcl.registry import plugins
from sdcl.resources import kernel_cache_dir, kernel_dir, shipped_tuning_dir, user_tuning_dir

# A NaN bit pattern no arithmetic produces: an output word still holding it was never written.
POISON = 0x7FBADBAD
# Another NaN pattern around inputs (conformance): a kernel that reads past an input reads it; told apart from POISON
# so that a copied or propagated input poison is not taken for an unwritten output. It is a NaN read as float32
# (exponent 0xFF), as float64 (the high word 0x7FF8FFEE: exponent 0x7FF) and as both halves (0xFFEE, 0x7FF8),
# so an out-of-bounds read of any precision brings a NaN into the output.
INPUT_POISON = 0x7FF8FFEE


class KernelBuildError(RuntimeError):
    """A kernel failed to compile; the message carries the device, the options and the compiler log."""


class LaunchLimitError(DeviceError):
    """A built kernel cannot be launched at this work-group size on this device (its CL_KERNEL_WORK_GROUP_SIZE), or
    the device refused the launch for its resources (OUT_OF_RESOURCES): a knob setting this device does not fit."""


class LoopCapError(DeviceError):
    """A launch whose work-items would loop past the device's cap (Mesa llvmpipe ends a work-item's loops after
    LOOP_CAP back edges in all, without a word): refused, since its answer would be silently wrong."""


LOOP_CAP = 65535    # gallivm's LP_MAX_TGSI_LOOP_ITERATIONS: one counter per work-item, over all of its loops

_REFUSED = (cl.status_code.OUT_OF_RESOURCES, cl.status_code.INVALID_WORK_GROUP_SIZE)   # what LaunchLimitError names


def build_options(defines: dict | None = None, dtype=np.float32) -> list:
    """-D macros from a dict (True -> a bare define), plus the precision defines every kernel reads (common.h):
    REAL, the arithmetic (double for float64, else float), and DATA_HALF for float16 (arrays stored in half); then
    the options in $SDCL_BUILD_OPTIONS, if set (e.g. "-cl-opt-disable"), for a whole process. (NVIDIA's driver 580
    refuses "-cl-nv-maxrregcount 128" and ignores "-cl-nv-maxrregcount=128": docs/results/ab-knobs-regcap-*.)"""
    opts = [f"-DREAL={'double' if np.dtype(dtype) == np.float64 else 'float'}"]
    if np.dtype(dtype) == np.float64:
        opts.append("-DREAL_IS_DOUBLE")
    elif np.dtype(dtype) == np.float16:
        opts.append("-DDATA_HALF")
    for name, value in sorted((defines or {}).items()):
        opts.append(f"-D{name}" if value is True else f"-D{name}={value}")
    return opts + os.environ.get("SDCL_BUILD_OPTIONS", "").split()


_INCLUDE = re.compile(r'^#include "([\w./]+)"[ \t]*$', re.M)


def find_kernel(file: str, path) -> Path:
    """The file `file` (relative to a kernel folder, e.g. "gemm/tiled_reg.cl") in the first folder of `path` that
    holds it."""
    for folder in path:
        p = Path(folder) / file
        if p.is_file():
            return p
    raise FileNotFoundError(f"kernel file {file!r} is in none of the kernel folders: "
                            + ", ".join(str(f) for f in path))


def kernel_source(file: str, path=None) -> str:
    """The text that is built: `file` found on the kernel path, each `#include "x.h"` line replaced by that header
    (x.h beside the including file, then at a folder's top; each header once; every folder of the path is searched,
    so an overlay folder first on the path replaces a header too), so pyopencl's binary cache, keyed on the text,
    sees a header's changes."""
    path = tuple(path) if path else (kernel_dir(),)
    seen: set = set()

    def expand(rel: str) -> str:
        def include(m):
            name = m.group(1)
            beside = str(Path(rel).parent / name)
            try:
                found = find_kernel(beside, path)
                target = beside
            except FileNotFoundError:
                found, target = find_kernel(name, path), name
            if target in seen:
                return f"// {name}: included above"
            seen.add(target)
            return expand(target) if found else ""
        return _INCLUDE.sub(include, find_kernel(rel, path).read_text())

    return expand(file)


class PendingKernel(NamedTuple):
    """What Runtime.kernel returns during prebuild's pass for a program not built yet (sdcl.opencl_impl.prebuild)."""

    file: str
    name: str
    defines: dict | None
    dtype: object

    @property
    def function_name(self) -> str:
        return self.name


class _KeepAllocated:
    """An allocator that never gives a buffer back (Oclgrind only, at its tiny shapes). Oclgrind 19.10's
    uninitialized-value tracking goes wrong where a new buffer takes the address of a released one: values written
    there by the host or by a kernel read back as uninitialized (docs/CONFORMANCE.md: two rounds of an im2col and a
    matmul_naive launch, pyopencl alone, report every output of the second round; with the first round's buffers
    kept, none). Neither the driver's nor a pool's reuse of an address then happens."""

    def __init__(self, queue):
        self.allocate = cltools.ImmediateAllocator(queue)
        self.kept = []

    def __call__(self, nbytes: int):
        buf = self.allocate(nbytes)
        self.kept.append(buf)
        return buf


@dataclass
class Runtime:
    """One device: its context, a profiling queue, a memory pool and the program cache.

    kernel_path: folders searched for kernel files, first hit wins (default: sdcl's kernels/; an A/B overlay's folder
    goes first); the kernel folders of the plugins loaded so far (sdcl.registry.plugins) are searched after them. tuning_dir: where the policy looks first for this device's tuning table and where
    `sdcl tune` writes it (default: sdcl.resources.user_tuning_dir()); the tables shipped with sdcl come after.
    cache_dir: pyopencl's binary cache of built programs (default: sdcl.resources.kernel_cache_dir())."""

    device: "cl.Device"
    kernel_path: tuple = ()
    tuning_dir: Path | None = None
    cache_dir: Path | None = None
    context: "cl.Context" = None
    queue: "cl.CommandQueue" = None
    allocator: object = None
    programs: dict = field(default_factory=dict)
    failed_builds: dict = field(default_factory=dict)   # (file, options) -> the KernelBuildError: built once
    events: list = field(default_factory=list)   # (op name, event) when profiling is on
    profile: bool = False
    policy: object = None                         # (op, args, kwargs) -> (variant, knobs); None: naive everywhere
    guard_bytes: int = 0                          # conformance: outputs sit between poisoned guard regions
    guarded: list = field(default_factory=list)   # (parent, guard bytes, payload bytes, poison) since last check
    recording: object = None                      # the replay.Recording being recorded, if any
    collecting: dict | None = None                # prebuild: (file, options) -> (file, defines, dtype); launches off
    build_flags: tuple = ()                       # more options for every program built while set (built_with:
    # the gate's source-level check of another device's settings on a CPU device: conformance.runner.SOURCE_CHECK_FLAGS)

    def __post_init__(self):
        self.kernel_path = tuple(Path(p) for p in self.kernel_path) or (kernel_dir(),)
        self.tuning_dir = Path(self.tuning_dir) if self.tuning_dir else user_tuning_dir()
        self.cache_dir = Path(self.cache_dir) if self.cache_dir else kernel_cache_dir()
        self.context = self.context or cl.Context([self.device])
        self.queue = self.queue or cl.CommandQueue(
            self.context, properties=cl.command_queue_properties.PROFILING_ENABLE)
        self.info = device_info(self.device)
        if self.allocator is None and self.info["platform"] == "Oclgrind":
            self.allocator = _KeepAllocated(self.queue)
        # Buffers are reused across steps: freed arrays go back to the pool, not to the driver.
        self.allocator = self.allocator or cltools.MemoryPool(cltools.ImmediateAllocator(self.queue))

    @property
    def tuning_dirs(self) -> tuple:
        """Where tuning tables are read, first hit wins: the runtime's tuning_dir, then the shipped tables."""
        return (self.tuning_dir, shipped_tuning_dir())

    # --- kernels -------------------------------------------------------------------------------------------------
    def program(self, file: str, defines: dict | None = None, dtype=np.float32) -> "cl.Program":
        """Build <file> from the kernel path with -D options; cached per (device, file, options) in memory and on
        disk."""
        if np.dtype(dtype) == np.float64 and not self.info["fp64"]:
            raise DeviceError(f"{self.info['device']}: float64 needs cl_khr_fp64, which this device lacks")
        options = build_options(defines, dtype) + list(self.build_flags)
        key = (file, tuple(options))
        prg = self.programs.get(key)
        if prg is None:
            if key in self.failed_builds:
                raise self.failed_builds[key]
            source = kernel_source(file, self.kernel_path + tuple(plugins.KERNEL_DIRS))
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            try:
                # pyopencl's binary cache keys on the source, the options and the device.
                prg = cl.Program(self.context, source).build(options=options, cache_dir=str(self.cache_dir))
            except (cl.RuntimeError, cl.LogicError) as e:
                error = self.failed_builds[key] = KernelBuildError(
                    f"kernel {file} failed to build on {self.info['device']} ({self.info['platform']}) "
                    f"with options {' '.join(options)}:\n{e}")
                raise error from None
            self.programs[key] = prg
        return prg

    def kernel(self, file: str, name: str, defines: dict | None = None, dtype=np.float32) -> "cl.Kernel":
        """The kernel object `name` of <file> built with these defines (kept, not re-created per call)."""
        # keyed by the defines themselves: no option strings built per call (host time matters on a fast GPU);
        # program() shares the build between keys that give the same options
        key = ("kernel", file, name, tuple(sorted(defines.items())) if defines else (), np.dtype(dtype).char,
               self.build_flags)
        knl = self.programs.get(key)
        if knl is None:
            if self.collecting is not None:      # prebuild's pass: note the program, build nothing yet
                options = tuple(build_options(defines, dtype)) + self.build_flags
                if (file, options) not in self.programs and (file, options) not in self.failed_builds:
                    self.collecting[(file, options)] = (file, defines, dtype)
                    return PendingKernel(file, name, defines, dtype)
            knl = self.programs[key] = getattr(self.program(file, defines, dtype), name)
        return knl

    @contextmanager
    def built_with(self, flags: tuple):
        """Within the block, every program is built with these options too (build_flags); restored after."""
        before = self.build_flags
        self.build_flags = before + tuple(flags)
        try:
            yield
        finally:
            self.build_flags = before

    def kernel_limits(self, knl: "cl.Kernel") -> tuple:
        """(largest work-group, local bytes it uses itself, whether its work-group size is fixed at build time) of a
        built kernel on this device. The work-group limit falls below the device's where the kernel needs many
        registers; a kernel built with reqd_work_group_size was compiled for that size (NVIDIA reports 256 for
        gemm_tiled at 32 x 32 and launches it), so only the others are held to it."""
        if isinstance(knl, PendingKernel):      # asked for during prebuild's pass: this one is built now
            collecting, self.collecting = self.collecting, None
            try:
                knl = self.kernel(knl.file, knl.name, knl.defines, knl.dtype)
            finally:
                self.collecting = collecting
        key = ("limits", knl.int_ptr)
        hit = self.programs.get(key)
        if hit is None:
            info = cl.kernel_work_group_info
            hit = self.programs[key] = (knl.get_work_group_info(info.WORK_GROUP_SIZE, self.device),
                                        knl.get_work_group_info(info.LOCAL_MEM_SIZE, self.device),
                                        any(knl.get_work_group_info(info.COMPILE_WORK_GROUP_SIZE, self.device)))
        return hit

    def local_bytes_left(self, knl: "cl.Kernel") -> int:
        """The local memory a launch of this kernel may pass (cl.LocalMemory): the device's, less the kernel's own."""
        return self.device.local_mem_size - self.kernel_limits(knl)[1]

    def launch(self, op: str, knl: "cl.Kernel", global_size: tuple, local_size: tuple | None, *args) -> "cl.Event":
        """Enqueue a kernel; keep its event for per-op timing when profiling is on. A work-group larger than the
        kernel allows on this device, or a launch the device refuses for its resources, raises LaunchLimitError
        naming the kernel, its sizes and the limits. Nothing is enqueued during prebuild's pass."""
        if self.collecting is not None:
            return None
        if local_size is not None:
            wg, _, fixed = self.kernel_limits(knl)
            if math.prod(local_size) > wg and not fixed:
                raise LaunchLimitError(self._launch_text(knl, global_size, local_size, args, "does not fit"))
        try:
            ev = knl(self.queue, global_size, local_size, *args)
        except cl.Error as e:
            if getattr(e, "code", None) not in _REFUSED:
                raise
            raise LaunchLimitError(self._launch_text(knl, global_size, local_size, args, f"was refused ({e})")) \
                from None
        if self.profile:
            self.events.append((op, ev))
        if self.recording is not None:
            self.recording.launch(op, knl, global_size, local_size, args)
        return ev

    def _launch_text(self, knl, global_size, local_size, args, what: str) -> str:
        wg, own_local, _ = self.kernel_limits(knl)
        dyn = sum(a.size for a in args if isinstance(a, cl.LocalMemory))
        return (f"{knl.function_name} {what} on {self.info['device']}: global {tuple(global_size)}, work-group "
                f"{tuple(local_size) if local_size else 'any'}, {dyn} B of local memory passed; the kernel allows "
                f"work-groups of {wg} and uses {own_local} B of local memory itself, of the device's "
                f"{self.device.local_mem_size} B")

    def check_loops(self, what: str, trips: int) -> None:
        """Refuse a launch whose work-items take `trips` loop iterations (an upper bound: every loop counted, none
        assumed unrolled) on a device whose loops end early (device_info's long_loops: Mesa llvmpipe)."""
        if not self.info.get("long_loops", True) and trips > LOOP_CAP:
            raise LoopCapError(f"{what}: up to {trips} loop iterations per work-item at this shape, and "
                               f"{self.info['device']} ends a work-item's loops after {LOOP_CAP} (Mesa llvmpipe, "
                               "gallivm's LP_MAX_TGSI_LOOP_ITERATIONS): the result would be silently wrong")

    # --- arrays --------------------------------------------------------------------------------------------------
    def derived(self, a: "cla.Array", tag: tuple, make) -> "cla.Array":
        """make(): an array computed from the weight `a` alone, of no more bytes than `a` (conv2d implicit_mma_f16's
        channels-last half copy, a float32 weight rounded to half). While a model whose weights include `a` is
        recorded with them as constants (replay.replayed's keep_derived: its weights keep their values), it is made
        once per (a, tag), its launches run then and are left out of the replayed commands, and the recording keeps
        it (at most a second copy of the weights a recording: SD 2.1's 3x3 convolutions in half, 1.19 GB);
        elsewhere make() runs at every call (a buffer's address says nothing about whether its contents changed)."""
        rec = self.recording
        return make() if rec is None else rec.derived(a, tag, make)

    def to_device(self, a: np.ndarray) -> "cla.Array":
        out = cla.to_device(self.queue, np.ascontiguousarray(a), allocator=self.allocator)
        if self.recording is not None:      # host data of a recorded call: uploaded once, kept for its replays
            self.recording.keep(out)
        return out

    def copy(self, dst: "cl.Buffer", src: "cl.Buffer", src_offset: int, nbytes: int) -> None:
        """Copy nbytes of src from src_offset to the start of dst, on the queue (recorded like a launch)."""
        if self.collecting is not None:
            return
        cl.enqueue_copy(self.queue, dst, src, src_offset=src_offset, byte_count=nbytes)
        if self.recording is not None:
            self.recording.copy(dst, src, src_offset, nbytes)

    def empty(self, shape: tuple, dtype=np.float32, poison: int = POISON) -> "cla.Array":
        """Every launcher allocates its outputs (and scratch) here. With guard_bytes set, the array is a
        sub-buffer of a larger allocation filled with the `poison` pattern, so that an element the kernel never
        writes, or a write outside the array, is seen by `check_guards` on any device."""
        shape = tuple(int(s) for s in shape)
        if not self.guard_bytes:
            return cla.empty(self.queue, shape, dtype, allocator=self.allocator)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        g = self.guard_bytes
        total = 2 * g + -(-nbytes // 4) * 4          # the fill pattern is 4 bytes (half arrays may be odd-sized)
        parent = cl.Buffer(self.context, cl.mem_flags.READ_WRITE, total)
        cl.enqueue_fill_buffer(self.queue, parent, np.uint32(poison), 0, total)
        self.guarded.append((parent, g, nbytes, poison))
        return cla.Array(self.queue, shape, dtype, data=parent.get_sub_region(g, max(nbytes, 4)))

    def check_guards(self) -> list:
        """Problems found in the guard regions of arrays allocated since the last call (and forget them)."""
        problems = []
        for parent, g, nbytes, pattern in self.guarded:
            for where, lo, hi in (("before", 0, g), ("after", g + nbytes, parent.size)):
                host = np.empty(hi - lo, dtype=np.uint8)       # only the guard region comes back
                if host.size:
                    cl.enqueue_copy(self.queue, host, parent, src_offset=lo)
                # the pattern repeats every 4 bytes from the start of the parent buffer
                poison = np.roll(np.frombuffer(np.uint32(pattern).tobytes(), np.uint8), -(lo % 4))
                bad = np.flatnonzero(host != np.resize(poison, host.size))
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
