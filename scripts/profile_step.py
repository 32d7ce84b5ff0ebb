#!/usr/bin/env python3
"""Where one UNet step (and a VAE decode, a text-encoder pass) spends its device time, per op, with the variants the
device's selection policy ran: the table behind the ladder's last rows.

    python scripts/profile_step.py --device nvidia --model sd21-base --size 512 [--half | --float16] [--out prof.json]

Kernel seconds are the OpenCL profiling events of a call after a warm-up call; wall is that call's time with the
queue drained (the gap is host overhead: launches, allocations, Python); both the median of --reps calls. The stage
unet_replayed is the UNet step with its launches recorded at the warm-up call and replayed (sdcl.opencl_impl.replay),
as the pipeline's sampler loop runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device")
    p.add_argument("--model", default="sd21-base")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--half", action="store_true", help="linear and conv2d weights stored as float16")
    p.add_argument("--float16", action="store_true", help="every weight and activation in float16")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args()

    from sdcl.opencl_impl.backend import runtime_for
    from sdcl.opencl_impl.storage import half_mode, half_weights
    from sdcl.perf.ladder import _inputs, stage_calls
    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import init_weights

    config = get_config(args.model)
    rt = runtime_for(args.device)
    weights = init_weights(config, seed=0)
    if args.float16:
        weights = {m: {k: np.asarray(v, np.float16) for k, v in ws.items()} for m, ws in weights.items()}
    elif args.half:
        weights = {m: half_weights(ws) for m, ws in weights.items()}
        half_mode(rt)
    dtype = np.float16 if args.float16 else np.float32
    dev = {m: {k: rt.to_device(v) for k, v in ws.items()} for m, ws in weights.items()}
    inputs = _inputs(config, args.size, np.random.default_rng(0))
    calls = stage_calls(rt, config, dev, inputs, dtype=dtype)
    calls["unet_replayed"] = stage_calls(rt, config, dev, inputs, replay=True, dtype=dtype)["unet"]
    result = {"device": f"{rt.info['platform']} / {rt.info['device']}", "model": args.model, "size": args.size,
              "half": args.half, "float16": args.float16, "stages": {}}
    for stage, fn in calls.items():
        fn()
        rt.queue.finish()
        rt.events.clear()
        rt.profile = True
        walls, kernels, per_op = [], [], {}
        for _ in range(args.reps):
            t0 = time.perf_counter()
            fn()
            rt.queue.finish()
            walls.append(time.perf_counter() - t0)
            launches = len(rt.events)
            counts = Counter(op for op, _ in rt.events)
            times = rt.kernel_times()
            kernels.append(sum(times.values()))
            per_op = {op: per_op.get(op, 0.0) + s / args.reps for op, s in times.items()}
        rt.profile = False
        wall = float(np.median(walls))
        # the per-op table is the mean over the calls; scaled to the median call's kernel total
        scale = float(np.median(kernels)) / max(sum(per_op.values()), 1e-12)
        per_op = {op: s * scale for op, s in per_op.items()}
        total = sum(per_op.values())
        print(f"{stage}: wall {wall * 1e3:.1f} ms, kernels {total * 1e3:.1f} ms, {launches} launches")
        for op, s in sorted(per_op.items(), key=lambda kv: -kv[1]):
            print(f"  {op:20} {s * 1e3:9.2f} ms  {100 * s / total:5.1f}%  {counts.get(op, 0):4d} launches")
        result["stages"][stage] = {"wall_ms": wall * 1e3, "kernel_ms": total * 1e3, "launches": launches,
                                   "ops_ms": {op: s * 1e3 for op, s in per_op.items()}, "op_launches": dict(counts)}
    used = sorted({f"{op}:{v} {k}" for (op, _), (v, k) in rt.policy.choices.items()})
    print("variants run:\n  " + "\n  ".join(used))
    result["variants"] = used
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
