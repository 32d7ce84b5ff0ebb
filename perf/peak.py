"""The device's measured peak: arithmetic throughput (an FMA-chain kernel) and memory bandwidth (a copy kernel).

These are the ceilings of the roofline chart and the denominators of "% of peak" in the benchmark results. They
are measured, not taken from a datasheet: the best over a few vector widths of `perf/peak.cl`, each timed by
its OpenCL profiling events after a warm-up, best of several launches. A datasheet peak is usually higher; a
measured one says what an OpenCL kernel can reach on this driver.

Results are cached per device key (platform / device / driver version) in `<sdcl cache>/peak.json`, so a
benchmark session measures once per machine; `measure_peak(rt)` always measures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyopencl as cl

from sdcl.opencl_impl.devices import device_key
from sdcl.opencl_impl.runtime import Runtime, build_options
from sdcl.resources import kernel_cache_dir

PEAK_CL = Path(__file__).with_name("peak.cl")

# (VEC, CHAINS) settings tried for the FMA chain; the best counts. Wide vectors suit CPU drivers (PoCL maps
# them onto AVX-512), scalar chains suit GPUs (the SIMT hardware vectorises across work-items).
FMA_CONFIGS = ((1, 8), (4, 8), (8, 8), (16, 4))
COPY_VECS = (4, 16)
FMA_ITERS = 512
TARGET_SECONDS = 0.05     # one timed launch lasts about this long
REPEATS = 5               # timed launches per setting; the fastest counts (peak, not typical)


def _program(rt: Runtime, defines: dict) -> "cl.Program":
    """peak.cl with these -D knobs, through the runtime's option builder and its on-disk binary cache."""
    key = ("perf/peak.cl", tuple(build_options(defines)))
    prg = rt.programs.get(key)
    if prg is None:
        prg = rt.programs[key] = cl.Program(rt.context, PEAK_CL.read_text()).build(
            options=build_options(defines), cache_dir=str(rt.cache_dir))
    return prg


def _event_seconds(ev: "cl.Event") -> float:
    ev.wait()
    return (ev.profile.end - ev.profile.start) * 1e-9


def _best_time(launch, repeats: int = REPEATS) -> float:
    launch()  # warm-up (first launch pays for code generation on some drivers)
    return min(_event_seconds(launch()) for _ in range(repeats))


def measure_fma(rt: Runtime) -> dict:
    """Best FLOP/s of the FMA chain over FMA_CONFIGS: {"gflops", "vec", "chains", "work_items"}."""
    best = {"gflops": 0.0}
    a, b = np.float32(0.999), np.float32(1e-3)
    for vec, chains in FMA_CONFIGS:
        knl = _program(rt, {"VEC": vec, "CHAINS": chains, "ITERS": FMA_ITERS}).peak_fma
        items = rt.device.max_compute_units * 1024
        out = cl.Buffer(rt.context, cl.mem_flags.WRITE_ONLY, 4 * items * 64)
        for _ in range(8):  # grow the launch until it lasts long enough to time
            t = _best_time(lambda: knl(rt.queue, (items,), None, out, a, b), repeats=1)
            if t >= TARGET_SECONDS / 4 or items * 2 > 64 * rt.device.max_compute_units * 1024:
                break
            items *= 2
        items = int(min(64 * rt.device.max_compute_units * 1024,
                        max(items, items * TARGET_SECONDS / max(t, 1e-6))) // 64 * 64) or 64
        t = _best_time(lambda: knl(rt.queue, (items,), None, out, a, b))
        gflops = 2.0 * vec * chains * FMA_ITERS * items / t * 1e-9
        if gflops > best["gflops"]:
            best = {"gflops": gflops, "vec": vec, "chains": chains, "work_items": items}
    return best


def measure_copy(rt: Runtime) -> dict:
    """Best copy bandwidth (bytes read + bytes written per second): {"gbps", "vec", "bytes"}."""
    dev = rt.device
    nbytes = int(min(256 * 2**20, dev.max_mem_alloc_size // 2, dev.global_mem_size // 8)) // 64 * 64
    x = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, nbytes)
    y = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, nbytes)
    cl.enqueue_fill_buffer(rt.queue, x, np.float32(1.0), 0, nbytes)
    best = {"gbps": 0.0}
    for vec in COPY_VECS:
        knl = _program(rt, {"VEC": vec}).peak_copy
        n = nbytes // (4 * vec)
        t = _best_time(lambda: knl(rt.queue, (n,), None, x, y, np.int64(n)))
        gbps = 2.0 * nbytes / t * 1e-9
        if gbps > best["gbps"]:
            best = {"gbps": gbps, "vec": vec, "bytes": nbytes}
    return best


def measure_peak(rt: Runtime) -> dict:
    """Measure now: {"device", "gflops", "gbps", "fma": {...}, "copy": {...}, "date"}."""
    fma, copy = measure_fma(rt), measure_copy(rt)
    return {"device": device_key(rt.device), "gflops": fma["gflops"], "gbps": copy["gbps"], "fma": fma,
            "copy": copy, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def peak_cache_path() -> Path:
    return kernel_cache_dir().parent / "peak.json"


def get_peak(rt: Runtime, refresh: bool = False) -> dict:
    """The cached peak of this device (measured and cached on first use, or when refresh is set)."""
    path = peak_cache_path()
    key = device_key(rt.device)
    try:
        cache = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        cache = {}
    if refresh or key not in cache:
        cache[key] = measure_peak(rt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=2))
        tmp.replace(path)
    return cache[key]
