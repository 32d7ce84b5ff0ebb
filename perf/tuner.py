"""`sdcl tune`: search each variant's knobs at the real SD shapes, keep the fastest verified one per op and shape.

Every candidate (variant x knob setting the device's limits admit) is first built and checked against the
reference at that very shape; a candidate that fails to build or gives a wrong answer is discarded and reported,
never stored. Survivors are timed by their OpenCL profiling events (median of `reps` after a warm-up) and the
fastest goes into the device's database (opencl_impl/selection.py), with every candidate's time beside it.
"""

from __future__ import annotations

import random
import statistics
import time

import numpy as np

from conformance.check import cast_case, device_args, reference_output, run_case
from conformance.registry import REGISTRY, Case
from opencl_impl.runtime import KernelBuildError, Runtime, device_key
from opencl_impl.selection import DEVICE_TYPE_KEY, call_key, load_db, save_db


def time_variant(rt: Runtime, op: str, variant: str, knobs: dict, case, dtype=np.float32, reps: int = 5) -> float:
    """Median seconds of device time (sum of the profiling events of all kernels one call launches)."""
    from opencl_impl.ops import run_variant

    args, kwargs = device_args(rt, REGISTRY[op], variant, cast_case(case, dtype))
    run_variant(op, variant, knobs, *args, **kwargs)  # warm-up: builds, first-touch
    rt.queue.finish()
    rt.events.clear()
    rt.profile = True
    times = []
    try:
        for _ in range(reps):
            run_variant(op, variant, knobs, *args, **kwargs)
            times.append(sum(rt.kernel_times().values()))
    finally:
        rt.profile = False
    return statistics.median(times)


def traced_cases(rt: Runtime, model: str, size: int, log=print) -> dict:
    """op -> Cases of the shapes that one text-encoder pass (batch 2), one UNet step (batch 2, CFG) and one VAE
    decode of `model` at size x size send to each op on this device, under its current database: e.g. the GEMMs
    that the conv variants run (im2col's chunks, Winograd's batched products), which the registry's SD cases do
    not list. Inputs are random of the traced shapes, scalars as they were; calls on half-stored arrays are left
    out (float32 tuning)."""
    import gc

    from conformance.strategies import randn
    from opencl_impl.selection import Policy
    from perf.ladder import _inputs, stage_calls
    from reference.configs import get_config
    from reference.pipeline import init_weights

    seen: dict = {}
    policy = Policy(load_db(rt.info), info=rt.info)

    def record(op, args, kwargs=None):
        spec = REGISTRY.get(op)
        flat = [x for a in list(args) + list((kwargs or {}).values()) for x in (a if isinstance(a, list) else [a])]
        arrays = [a for a in flat if hasattr(a, "shape")]
        if spec is not None and all(a.dtype == np.float32 for a in arrays):
            key = call_key(spec.reference, args, kwargs)
            if (op, key) not in seen:
                seen[(op, key)] = ([_meta(a) for a in args], {k: _meta(v) for k, v in (kwargs or {}).items()})
        return policy(op, args, kwargs)

    config = get_config(model)
    weights = init_weights(config, seed=0)
    dev = {m: {k: rt.to_device(v) for k, v in ws.items()} for m, ws in weights.items()}
    del weights
    calls = stage_calls(rt, config, dev, _inputs(config, size, np.random.default_rng(0)))
    del dev
    saved, rt.policy = rt.policy, record
    try:
        for call in calls.values():
            call()
        rt.queue.finish()
    finally:
        rt.policy = saved
        del calls
        gc.collect()
    out: dict = {}
    for i, ((op, _), (args, kwargs)) in enumerate(sorted(seen.items())):
        def make(m, j):
            if isinstance(m, list):
                return [make(x, j * 8 + n) for n, x in enumerate(m)]
            return randn(1000 + i * 64 + j, m[1])[0] if isinstance(m, tuple) and m and m[0] == "array" else m
        out.setdefault(op, []).append(Case(f"{model}_{size}_traced_{i}", tuple(make(m, j) for j, m in enumerate(args)),
                                           {k: make(m, 99) for k, m in kwargs.items()}))
    log(f"traced {sum(map(len, out.values()))} distinct op shapes of {model} at {size}x{size}: "
        + ", ".join(f"{op} {len(cs)}" for op, cs in sorted(out.items())))
    return out


def _meta(a):
    """An argument as tracing keeps it: ("array", shape) for an array, a list of those for a list, else the value."""
    if isinstance(a, list):
        return [_meta(x) for x in a]
    return ("array", tuple(int(s) for s in a.shape)) if hasattr(a, "shape") else a


def tune(rt: Runtime, ops=None, max_configs: int = 24, reps: int = 5, seed: int = 0, log=print,
         case_filter=None, extra_cases: dict | None = None) -> dict:
    """Tune the ops (default: every registry op with more than one variant or a knob space); returns the db.
    extra_cases: op -> more Cases (traced_cases), tuned only where the database has no entry for their shape."""
    db = load_db(rt.info)
    if db.get("device") != device_key(rt.device):
        db = {"device": device_key(rt.device), "ops": {}}
    db["device"] = device_key(rt.device)
    db[DEVICE_TYPE_KEY] = rt.info["type"]
    db["tuned"] = time.strftime("%Y-%m-%d %H:%M:%S")
    rng = random.Random(seed)
    rejected = []
    names = ops or [n for n, s in REGISTRY.items() if len(s.variants) > 1 or any(v.space for v in s.variants)]
    for op in names:
        spec = REGISTRY[op]
        entry = db["ops"].setdefault(op, {"shapes": {}, "defaults": {}})
        wins: dict = {}
        extra = (extra_cases or {}).get(op, [])
        for traced, case in [(False, c) for c in spec.sd_cases()] + [(True, c) for c in extra]:
            if case_filter and not traced and not case_filter(spec, case):
                continue
            key = call_key(spec.reference, case.args, case.kwargs)
            if traced and key in entry["shapes"]:
                continue
            expected = reference_output(spec, case, np.float32)
            timed = []
            for v in spec.variants:
                if v.applies is not None and not v.applies(case.args, case.kwargs):
                    continue
                if v.devices and rt.info.get("type") not in v.devices:   # the policy would never pick it here
                    continue
                configs = v.configs(rt.info)
                if len(configs) > max_configs:  # exhaustive for small spaces, random sample for large ones
                    configs = configs[:1] + rng.sample(configs[1:], max_configs - 1)
                for knobs in configs:
                    try:
                        res = run_case(rt, spec, v.name, knobs, case, np.float32, expected=expected)
                    except KernelBuildError as e:
                        rejected.append((op, v.name, knobs, case.name, f"build failed: {str(e).splitlines()[0]}"))
                        continue
                    if not res.passed:
                        rejected.append((op, v.name, knobs, case.name, f"wrong: {res.message[:200]}"))
                        continue
                    t = time_variant(rt, op, v.name, knobs, case, np.float32, reps)
                    timed.append((t, v.name, knobs, res.rel_l2))
                    log(f"  {op:18} {case.name:28} {v.name:16} {knobs}  {t * 1e3:9.3f} ms  rel_l2 {res.rel_l2:.1e}")
            if not timed:
                continue
            t, name, knobs, err = min(timed, key=lambda r: r[0])
            entry["shapes"][key] = {"variant": name, "knobs": knobs, "seconds": t, "rel_l2": err, "case": case.name,
                                    "candidates": [{"variant": n, "knobs": k, "seconds": s} for s, n, k, _ in timed]}
            for s, n, k, _ in timed:  # per variant, the knobs that were fastest for it on most shapes
                best = min((r for r in timed if r[1] == n), key=lambda r: r[0])
                wins.setdefault(n, []).append(best[2])
            log(f"  -> {op} {case.name}: {name} {knobs} {t * 1e3:.3f} ms")
        for n, ks in wins.items():
            entry["defaults"][n] = max(ks, key=lambda k: sum(k == x for x in ks))
        save_db(rt.info, db)  # after every op: an interrupted run keeps what it verified and timed
    path = save_db(rt.info, db)
    log(f"tuning database: {path}")
    for op, name, knobs, case, why in rejected:
        log(f"  rejected {op} {name} {knobs} at {case}: {why}")
    db["_rejected"] = rejected
    return db


def default_db(dbs: list) -> dict:
    """The database for devices without one (tuning/default.json), per device type ("CPU", "GPU"): no per-shape
    entries (those are one device's timings), only each variant's knobs as tuned on a device of that type. The
    policy then runs, per shape, the most advanced variant for the device's type at these knobs."""
    from opencl_impl.selection import DEVICE_TYPE_KEY
    by_type: dict = {}
    for d in dbs:
        t = d.get(DEVICE_TYPE_KEY)
        if not t:
            continue
        ops = by_type.setdefault(t, {"device": None, DEVICE_TYPE_KEY: t, "from": [], "ops": {}})
        ops["from"].append(d.get("device"))
        for op, entry in d.get("ops", {}).items():
            for name, knobs in entry.get("defaults", {}).items():
                ops["ops"].setdefault(op, {"shapes": {}, "defaults": {}})["defaults"].setdefault(name, knobs)
    return {"device": None, "by_type": by_type}
