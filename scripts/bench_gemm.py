#!/usr/bin/env python3
"""Time the matmul variants (C = A @ B, float32, square sizes) beside torch's matmul on the same hardware and run.

    python scripts/bench_gemm.py                       # the default device; 1024^3 on a CPU, 4096^3 on a GPU
    python scripts/bench_gemm.py --device nvidia --sizes 4096 --out gemm_h200.json
    python scripts/bench_gemm.py --sweep tiled_reg     # every tuning config of a variant the device admits

Our time: the median of the OpenCL profiling events (kernel start to end) over --reps calls after one warm-up call.
torch: the median wall time of torch.matmul on the same sizes and hardware (CPU torch for a CPU OpenCL device;
CUDA torch with TF32 off for an NVIDIA GPU, synchronized, plus a TF32 row for reference), and NumPy on a CPU device.
Each result is checked against a float64 product (max |error| / max |C|), so a fast wrong kernel shows.
ratio = our GFLOP/s / torch fp32 GFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sdcl.opencl_impl.devices import DeviceError, device_key, select_device
from sdcl.opencl_impl.dispatch import run_variant
from sdcl.opencl_impl.runtime import KernelBuildError, Runtime
from sdcl.registry import REGISTRY


def time_ours(rt: Runtime, variant: str, knobs: dict, a, b, reps: int):
    """(median kernel seconds, result) of reps calls after one warm-up (kernel build, first touch)."""
    out = run_variant(rt, "matmul", variant, knobs, a, b)
    rt.queue.finish()
    rt.events.clear()
    rt.profile = True
    times = []
    try:
        for _ in range(reps):
            out = run_variant(rt, "matmul", variant, knobs, a, b)
            times.append(sum(rt.kernel_times().values()))
    finally:
        rt.profile = False
    return statistics.median(times), out


def time_wall(fn, sync, reps: int) -> float:
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_rows(a: np.ndarray, b: np.ndarray, device_type: str, platform: str, reps: int) -> list:
    """torch (and NumPy on a CPU) on the same hardware as the OpenCL device: [(label, seconds)]."""
    rows = []
    try:
        import torch
    except ImportError:
        return rows
    if device_type == "GPU" and "nvidia" in platform.lower():
        if not torch.cuda.is_available():
            print("  (torch has no CUDA here: no GPU baseline)")
            return rows
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        for label, tf32 in (("torch CUDA fp32 (TF32 off)", False), ("torch CUDA TF32", True)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            rows.append((label, time_wall(lambda: torch.matmul(ta, tb), torch.cuda.synchronize, reps)))
        torch.backends.cuda.matmul.allow_tf32 = False
    elif device_type == "CPU":
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rows.append((f"torch CPU fp32 ({torch.get_num_threads()} threads)",
                     time_wall(lambda: torch.matmul(ta, tb), lambda: None, reps)))
        rows.append(("numpy (BLAS) fp32", time_wall(lambda: a @ b, lambda: None, reps)))
    return rows


def configs_to_run(rt: Runtime, variants: list, sweep: list, extra: list) -> list:
    """[(variant, knobs)]: each variant's default knobs, every admitted config of the swept ones, and the extra
    (variant, JSON knobs) pairs given on the command line (over the variant's defaults)."""
    spec = REGISTRY["matmul"]
    out = []
    for name in variants:
        v = spec.variant(name)
        for knobs in (v.configs(rt.info) if name in sweep else [v.knobs]):
            out.append((name, knobs))
    for name, knobs in extra:
        out.append((name, {**spec.variant(name).knobs, **json.loads(knobs)}))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="PYOPENCL_CTX-style selector (default: sdcl's default device)")
    p.add_argument("--sizes", type=int, nargs="*", default=None,
                   help="square sizes (default: 1024 on a CPU device, 4096 on a GPU)")
    p.add_argument("--variants", nargs="*", default=None,
                   help="matmul variants (default: every registered one written for this device type, but naive)")
    p.add_argument("--sweep", nargs="*", default=[], help="variants to time at every config the device admits")
    p.add_argument("--config", nargs=2, action="append", default=[], metavar=("VARIANT", "JSON"),
                   help='also time VARIANT with these knobs, e.g. --config mma_tf32 \'{"SPLIT": 1}\'')
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    rt = Runtime(select_device(args.device))
    info = rt.info
    sizes = args.sizes or ([4096] if info["type"] == "GPU" else [1024])
    spec = REGISTRY["matmul"]
    names = args.variants or [v.name for v in spec.variants
                              if v.name != "naive" and (not v.devices or info["type"] in v.devices)
                              and all(info.get(need) for need in v.needs)]
    print(f"device: {device_key(rt.device)} ({info['type']}, {info['compute_units']} compute units)")
    result = {"device": device_key(rt.device), "device_type": info["type"], "time": time.strftime("%Y-%m-%d %H:%M:%S"),
              "sizes": []}
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        flop = 2.0 * n ** 3
        ref = a.astype(np.float64) @ b.astype(np.float64)
        scale = float(np.abs(ref).max())
        da, db = rt.to_device(a), rt.to_device(b)
        print(f"\nmatmul {n}^3 float32 ({flop * 1e-9:.1f} GFLOP)")
        baselines = torch_rows(a, b, info["type"], info["platform"], args.reps)
        torch_s = baselines[0][1] if baselines else None
        for label, s in baselines:
            print(f"  {label:44} {s * 1e3:10.3f} ms {flop / s * 1e-9:10.1f} GFLOP/s")
        rows = []
        for name, knobs in configs_to_run(rt, names, args.sweep, args.config):
            row = {"variant": name, "knobs": knobs}
            try:
                s, out = time_ours(rt, name, knobs, da, db, args.reps)
            except (KernelBuildError, DeviceError) as e:
                row["error"] = str(e).splitlines()[0]
                print(f"  {name:14} {json.dumps(knobs):30} {row['error']}")
                rows.append(row)
                continue
            err = float(np.abs(out.get().astype(np.float64) - ref).max()) / scale
            row.update(seconds=s, gflops=flop / s * 1e-9, err_rel_max=err)
            if torch_s:
                row["ratio_vs_torch"] = torch_s / s
            print(f"  {name:14} {json.dumps(knobs):30} {s * 1e3:10.3f} ms {row['gflops']:10.1f} GFLOP/s"
                  + (f"  x{row['ratio_vs_torch']:.3f} of torch" if torch_s else "") + f"  err {err:.1e}")
            rows.append(row)
        result["sizes"].append({"n": n, "baselines": [{"name": lb, "seconds": s, "gflops": flop / s * 1e-9}
                                                      for lb, s in baselines], "variants": rows})
        del da, db
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
