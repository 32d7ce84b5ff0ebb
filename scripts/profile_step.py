#!/usr/bin/env python3
"""Where one UNet step (and a VAE decode, a text-encoder pass) spends its device time, per op, with the variants the
device's selection policy ran: the table behind the ladder's last rows.

    python scripts/profile_step.py --device nvidia --model sd21-base --size 512 [--half | --float16] [--out prof.json]

Kernel seconds are the OpenCL profiling events of a call after a warm-up call; wall is that call's time with the
queue drained (the gap is host overhead: launches, allocations, Python); both the median of --reps calls. host is
the call's time with the enqueues skipped: the Python side of that overhead. The stages
<stage>_replayed are the text encoder, UNet step and VAE decode with their launches recorded at the warm-up call and
replayed (sdcl.opencl_impl.replay), as the pipeline's sampler loop runs the UNet and its text encoder and VAE run
from the second image on.
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
    p.add_argument("--shapes", type=int, default=0, metavar="N",
                   help="also print each stage's N op calls (op, shapes, variant) with the most kernel time, and their "
                        "FLOP rate by the registry's count")
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
    replayed = stage_calls(rt, config, dev, inputs, replay=True, dtype=dtype)
    calls.update({f"{stage}_replayed": replayed[stage] for stage in ("text_encoder", "unet", "vae")})
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
        heavy = heaviest(rt, fn, args.shapes) if args.shapes and not stage.endswith("_replayed") else []  # (no policy)
        rt.profile = False
        wall = float(np.median(walls))
        # the per-op table is the mean over the calls; scaled to the median call's kernel total
        scale = float(np.median(kernels)) / max(sum(per_op.values()), 1e-12)
        per_op = {op: s * scale for op, s in per_op.items()}
        total = sum(per_op.values())
        host = host_time(rt, fn) if not stage.endswith("_replayed") else None
        print(f"{stage}: wall {wall * 1e3:.1f} ms, kernels {total * 1e3:.1f} ms, {launches} launches"
              + (f", host {host * 1e3:.1f} ms with the launches skipped" if host is not None else ""))
        for op, s in sorted(per_op.items(), key=lambda kv: -kv[1]):
            print(f"  {op:20} {s * 1e3:9.2f} ms  {100 * s / total:5.1f}%  {counts.get(op, 0):4d} launches")
        print("\n".join(heavy))
        result["stages"][stage] = {"wall_ms": wall * 1e3, "kernel_ms": total * 1e3, "launches": launches,
                                   "ops_ms": {op: s * 1e3 for op, s in per_op.items()}, "op_launches": dict(counts)}
    used = sorted({f"{op}:{v} {k}" for (op, _), (v, k) in rt.policy.choices.items()})
    print("variants run:\n  " + "\n  ".join(used))
    result["variants"] = used
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def host_time(rt, fn, reps: int = 3) -> float:
    """Median seconds of a call of fn with every enqueue skipped (the runtime's collecting mode, as prebuild's pass
    runs the models): the Python side of the wall time (policy, launchers, allocations), without the driver's."""
    times = []
    rt.collecting = {}
    try:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        rt.collecting = None
    return float(np.median(times))


def heaviest(rt, fn, n: int) -> list:
    """One more call of fn, each op call's kernel time attributed to its (op, shapes, variant, knobs): lines of the
    n heaviest, with their share and FLOP rate (the registry's count of the op). A variant that runs other ops
    through the policy (Winograd's and im2col's GEMMs) is charged its own kernels only, so its rate overstates;
    the ops it runs have their own rows."""
    from sdcl.opencl_impl.selection import call_key
    from sdcl.registry import REGISTRY
    from sdcl.registry.spec import Case

    calls, policy = [], rt.policy

    def who(op, a, kw=None):
        # the call's key and FLOP count now, not its arrays: arrays held past their use would keep the memory pool
        # from reusing their buffers, and fresh memory costs a CPU device's kernels its first-touch page faults
        choice = policy(op, a, kw)
        spec = REGISTRY.get(op)
        try:
            key = call_key(spec.reference, a, kw, spec.epilogue_args)
            flops = spec.flops(Case(op, tuple(a), dict(kw or {}))) if spec.flops else 0
        except Exception:       # an op outside the registry, or a count that needs host arrays
            key, flops = "?", 0
        calls.append((len(rt.events), op, key, flops, choice))
        return choice

    rt.events.clear()
    rt.policy = who
    try:
        fn()
        rt.queue.finish()
    finally:
        rt.policy = policy
    ends = [c[0] for c in calls[1:]] + [len(rt.events)]
    rows: dict = {}
    for (start, op, key, flops, (variant, knobs)), end in zip(calls, ends):
        s = sum((ev.profile.end - ev.profile.start) * 1e-9 for _, ev in rt.events[start:end])
        row = rows.setdefault((op, key, variant, repr(sorted(knobs.items()))), [0.0, 0, 0])
        row[0] += s
        row[1] += 1
        row[2] += flops
    rt.events.clear()
    total = sum(r[0] for r in rows.values())
    lines = [f"  heaviest calls (one more call: {len(calls)} op calls, {total * 1e3:.1f} ms of kernels):"]
    for (op, key, variant, knobs), (s, count, flops) in sorted(rows.items(), key=lambda kv: -kv[1][0])[:n]:
        rate = f"{flops / s * 1e-9:8.0f} GFLOP/s" if flops and s else " " * 16
        lines.append(f"    {s * 1e3:8.3f} ms {100 * s / total:5.1f}% x{count:<3d} {rate}  "
                     f"{op}:{variant} {key}  {knobs}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
