"""Which variant runs: the per-device tuning table and the selection policy.

A tuning table holds, per op, the knobs each variant was fastest with (`defaults`) and, per shape, the verified
variants at their best knobs, fastest first (`shapes`: key -> [[variant, knobs, seconds], ...]), as timed in float32;
and, where `sdcl tune --dtype float16` ran, the same two timed in float16 under the op's "float16" entry. sdcl ships one
table per device it was tuned on and `default.json` (per device type, defaults only) as package data
(sdcl.resources.shipped_tuning_dir()); `sdcl tune` writes the device's table into the runtime's tuning_dir (the user's
folder), which overrides the shipped one op by op and shape by shape.

The policy picks, for a call:
1. the fastest tuned entry for this op and shape whose variant is allowed and implements the call's dtype (a float16
   call: the float16 entries first; a variant that computes in float16 takes no float32 timing there, see _choose);
2. else the most advanced allowed variant that runs on the device and handles the shape (`Variant.applies`), with the
   knobs the table holds for that variant on this op (any shape), else its declared defaults;
3. else "naive".
Half-storage variants (Variant.half_args) are candidates exactly for the calls that pass a float16 (half-stored)
array; variants that compute in float16 (Variant.half_compute: tensor-core float16) for those, and for every call
while the policy is in half mode (`Policy.half`, set by sdcl.opencl_impl.storage.half_mode where a model runs with
half-stored weights), never for a float32 call otherwise. `allowed` restricts the variants per op (the ladder's cumulative rows); None allows every declared variant.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from sdcl.files import write_text
from sdcl.opencl_impl.shapes import compute_dtype, has_half
from sdcl.registry import REGISTRY

DEVICE_TYPE_KEY = "device_type"    # a table's device type ("CPU", "GPU"), as OpenCL reports it
TYPED = ("float16",)               # the dtypes a table may hold timings of their own for (an op's entry[dtype])


def shape_key(args, kwargs=None) -> str:
    """A stable text key of a call's shapes and scalar arguments: 'x2x320x64x64,w320x320x3x3,stride=2'."""
    def show(a):
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            return "x".join(str(int(s)) for s in a.shape) or "scalar"
        if isinstance(a, (list, tuple)) and a and hasattr(a[0], "shape"):
            return "[" + ";".join(show(x) for x in a) + "]"
        return repr(a)
    parts = [show(a) for a in args if a is not None]
    parts += [f"{k}={show(v)}" for k, v in (kwargs or {}).items() if v is not None]
    return ",".join(parts)


def bind(fn, args, kwargs=None, drop=()) -> dict:
    """A call's arguments by name, bound to the op's signature with its defaults filled in, those named in drop (an
    op's OpSpec.epilogue_args) left out."""
    import inspect
    bound = inspect.signature(fn).bind(*args, **(kwargs or {}))
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k not in drop}


def call_key(fn, args, kwargs=None, drop=()) -> str:
    """shape_key of a call with its arguments bound to the op's signature (defaults filled in), so that
    conv2d(x, w, b, padding=1) and conv2d(x, w, b, 1, 1) give the same key; the arguments named in drop (an op's
    OpSpec.epilogue_args) left out."""
    return shape_key((), bind(fn, args, kwargs, drop))


def nearest_key(bound: dict, keys) -> str | None:
    """Of a table's shape keys (call_key's text), the one nearest a call (bound: its arguments by name) that takes
    the same arguments, each array of the same rank and every scalar but the floats (eps: no change to the work)
    equal: nearest by the sum over arrays' dimensions of |log(size ratio)|. None if no key is comparable."""
    want = {k: v for k, v in bound.items() if v is not None}
    best, best_d = None, math.inf
    for key in keys:
        pieces = re.split(r",(?=\w+=)", key)
        if not all("=" in p for p in pieces):     # not a call_key text (an older table's positional key)
            continue
        parts = dict(p.split("=", 1) for p in pieces)
        if parts.keys() != want.keys():
            continue
        d = 0.0
        for name, v in want.items():
            if hasattr(v, "shape") and hasattr(v, "dtype"):
                dims = [int(x) for x in parts[name].split("x")] if re.fullmatch(r"\d+(x\d+)*", parts[name]) else []
                if len(dims) != len(v.shape) or 0 in dims or 0 in v.shape:
                    break
                d += sum(abs(math.log(a / int(b))) for a, b in zip(dims, v.shape))
            elif not isinstance(v, float) and parts[name] != shape_key((), {name: v}).split("=", 1)[1]:
                break
        else:
            if d < best_d:
                best, best_d = key, d
    return best


def device_slug(info: dict) -> str:
    name = f"{info['platform']}-{info['device']}".lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:80]


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"tuning table {path} cannot be read: {e}") from None


def _overlay(base: dict, top: dict) -> dict:
    """base with top's entries laid over it, op by op: top's defaults and shapes win."""
    out = {k: v for k, v in base.items() if k != "ops"}
    out.update({k: v for k, v in top.items() if k != "ops"})
    def merge(into: dict, e: dict) -> None:
        into.setdefault("defaults", {}).update(e.get("defaults", {}))
        into.setdefault("shapes", {}).update(e.get("shapes", {}))
        for dt in TYPED:
            if dt in e:
                merge(into.setdefault(dt, {}), e[dt])

    ops: dict = {}
    for t in (base, top):
        for op, e in t.get("ops", {}).items():
            merge(ops.setdefault(op, {"defaults": {}, "shapes": {}}), e)
    out["ops"] = ops
    return out


def sibling_table(info: dict, shipped_dir) -> dict | None:
    """Where sdcl ships no table for this device: the shipped table of another device of its platform and type, the
    one whose name shares the longest start with this one's (PoCL names a CPU by its vector ISA: pthread-haswell-...
    beside pthread-skylake-avx512-...), marked "borrowed_from"; None where there is none. Its per-shape variant
    choices are what transfers (PoCL on an AVX2 EPYC, sd21-base at 512, ladder row 12, one run each: VAE decode
    27.5 -> 14.1 s, UNet step 21.6 -> 19.3 s, text encoder 1.66 -> 1.25 s against the type's defaults alone)."""
    slug, platform = device_slug(info), device_slug({"platform": info["platform"], "device": ""})
    best = None
    for path in sorted(Path(shipped_dir).glob(f"{platform}-*.json")):
        t = _read(path) or {}
        if t.get("device_type") != info.get("type") or path.stem == slug:
            continue
        common = len(os.path.commonprefix([path.stem, slug]))
        if best is None or common > best[0]:
            best = (common, t)
    return None if best is None else {**best[1], "borrowed_from": best[1].get("device")}


def load_table(info: dict, dirs, borrow: bool = True) -> dict:
    """The device's tuning table: the shipped default for its type (else any type's), overlaid with the one shipped
    for the device, then with the one in the first of `dirs` (the user's tuning folder). With `borrow`, a sibling's
    shipped table (sibling_table) stands in for the device's where sdcl ships none, and where the device's own covers
    some ops only, gives it the ops it lacks (whole ops, never shapes within an op the device has; "borrowed_ops"
    names them); without a sibling those ops keep their type's knobs. dirs: (user dir, shipped dir). The tuner reads
    it without borrowing: a borrowed entry is not this device's."""
    user_dir, shipped_dir = (Path(d) for d in dirs)
    slug = f"{device_slug(info)}.json"
    by_type = (_read(shipped_dir / "default.json") or {}).get("by_type", {})
    base = by_type.get(info.get("type")) or next(iter(by_type.values()), None) or {"device": None, "ops": {}}
    own, sibling = _read(shipped_dir / slug), sibling_table(info, shipped_dir) if borrow else None
    if own and sibling:
        lacks = {op: e for op, e in sibling.get("ops", {}).items() if op not in own.get("ops", {})}
        sibling = {"ops": lacks, "borrowed_ops": {"from": sibling["borrowed_from"], "ops": sorted(lacks)}} if lacks \
            else None
    shipped = _overlay(sibling, own) if own and sibling else own or sibling
    base = _overlay(base, shipped) if shipped else base
    user = _read(user_dir / slug) if user_dir != shipped_dir else None
    return _overlay(base, user) if user else base


def shipped_tables(shipped_dir) -> list:
    """Every tuning table sdcl ships: one per device it was tuned on, and default.json's per device type."""
    out = []
    for path in sorted(Path(shipped_dir).glob("*.json")):
        t = _read(path) or {}
        out += list(t.get("by_type", {}).values()) if "by_type" in t else [t]
    return out


def table_configs(tables, op: str, variant: str) -> list:
    """The distinct knob settings these tables give a variant of an op (its defaults, and every ranked entry of
    every shape), in the order met. A half variant also takes its base kernel's defaults (as the policy does)."""
    out = []
    for t in tables:
        top = t.get("ops", {}).get(op, {})
        found = []
        for entry in [top] + [top[dt] for dt in TYPED if dt in top]:     # float32's timings, then float16's
            defaults = entry.get("defaults", {})
            found += [defaults[n] for n in dict.fromkeys((variant, variant.removesuffix("_half"))) if n in defaults]
            found += [c[1] for ranked in entry.get("shapes", {}).values() for c in ranked if c[0] == variant]
        for k in found:
            if dict(k) not in out:
                out.append(dict(k))
    return out


def table_text(table: dict) -> str:
    """A tuning table as JSON text with one line per variant's defaults and per shape (short, diffable)."""
    def one(v):
        return json.dumps(v, sort_keys=True)

    def entry(e: dict, pad: str) -> list:     # an op's (or its float16 timings') defaults and shapes
        parts = ["defaults", "shapes"] + [dt for dt in TYPED if dt in e]
        out = []
        for j, part in enumerate(parts):
            comma = "," if j < len(parts) - 1 else ""
            if part in TYPED:
                out += [f'{pad}"{part}": {{'] + entry(e[part], pad + " ") + [f"{pad}}}{comma}"]
                continue
            items = sorted(e.get(part, {}).items())
            out.append(f'{pad}"{part}": {{' + ("" if items else "}" + comma))
            out += [f"{pad} {one(k)}: {one(v)}" + ("," if n < len(items) - 1 else "") for n, (k, v) in enumerate(items)]
            if items:
                out.append(f"{pad}}}{comma}")
        return out

    lines = ["{"]
    top = [(k, v) for k, v in sorted(table.items()) if k != "ops"]
    for k, v in top:
        lines.append(f" {one(k)}: {one(v)},")
    lines.append(' "ops": {')
    ops = sorted(table.get("ops", {}).items())
    for i, (op, e) in enumerate(ops):
        lines += [f"  {one(op)}: {{"] + entry(e, "   ") + ["  }" + ("," if i < len(ops) - 1 else "")]
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def save_table(info: dict, table: dict, folder) -> Path:
    """Write the device's table into `folder` (the runtime's tuning_dir), atomically."""
    return write_text(Path(folder) / f"{device_slug(info)}.json", table_text(table))


def _raw(a):
    """An argument as the policy's fast path keys it: (shape, dtype) of an array, elementwise for a list."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return (a.shape, a.dtype.char)
    if isinstance(a, (list, tuple)):
        return tuple(map(_raw, a))
    return a


class Policy:
    """Callable (op, args, kwargs) -> (variant, knobs); install with `rt.policy = Policy(...)`."""

    def __init__(self, table: dict | None = None, allowed: dict | None = None, info: dict | None = None,
                 half: bool = False):
        self.registry = REGISTRY
        self.table = table or {"ops": {}}
        self.allowed = allowed
        self.info = info or {}
        self.choices: dict = {}    # (op, shape key) -> (variant, knobs): what ran, for reports
        self._fast: dict = {}      # (op, shapes, dtypes and scalars as passed) -> choice: the per-call path
        self._half = bool(half)

    @property
    def half(self) -> bool:
        """Half mode: the float16-computing variants (Variant.half_compute) are candidates for float32 calls too."""
        return self._half

    @half.setter
    def half(self, on: bool) -> None:
        if bool(on) != self._half:
            self._half = bool(on)
            self._fast.clear()         # the other mode's picks (choices keeps them under their own keys, for reports)

    def _candidates(self, op: str, half: bool, dtype: str | None) -> list:
        """The allowed variant names, oldest first; for a call with a half-stored (float16) argument only the
        half-storage variants, and for any other call none of them (they round what they read); the variants that
        compute in float16 only for such calls or in half mode; only variants that implement the call's dtype (for
        a float16 call, whose arrays are all half, every variant that implements float16)."""
        spec = self.registry.get(op)
        names = [v.name for v in spec.variants] if spec else ["naive"]
        if self.allowed is not None:
            names = [n for n in self.allowed.get(op, ["naive"]) if n in names or n == "naive"]
        if spec and dtype == "float16":     # every array in half: the variants that implement float16
            names = [n for n in names if dtype in spec.variant(n).dtypes]
        elif spec:
            names = [n for n in names if bool(spec.variant(n).half_args) == half
                     and (half or self._half or not spec.variant(n).half_compute)
                     and (dtype is None or dtype in spec.variant(n).dtypes)]
        return names or ["naive"]

    def __call__(self, op: str, args, kwargs=None) -> tuple:
        # A model sends the same few hundred calls every step: look them up by what was passed, without binding the
        # signature (call_key), which costs more host time than a small kernel takes on a GPU.
        try:
            raw = (op, tuple(map(_raw, args)), tuple((k, _raw(v)) for k, v in (kwargs or {}).items()))
            hit = self._fast.get(raw)
        except TypeError:    # an unhashable argument: the full path
            raw = hit = None
        if hit is None:
            hit = self._choose(op, args, kwargs)
            if raw is not None:
                self._fast[raw] = hit
        return hit

    def _choose(self, op: str, args, kwargs=None) -> tuple:
        spec = self.registry.get(op)
        key = call_key(spec.reference, args, kwargs, spec.epilogue_args) if spec else shape_key(args, kwargs)
        dt = compute_dtype(args)
        dtype = dt.name if dt is not None else None
        half = has_half(args)       # half storage: a float16 weight beside float32 (not the float16 dtype)
        memo = (op, key + (",storage=half" if half else "") + (",mode=half" if self._half and not half else "")
                + (f",{dtype}" if dtype else ""))
        hit = self.choices.get(memo)
        if hit is not None:
            return hit
        names = self._candidates(op, half, dtype)
        entry = self.table.get("ops", {}).get(op, {})

        def handles(v) -> bool:   # runs on this device (type, features such as NVIDIA PTX) and handles this shape
            return v.runs_on(self.info) and (v.applies is None or v.applies(args, kwargs or {}))

        if dtype == "float16" and spec:
            # A float16 call runs a tensor-core variant wherever one runs here and handles the call: the float32
            # ranking placed them by float32 timings, where they round their float32 inputs as they stage them (or
            # had not been timed at all); in float16 they read half as it is. SD 2.1-base 512, float16 UNet step:
            # 47.6 ms of kernels on an H100 (no table: tensor-core variants wherever they apply), 77.9 ms on an H200
            # by its float32 ranking.
            names = [n for n in names if spec.variant(n).half_compute and handles(spec.variant(n))] or names
        # Nor do such variants take their knobs from float32 timings in a float16 call: those staged float32 through
        # registers, where float16 copies half tiles with cp.async, and the fastest tiles differ (H100, float16
        # linear at the SD shapes: 128 x 64 three buffers deep 0.94x of the 128 x 128 two deep that float32 half
        # mode tuned, docs/results/ab-knobs-nvidia-h100-7.txt). Their float16 timings (`sdcl tune --dtype float16`:
        # the op's float16 entry) serve first, else their declared knobs.
        untimed = {n for n in names if dtype == "float16" and spec and spec.variant(n).half_compute}
        typed = entry.get(dtype, {}) if dtype in TYPED else {}

        def ranked(shapes: dict, skip: set) -> list:
            tuned = [c for c in shapes.get(key, []) if c[0] in names and c[0] not in skip]
            if not tuned and shapes and spec:
                # a shape the tuner did not time (the VAE's group norms at 256 x 256, say): the ranking of the
                # nearest one it timed, where that shape's variant handles this call; on a GPU the device's own
                # timings at a neighbouring shape are a better guide than the most advanced variant at its default
                # knobs (the H200's float16 VAE: 14.8 ms of group_norm_silu in 23 launches, `fused`, a work-group a
                # group, where its table lacks the shape)
                near = nearest_key(bind(spec.reference, args, kwargs, spec.epilogue_args), shapes)
                tuned = [c for c in shapes.get(near, []) if c[0] in names and c[0] not in skip
                         and handles(spec.variant(c[0]))]
            return tuned

        tuned = ranked(typed.get("shapes", {}), set()) or ranked(entry.get("shapes", {}), untimed)
        if tuned:  # the fastest verified variant among the allowed ones, as the tuner timed them
            choice = (tuned[0][0], dict(tuned[0][1]))
        else:
            choice = ("naive", {})
            for name in reversed(names):  # the most advanced allowed variant that runs here and handles this shape
                v = spec.variant(name) if spec else None
                if v is None or handles(v):
                    # a half variant shares its base kernel's knobs
                    timed = [typed.get("defaults", {})] + ([] if name in untimed else [entry.get("defaults", {})])
                    found = [d[n] for d in timed for n in (name, name.removesuffix("_half")) if n in d]
                    choice = (name, dict(found[0] if found else v.knobs if v else {}))
                    break
        self.choices[memo] = choice
        return choice


def policy_for(rt, force: dict | None = None) -> Policy:
    """The runtime's device policy: its tuning table (the runtime's tuning dirs), every declared variant allowed;
    `force` (op -> variant name): that op runs that variant wherever it handles the call (else naive)."""
    allowed = None
    if force:
        allowed = {op: [v.name for v in spec.variants] for op, spec in REGISTRY.items()}
        allowed.update({op: [name] for op, name in force.items()})
    table = load_table(rt.info, rt.tuning_dirs)
    if table.get("borrowed_from"):
        warnings.warn(f"no tuning table for {rt.info['device']}: using the one tuned on {table['borrowed_from']} "
                      f"(its per-shape choices); `sdcl tune` writes this device's own", stacklevel=2)
    return Policy(table, allowed=allowed, info=rt.info)
