"""How a benchmark measures: wall time through pytest-benchmark, kernel time from profiling events, the torch
baseline interleaved round by round, peak device memory through the runtime's allocator, roofline numbers.

What is timed, per round:
- wall: pytest-benchmark times the callable, which launches the op and waits for the queue (`queue.finish()`):
  host overhead (argument checks, kernel launches) plus device time, as a caller sees it;
- kernel: the sum of the OpenCL profiling events (end - start) of every kernel the op launched in that round,
  read after the round outside the timed region (Runtime.profile / kernel_times());
- torch: right after each of our rounds (in pytest-benchmark's teardown, outside our timed region), one call of
  the same op at the same shapes in torch, timed the same way as our wall time (call, then synchronize). So our
  rounds and torch's alternate, and a change of machine load during the benchmark slows both alike. On the CPU
  (baseline_on_cpu) each round times torch at its thread count and at one thread and keeps the faster: when
  another process holds a core, torch's threads wait at every parallel region for the one it descheduled (silu at
  sd21_unet_l3 on the 2 loaded cores: 12 ms a call with 2 threads, 0.27 ms with 1), which measures the machine's
  load, not torch; an idle machine's rounds keep torch's threads (`torch_one_thread_share` says how often 1 won).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

import numpy as np

from sdcl.opencl_impl.runtime import Runtime

WARMUP_ROUNDS = 2


class TrackingPool:
    """An allocator for pyopencl arrays that forwards to a MemoryPool and records the peak of the pool's live
    bytes. Every sdcl array (rt.to_device, rt.empty) is allocated through the runtime's allocator, so the peak
    counts inputs, weights, outputs and scratch; it does not count the driver's own memory (kernel binaries,
    queues) nor buffers made directly with cl.Buffer (guard regions in conformance runs, the peak benchmark)."""

    def __init__(self, pool):
        self.pool = pool
        self.base = 0
        self.peak = 0

    def __call__(self, nbytes: int):
        buf = self.pool(nbytes)
        self.peak = max(self.peak, self.pool.active_bytes)
        return buf

    allocate = __call__

    def __getattr__(self, name):  # active_bytes, held_blocks, free_held, ... of the pool
        return getattr(self.pool, name)

    def reset(self) -> None:
        """Start a new measurement: forget earlier peaks (after collecting arrays nobody holds any more)."""
        gc.collect()
        self.base = self.peak = self.pool.active_bytes

    @property
    def peak_bytes(self) -> int:
        """Peak live bytes allocated since reset(), beyond what was live at reset()."""
        return self.peak - self.base


def tracking(rt: Runtime) -> TrackingPool:
    """The runtime's allocator, wrapped in a TrackingPool once (idempotent)."""
    if not isinstance(rt.allocator, TrackingPool):
        rt.allocator = TrackingPool(rt.allocator)
    return rt.allocator


@dataclass
class Timing:
    """The rounds of one benchmark after warm-up (seconds)."""

    kernel: list = field(default_factory=list)      # device time per round (profiling events)
    torch: list = field(default_factory=list)       # torch baseline per round, interleaved with ours
    torch_one_thread: list = field(default_factory=list)  # per round: whether one torch thread was the faster
    launches: int = 0                               # kernels launched per round
    first_call_s: float = 0.0                       # first call: kernel builds, first-touch allocations


def rounds_for(seconds_per_round: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    return int(min(max_rounds, max(min_rounds, budget_s / max(seconds_per_round, 1e-6))))


def _time_baseline(baseline, single_too: bool) -> tuple:
    """(seconds, whether one thread was faster) of one baseline call; with single_too, the faster of a call at
    torch's thread count and one at a single thread."""
    t = time.perf_counter()
    baseline()
    full = time.perf_counter() - t
    if not single_too:
        return full, False
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = time.perf_counter()
        baseline()
        one = time.perf_counter() - t
    finally:
        torch.set_num_threads(n)
    return min(full, one), one < full


def run(benchmark, rt: Runtime, call, baseline=None, budget_s: float = 1.0, min_rounds: int = 5,
        max_rounds: int = 200, progress=None, baseline_on_cpu: bool = False) -> Timing:
    """Benchmark `call()` (launches device work, returns anything) with pytest-benchmark, recording kernel times
    and interleaving `baseline()` (a torch call that synchronizes before returning) after each round.

    The first call (kernel builds) is timed apart and not counted; then one warm round of both sides, timed and not
    counted, whose time sets the number of rounds: they fit budget_s (both sides together) within [min_rounds,
    max_rounds]; light calls (a warm round under half the budget) get WARMUP_ROUNDS more warm-up rounds inside the
    benchmark. The first call does not set the count: a full-size pipeline's first call on an H100 took 42 s, nearly
    all of it kernel builds, against 1.1 s for a warm round of both sides."""
    timing = Timing()

    t0 = time.perf_counter()
    call()
    rt.queue.finish()
    timing.first_call_s = time.perf_counter() - t0
    if baseline is not None:
        baseline()  # torch's own first call (lazy init, autotuning) is not counted either
    t0 = time.perf_counter()
    call()
    rt.queue.finish()
    if baseline is not None:
        baseline()
    per_round = time.perf_counter() - t0
    warmup = 0 if per_round * 2 > budget_s else WARMUP_ROUNDS  # heavy (a layer, a pipeline): warm already
    rounds = rounds_for(per_round, budget_s, min_rounds, max_rounds)

    kernel, torch_rounds, one_thread = [], [], []
    launches = []
    single_too = False                  # a CPU baseline with threads to spare: also timed at one thread
    if baseline is not None and baseline_on_cpu:
        import torch
        single_too = torch.get_num_threads() > 1

    def target():
        call()
        rt.queue.finish()

    def teardown(*_args, **_kwargs):
        events = list(rt.events)
        launches.append(len(events))
        kernel.append(sum(rt.kernel_times().values()))
        if baseline is not None:
            seconds, one = _time_baseline(baseline, single_too)
            torch_rounds.append(seconds)
            one_thread.append(one)
        if progress is not None:
            progress.update(1)

    if progress is not None:
        progress.total = rounds + warmup
        progress.refresh()
    rt.events.clear()
    rt.profile = True
    try:
        benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup, iterations=1, teardown=teardown)
    finally:
        rt.profile = False
        rt.events.clear()
    timing.kernel = kernel[warmup:]
    timing.torch = torch_rounds[warmup:]
    timing.torch_one_thread = one_thread[warmup:]
    timing.launches = launches[-1] if launches else 0
    return timing


def wall_rounds(benchmark) -> list:
    """Our wall-clock rounds as pytest-benchmark recorded them (empty when benchmarks are disabled)."""
    stats = getattr(benchmark, "stats", None)
    return list(stats.stats.data) if stats is not None else []


def summary(timing: Timing, wall: list, flops: int | None, nbytes: int | None, peak: dict | None) -> dict:
    """The numbers every benchmark reports in extra_info (see docs/PERF.md for their meaning)."""
    out: dict = {"kernel_rounds_s": timing.kernel, "launches_per_call": timing.launches,
                 "first_call_s": timing.first_call_s}
    if not timing.kernel:
        return out
    k = float(np.median(timing.kernel))
    out["kernel_median_s"] = k
    if wall:
        out["wall_median_s"] = float(np.median(wall))
    if flops is not None and nbytes is not None and k > 0:
        gflops, gbps = flops / k * 1e-9, nbytes / k * 1e-9
        out.update(flops=int(flops), bytes=int(nbytes), intensity=flops / nbytes if nbytes else None,
                   gflops=gflops, gbps=gbps)
        if peak:
            out.update(peak_gflops=peak["gflops"], peak_gbps=peak["gbps"],
                       pct_peak_flops=100 * gflops / peak["gflops"], pct_peak_bw=100 * gbps / peak["gbps"])
            if nbytes and flops:  # data movement only (concat, permute, upsample): no roofline point
                roof = min(peak["gflops"], peak["gbps"] * flops / nbytes)
                out["pct_roofline"] = 100 * gflops / roof
    if timing.torch:
        t = float(np.median(timing.torch))
        out["torch_rounds_s"] = timing.torch
        out["torch_median_s"] = t
        if timing.torch_one_thread and any(timing.torch_one_thread):
            out["torch_one_thread_share"] = sum(timing.torch_one_thread) / len(timing.torch_one_thread)
        if wall and t > 0:
            out["ratio_vs_torch"] = ratio_vs_torch(wall, timing.torch)
    return out


def ratio_vs_torch(wall: list, torch: list) -> float:
    """Ours / torch: the median of the paired rounds' ratios (torch's round right after ours, so both saw the
    machine in the same state) where every round has its pair, else median / median. Quick runs of the same code
    (PoCL, 2 cores): the medians' ratio of softmax naive at sd21_text_causal_scores spread 58% over four runs, the
    paired ratios' median 8.5% (docs/PERF.md)."""
    w, t = np.asarray(wall, dtype=np.float64), np.asarray(torch, dtype=np.float64)
    if len(w) == len(t) and len(w) and np.all(t > 0):
        return float(np.median(w / t))
    return float(np.median(w)) / float(np.median(t))


def budget(config) -> float:
    """Seconds per benchmark, ours and torch's rounds together: --bench-budget, else 1.0 (0.3 under -m quick)."""
    b = config.getoption("--bench-budget")
    if b is not None:
        return b
    return 0.3 if "quick" in (config.getoption("-m") or "") else 1.0
