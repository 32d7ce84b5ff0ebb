#!/usr/bin/env python3
"""Time the matmul variants (C = A @ B, float32, square sizes) beside torch's matmul and CLBlast on the same hardware
and run; with --sd, every SD GEMM shape of the registry (matmul, batched_matmul, linear) as the policy runs it.

    python scripts/bench_gemm.py                       # the default device; 1024^3 on a CPU, 4096^3 on a GPU
    python scripts/bench_gemm.py --device nvidia --sizes 4096 --out gemm_h200.json
    python scripts/bench_gemm.py --sweep tiled_reg     # every tuning config of a variant the device admits
    python scripts/bench_gemm.py --sd                  # the SD shapes: the policy's pick against CLBlast and torch
    python scripts/bench_gemm.py --sd --half           # linear's SD shapes in half mode against torch float16

Our time: the median of the OpenCL profiling events (kernel start to end) over --reps calls after one warm-up call.
torch: the median wall time of torch.matmul on the same sizes and hardware (CPU torch for a CPU OpenCL device;
CUDA torch with TF32 off for an NVIDIA GPU, synchronized, plus a TF32 row for reference), and NumPy on a CPU device.
CLBlast (sdcl.perf.clblast: Debian's libclblast1 through its C API) on the same device and queue: the median wall
time of a call and the drained queue; under --sd ours is timed the same way (the wall ratio), and by its events.
Each result is checked against a float64 product (max |error| / max |C|), so a fast wrong kernel shows.
ratio = our GFLOP/s / the baseline's GFLOP/s (above 1: ours is faster).
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
    """(median kernel seconds, result) of reps matmul calls after one warm-up (kernel build, first touch)."""
    return time_events(rt, lambda: run_variant(rt, "matmul", variant, knobs, a, b), reps)


def time_events(rt: Runtime, call, reps: int):
    """(median kernel seconds, result) of reps calls after one warm-up (kernel build, first touch)."""
    out = call()
    rt.queue.finish()
    rt.events.clear()
    rt.profile = True
    times = []
    try:
        for _ in range(reps):
            out = call()
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


def clblast_row(rt: Runtime, a: np.ndarray, b: np.ndarray, reps: int, trans_b: bool = False,
                residual: np.ndarray | None = None):
    """("CLBlast fp32", seconds, max error / max |C|) for A @ B (B^T with trans_b; batched where A is 3-D; + the
    residual through beta = 1), or ("CLBlast", None, why) where it cannot run."""
    from sdcl.perf import clblast
    why = clblast.unavailable()
    if why:
        return "CLBlast", None, why
    batch, m, k = a.shape if a.ndim == 3 else (1,) + a.shape
    n = b.shape[-2] if trans_b else b.shape[-1]
    da, db = rt.to_device(a), rt.to_device(b)
    dc = rt.to_device(residual) if residual is not None else rt.empty((batch, m, n), a.dtype)
    beta = 0.0 if residual is None else 1.0

    def call():
        clblast.gemm(rt.queue, da.data, db.data, dc.data, m, n, k, trans_b=trans_b, batch=batch, beta=beta,
                     dtype=a.dtype)
    call()          # the check: one call on the residual as given
    rt.queue.finish()
    want = np.matmul(a.astype(np.float64), np.swapaxes(b, -1, -2) if trans_b else b).reshape(batch, m, n)
    if residual is not None:
        want = want + residual.reshape(batch, m, n)
    err = float(np.abs(dc.get().reshape(batch, m, n) - want).max() / np.abs(want).max())
    return f"CLBlast {np.dtype(a.dtype).name}", time_wall(call, rt.queue.finish, reps), err


def sd_gemm_cases() -> list:
    """[(op, case)]: the registry's SD cases of the ops that are one GEMM."""
    return [(op, case) for op in ("matmul", "batched_matmul", "linear") for case in REGISTRY[op].sd_cases()]


def bench_sd(rt: Runtime, reps: int, half: bool = False) -> list:
    """Each SD GEMM shape as the runtime's policy runs it (the tuned variant and knobs), against CLBlast and torch
    on the same device, all timed by wall clock (call + drained queue); ours also by its kernel events.
    half: linear's shapes with the weight stored in half (as a model in half mode: the policy picks among the
    half-storage variants), against torch in float16 (every operand half) and no CLBlast (its HGEMM needs
    cl_khr_fp16); the error is still against the float64 product of the unrounded operands."""
    from sdcl.conformance.check import reference_output
    from sdcl.opencl_impl.dispatch import choose, dispatch
    from sdcl.perf import torch_ops
    dev, why = torch_ops.baseline_device(rt.info)
    rows = []
    for op, case in sd_gemm_cases():
        if half and op != "linear":
            continue
        args = [a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in case.args]
        kwargs = {k: v.astype(np.float32) for k, v in case.kwargs.items()}
        flop = REGISTRY[op].flops(case)
        ref = reference_output(REGISTRY[op], case, np.float32)
        d_args = [rt.to_device(a.astype(np.float16) if half and i == 1 else a) for i, a in enumerate(args)]
        d_kwargs = {k: rt.to_device(v) for k, v in kwargs.items()}
        variant, knobs = choose(rt, op, d_args, d_kwargs)
        call = lambda: dispatch(rt, op, *d_args, **d_kwargs)   # noqa: E731
        kernel_s, out = time_events(rt, call, reps)
        err = float(np.abs(out.get().astype(np.float64) - ref).max() / np.abs(ref).max())
        wall_s = time_wall(call, rt.queue.finish, reps)
        x, w = args[0], args[1]
        if op == "linear":
            a, b, trans_b = x.reshape(-1, x.shape[-1]), w, True
        else:
            a, b, trans_b = x, w, False
        res = kwargs.get("residual")
        label, cl_s, cl_err = ("CLBlast", None, "no CLBlast row in half mode") if half else \
            clblast_row(rt, a, b, reps, trans_b, None if res is None else res.reshape(-1, w.shape[0]))
        row = {"op": op, "case": case.name, "shape": case.summary(), "gflop": flop * 1e-9, "variant": variant,
               "knobs": knobs, "kernel_seconds": kernel_s, "wall_seconds": wall_s, "err_rel_max": err}
        if cl_s is None:
            row["clblast"] = cl_err
        else:
            row.update(clblast_seconds=cl_s, clblast_err_rel_max=cl_err, ratio_vs_clblast=cl_s / wall_s)
        if dev is not None:     # op_call synchronizes itself
            t_args, t_kwargs = args, kwargs
            if half:
                t_args = [a.astype(np.float16) if isinstance(a, np.ndarray) else a for a in args]
                t_kwargs = {k: v.astype(np.float16) for k, v in kwargs.items()}
            row["torch_seconds"] = time_wall(torch_ops.op_call(op, t_args, t_kwargs, dev), lambda: None, reps)
            row["ratio_vs_torch"] = row["torch_seconds"] / wall_s
        print(f"  {op:15} {case.name:28} {variant:10} {wall_s * 1e3:9.3f} ms ({kernel_s * 1e3:9.3f} kernels) "
              f"err {err:.1e}" + (f" | CLBlast {cl_s * 1e3:9.3f} ms err {cl_err:.1e} x{cl_s / wall_s:.2f}"
                                  if cl_s is not None else f" | {cl_err}")
              + (f" | torch{' fp16' * half} {row['torch_seconds'] * 1e3:9.3f} ms x{row['ratio_vs_torch']:.2f}"
                 if dev else ""))
        rows.append(row)
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
    p.add_argument("--sd", action="store_true",
                   help="the SD GEMM shapes (matmul, batched_matmul, linear) as the device's policy runs them")
    p.add_argument("--half", action="store_true",
                   help="with --sd: linear's shapes in half mode (weight stored as float16) against torch float16")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    if args.sd:
        from sdcl.opencl_impl.backend import runtime_for
        rt = runtime_for(args.device)
        print(f"device: {device_key(rt.device)}; SD GEMM shapes, "
              + ("linear in half mode (float16 weight)" if args.half else "float32")
              + ", ratio = baseline time / ours (wall)")
        result = {"device": device_key(rt.device), "time": time.strftime("%Y-%m-%d %H:%M:%S"), "half": args.half,
                  "sd": bench_sd(rt, args.reps, args.half)}
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return 0
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
        label, cl_s, cl_err = clblast_row(rt, a, b, args.reps)
        if cl_s is None:
            print(f"  ({cl_err})")
        else:
            baselines.append((label, cl_s))
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
            if cl_s:
                row["ratio_vs_clblast"] = cl_s / s
            print(f"  {name:14} {json.dumps(knobs):30} {s * 1e3:10.3f} ms {row['gflops']:10.1f} GFLOP/s"
                  + (f"  x{row['ratio_vs_torch']:.3f} of torch" if torch_s else "")
                  + (f"  x{row['ratio_vs_clblast']:.2f} of CLBlast" if cl_s else "") + f"  err {err:.1e}")
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
