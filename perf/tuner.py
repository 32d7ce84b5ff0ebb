"""`sdcl tune`: search each variant's knobs at the real SD shapes, keep the fastest verified one per op and shape.

Every candidate (variant x knob setting the device's limits admit) is first built and checked against the
reference at that very shape; a candidate that fails to build or gives a wrong answer is discarded and reported,
never stored. Before a variant's fastest knobs at a shape are stored (they then serve that shape in every dtype,
and may become the variant's default for every other shape), they also pass the gate's ci-profile fuzzing in float32
and float64 (where the device has it); knobs that fail there are rejected, and the variant's next fastest are tried.
`dtype="float16"` times the variants a float16 call may run (selection.Policy: the tensor-core ones where one runs)
on float16 inputs and keeps their timings apart, under the op's "float16" entry, which only float16 calls read; their
fuzzed check is the float16 row's.
Survivors are timed by their OpenCL profiling events (median of `reps` after a warm-up). The device's
tuning table (sdcl.opencl_impl.selection) keeps, per shape, each variant at its fastest knobs, fastest first; it is
written into the runtime's tuning folder (the user's, never the installed package), with the raw log of every
candidate's time beside it (<device>.log.json).
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import time
from collections.abc import Sequence

import numpy as np

from sdcl.conformance.check import cast_case, device_args, reference_output, run_case
from sdcl.conformance.runner import References, check_row
from sdcl.files import write_text
from sdcl.opencl_impl.devices import device_key
from sdcl.opencl_impl.dispatch import run_variant
from sdcl.opencl_impl.runtime import KernelBuildError, LaunchLimitError, LoopCapError, Runtime
from sdcl.opencl_impl.selection import DEVICE_TYPE_KEY, TYPED, Policy, call_key, device_slug, load_table, save_table
from sdcl.registry import REGISTRY, Case
from sdcl.registry.fuzz import randn


def time_variant(rt: Runtime, op: str, variant: str, knobs: dict, case, dtype=np.float32, reps: int = 5) -> float:
    """Median seconds of device time (sum of the profiling events of all kernels one call launches)."""
    args, kwargs = device_args(rt, REGISTRY[op], variant, cast_case(case, dtype))
    run_variant(rt, op, variant, knobs, *args, **kwargs)  # warm-up: builds, first-touch
    rt.queue.finish()
    rt.events.clear()
    rt.profile = True
    times = []
    try:
        for _ in range(reps):
            run_variant(rt, op, variant, knobs, *args, **kwargs)
            times.append(sum(rt.kernel_times().values()))
    finally:
        rt.profile = False
    return statistics.median(times)


def traced_cases(rt: Runtime, model: str, size: int, log=print) -> dict:
    """op -> Cases (TracedCases: each made when read) of the shapes that one text-encoder pass (batch 2), one UNet
    step (batch 2, CFG) and one VAE decode of `model` at size x size send to each op on this device, under its
    current database: e.g. the GEMMs that the conv variants run (im2col's chunks, Winograd's batched products),
    which the registry's SD cases do not list. Inputs are random of the traced shapes, scalars as they were; calls
    on half-stored arrays are left out (float32 tuning)."""
    import gc

    from sdcl.perf.ladder import _inputs, stage_calls
    from sdcl.reference import text_encoder, unet, vae
    from sdcl.reference.configs import get_config

    seen: dict = {}
    policy = Policy(load_table(rt.info, rt.tuning_dirs), info=rt.info)

    def record(op, args, kwargs=None):
        spec = REGISTRY.get(op)
        flat = [x for a in list(args) + list((kwargs or {}).values()) for x in (a if isinstance(a, list) else [a])]
        arrays = [a for a in flat if hasattr(a, "shape")]
        if spec is not None and all(a.dtype == np.float32 for a in arrays):
            key = call_key(spec.reference, args, kwargs, spec.epilogue_args)
            if (op, key) not in seen:
                seen[(op, key)] = ([_meta(a) for a in args], {k: _meta(v) for k, v in (kwargs or {}).items()})
        return policy(op, args, kwargs)

    config = get_config(model)
    # the shapes only: weights unset on the device and the stages run with launches off (Runtime.collecting, as
    # prebuild's pass): a launcher's host code picks and sizes everything from shapes, so the traced calls are the
    # real ones, without computing (or holding) a 512 x 512 decode; tracing at 512 had been killed for memory on 24 GiB
    dev = {m: {k: rt.empty(shape, np.float32) for k, shape in module.param_shapes(part).items()}
           for m, module, part in (("text_encoder", text_encoder, config.text_encoder), ("unet", unet, config.unet),
                                   ("vae", vae, config.vae))}
    calls = stage_calls(rt, config, dev, _inputs(config, size, np.random.default_rng(0)))
    del dev
    if rt.collecting is not None or rt.recording is not None:
        raise RuntimeError("traced_cases: the runtime is already collecting or recording")
    saved, rt.policy, rt.collecting = rt.policy, record, {}
    try:
        for call in calls.values():
            call()
    finally:
        rt.policy, rt.collecting = saved, None
        del calls
        gc.collect()
    # the smallest shapes first (by array elements), so that a run stopped at a time limit (the tuner saves after
    # each shape) has tuned the most shapes: the UNet's before the VAE's 512x512 convolutions
    def n(m):
        if isinstance(m, list):
            return sum(map(n, m))
        return int(np.prod(m[1])) if isinstance(m, tuple) and m and m[0] == "array" else 0

    def elements(item):
        (op, key), (args, kwargs) = item
        return op, sum(map(n, args)) + sum(map(n, kwargs.values())), key

    out: dict = {}
    for i, ((op, _), (args, kwargs)) in enumerate(sorted(seen.items(), key=elements)):
        out.setdefault(op, []).append((f"{model}_{size}_traced_{i}", i, args, kwargs))
    log(f"traced {sum(map(len, out.values()))} distinct op shapes of {model} at {size}x{size}: "
        + ", ".join(f"{op} {len(cs)}" for op, cs in sorted(out.items())))
    return {op: TracedCases(shapes) for op, shapes in out.items()}


class TracedCases(Sequence):
    """One op's traced shapes as Cases, each made when it is read (its random inputs drawn from a seed of its own,
    so the same every time) and not kept: sd21-base's 512 x 512 pass sends 194 shapes, whose inputs in float64 are
    17.9 GiB together (batched_matmul's 8.6, conv2d's 5.5), and made all at once beside the references of the shapes
    being tuned they outgrew 24 GiB (`--trace-size 512 --ops attention` was killed for memory at its 14th shape)."""

    def __init__(self, shapes: list):
        self._shapes = shapes       # (name, seed index, args' metas, kwargs' metas)

    def __len__(self) -> int:
        return len(self._shapes)

    def __getitem__(self, index: int) -> Case:
        name, i, args, kwargs = self._shapes[index]

        def make(m, j):
            if isinstance(m, list):
                return [make(x, j * 8 + n) for n, x in enumerate(m)]
            return randn(1000 + i * 64 + j, m[1])[0] if isinstance(m, tuple) and m and m[0] == "array" else m
        return Case(name, tuple(make(m, j) for j, m in enumerate(args)), {k: make(m, 99) for k, m in kwargs.items()})


def _meta(a):
    """An argument as tracing keeps it: ("array", shape) for an array, a list of those for a list, else the value."""
    if isinstance(a, list):
        return [_meta(x) for x in a]
    return ("array", tuple(int(s) for s in a.shape)) if hasattr(a, "shape") else a


def sampled(configs: list, n: int, rng: random.Random) -> list:
    """At most n of a variant's knob settings (configs: its default first): the default, then the settings one knob
    away from it, then two, ... each distance in random order: a search around the declared default (itself the
    fastest of an A/B) rather than a uniform sample of a space of hundreds, most of them far from fast."""
    if len(configs) <= n:
        return configs
    default = configs[0]
    rest = configs[1:]
    rng.shuffle(rest)
    rest.sort(key=lambda k: sum(k.get(name) != value for name, value in default.items()))
    return [default] + rest[:n - 1]


def tune(rt: Runtime, ops=None, max_configs: int = 24, reps: int = 5, seed: int = 0, log=print,
         case_filter=None, extra_cases: dict | None = None, variants=None, dtype: str = "float32") -> dict:
    """Tune the ops (default: every registry op with more than one variant or a knob space); returns the device's
    table as written into rt.tuning_dir. extra_cases: op -> more Cases (traced_cases), tuned only where the device's
    table (shipped or the user's) has no entry for their shape. variants: time only these variants (e.g. one just
    added) and merge their timings into each shape's existing ranking, traced shapes included. dtype: "float32" or
    "float16" (see the module's text)."""
    if dtype not in ("float32",) + TYPED:
        raise ValueError(f"tune: dtype {dtype!r} (float32 or {', '.join(TYPED)})")
    np_dtype = np.dtype(dtype)
    known = load_table(rt.info, rt.tuning_dirs, borrow=False)
    path = rt.tuning_dir / f"{device_slug(rt.info)}.json"
    table = json.loads(path.read_text()) if path.is_file() else {}     # the user's own entries
    if table.get("device") != device_key(rt.device):
        table = {"ops": {}}
    table.update({"device": device_key(rt.device), DEVICE_TYPE_KEY: rt.info["type"],
                  "tuned": time.strftime("%Y-%m-%d %H:%M:%S")})
    rng = random.Random(seed)
    refs = References()
    rejected, raw = [], []
    names = ops or [n for n, s in REGISTRY.items() if len(s.variants) > 1 or any(v.space for v in s.variants)]
    for op in names:
        spec = REGISTRY[op]
        entry = table["ops"].setdefault(op, {"shapes": {}, "defaults": {}})
        if dtype in TYPED:
            entry = entry.setdefault(dtype, {"shapes": {}, "defaults": {}})
        wins: dict = {}
        extra = (extra_cases or {}).get(op, [])
        checked: dict = {}

        def fuzz_check(name: str, knobs: dict, spec=spec, checked=checked) -> str:
            """Why these knobs may not be stored (they become the variant's knobs for every shape and dtype the
            table then serves): the ci profile's fuzzed shapes, in every dtype the variant and device do (float16
            timings: in float16, the only dtype they serve); ""."""
            key = (name, json.dumps(knobs, sort_keys=True))
            if key not in checked:
                dts = [dtype] if dtype in TYPED else spec.variant(name).row_dtypes()
                rows = [check_row(rt, spec, name, d, "ci", knobs=knobs, refs=refs, sd=False) for d in dts]
                bad = [r for r in rows if r.verdict == "FAIL"]
                checked[key] = f"wrong at fuzzed shapes in {bad[0].dtype}: {bad[0].failure[:200]}" if bad else ""
                if bad:
                    log(f"  {op:18} {name:16} {knobs}  rejected: {checked[key]}")
            return checked[key]
        for traced, case in itertools.chain(((False, c) for c in spec.sd_cases()), ((True, c) for c in extra)):
            if case_filter and not traced and not case_filter(spec, case):
                continue
            key = call_key(spec.reference, case.args, case.kwargs, spec.epilogue_args)
            known_op = known.get("ops", {}).get(op, {})
            ranked = (known_op.get(dtype, {}) if dtype in TYPED else known_op).get("shapes", {}).get(key)
            if traced and ranked is not None and not variants:
                continue
            expected = reference_output(spec, case, np_dtype)
            timed = []
            candidates = [v for v in spec.variants if (v.applies is None or v.applies(case.args, case.kwargs))
                          and v.runs_on(rt.info) and dtype in v.dtypes]    # the policy would never pick the others
            if dtype == "float16":   # as selection.Policy: the tensor-core variants wherever one runs
                candidates = [v for v in candidates if v.half_compute] or candidates
            for v in candidates:
                if variants and v.name not in variants:
                    continue
                for knobs in sampled(v.configs(rt.info), max_configs, rng):
                    try:
                        res = run_case(rt, spec, v.name, knobs, case, np_dtype, expected=expected)
                    except KernelBuildError as e:
                        rejected.append((op, v.name, knobs, case.name, f"build failed: {str(e).splitlines()[0]}"))
                        continue
                    except (LaunchLimitError, LoopCapError) as e:
                        rejected.append((op, v.name, knobs, case.name, f"does not fit: {e}"))
                        continue
                    if not res.passed:
                        rejected.append((op, v.name, knobs, case.name, f"wrong: {res.message[:200]}"))
                        continue
                    t = time_variant(rt, op, v.name, knobs, case, np_dtype, reps)
                    timed.append((t, v.name, knobs, res.rel_l2))
                    raw.append({"op": op, "dtype": dtype, "shape": key, "case": case.name, "variant": v.name,
                                "knobs": knobs, "seconds": t, "rel_l2": res.rel_l2})
                    log(f"  {op:18} {case.name:28} {v.name:16} {knobs}  {t * 1e3:9.3f} ms  rel_l2 {res.rel_l2:.1e}")
            best: dict = {}      # per variant, its fastest knobs at this shape that pass the fuzzed check too
            for t, n, k, _ in sorted(timed, key=lambda r: r[0]):
                if n in best:
                    continue
                why = fuzz_check(n, k)
                if why:
                    rejected.append((op, n, k, case.name, why))
                else:
                    best[n] = [n, k, t]
            if not best:
                continue
            kept = [r for r in entry["shapes"].get(key, ranked or []) if variants and r[0] not in best]
            entry["shapes"][key] = sorted(list(best.values()) + kept, key=lambda r: r[2])
            for n, (_, k, _) in best.items():   # per variant, the knobs that were fastest for it on most shapes
                wins.setdefault(n, []).append(k)
            name, knobs, t = entry["shapes"][key][0]
            log(f"  -> {op} {case.name} {dtype}: {name} {knobs} {t * 1e3:.3f} ms")
            save_table(rt.info, table, rt.tuning_dir)   # after every shape: an interrupted run keeps what it timed
        for n, ks in wins.items():
            entry["defaults"][n] = max(ks, key=lambda k: sum(k == x for x in ks))
        save_table(rt.info, table, rt.tuning_dir)  # with the op's defaults
    path = save_table(rt.info, table, rt.tuning_dir)
    log_path = write_text(path.with_suffix(".log.json"),
                          json.dumps({"device": table["device"], "tuned": table["tuned"], "timed": raw,
                                      "rejected": rejected}, indent=1))
    log(f"tuning table: {path} (every candidate: {log_path})")
    for op, name, knobs, case, why in rejected:
        log(f"  rejected {op} {name} {knobs} at {case}: {why}")
    return table


def default_table(tables: list) -> dict:
    """The table for devices without one (tuning/default.json), per device type ("CPU", "GPU"): no per-shape
    entries (those are one device's timings), only each variant's knobs as tuned on a device of that type. The
    policy then runs, per shape, the most advanced variant for the device's type at these knobs."""
    by_type: dict = {}
    for d in tables:
        t = d.get(DEVICE_TYPE_KEY)
        if not t:
            continue
        ops = by_type.setdefault(t, {"device": None, DEVICE_TYPE_KEY: t, "from": [], "ops": {}})
        ops["from"].append(d.get("device"))
        for op, entry in d.get("ops", {}).items():
            out = ops["ops"].setdefault(op, {"shapes": {}, "defaults": {}})
            for name, knobs in entry.get("defaults", {}).items():
                out["defaults"].setdefault(name, knobs)
            for dt in TYPED:     # the knobs timed in float16, for float16 calls
                for name, knobs in entry.get(dt, {}).get("defaults", {}).items():
                    out.setdefault(dt, {"shapes": {}, "defaults": {}})["defaults"].setdefault(name, knobs)
    return {"device": None, "by_type": by_type}
