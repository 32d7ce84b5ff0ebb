"""Which variant runs: the per-device tuning database and the selection policy.

The database (`tuning/<device>.json` in the repo, `tuning/default.json` for unknown devices) records, per op and
per shape, the fastest variant and knobs the tuner verified on that device. The policy picks, for a call:
Half-storage variants (Variant.half_args) are candidates exactly for the calls that pass a float16 (half-stored)
array, e.g. a model whose weights were stored in half (opencl_impl.storage.half_weights).
1. the database's entry for this op and shape, if its variant is allowed;
2. else the most advanced allowed variant that handles the shape (`Variant.applies`), with the knobs the database
   holds for that variant on this op (any shape) or the variant's defaults;
3. else "naive".
`allowed` restricts the variants per op (the ladder's cumulative rows); None allows every registered variant.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

TUNING_DIR = Path(__file__).resolve().parent.parent / "tuning"
DEVICE_TYPE_KEY = "device_type"    # a database's device type ("CPU", "GPU"), as OpenCL reports it


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


def call_key(fn, args, kwargs=None) -> str:
    """shape_key of a call with its arguments bound to the op's signature (defaults filled in), so that
    conv2d(x, w, b, padding=1) and conv2d(x, w, b, 1, 1) give the same key."""
    import inspect
    bound = inspect.signature(fn).bind(*args, **(kwargs or {}))
    bound.apply_defaults()
    return shape_key((), bound.arguments)


def device_slug(info: dict) -> str:
    name = f"{info['platform']}-{info['device']}".lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:80]


def db_path(info: dict) -> Path:
    return TUNING_DIR / f"{device_slug(info)}.json"


def load_db(info: dict) -> dict:
    """The device's database; else the default one for unknown devices (its part for the device's type, or any
    part); else an empty one."""
    if db_path(info).exists():
        return json.loads(db_path(info).read_text())
    default = TUNING_DIR / "default.json"
    if default.exists():
        by_type = json.loads(default.read_text()).get("by_type", {})
        if by_type:
            return by_type.get(info.get("type")) or next(iter(by_type.values()))
    return {"device": None, "ops": {}}


def save_db(info: dict, db: dict) -> Path:
    TUNING_DIR.mkdir(exist_ok=True)
    path = db_path(info)
    path.write_text(json.dumps(db, indent=1, sort_keys=True) + "\n")
    return path


def _raw(a):
    """An argument as the policy's fast path keys it: (shape, dtype) of an array, elementwise for a list."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return (a.shape, a.dtype.char)
    if isinstance(a, (list, tuple)):
        return tuple(map(_raw, a))
    return a


class Policy:
    """Callable (op, args, kwargs) -> (variant, knobs); install with `rt.policy = Policy(...)`."""

    def __init__(self, db: dict | None = None, allowed: dict | None = None, info: dict | None = None):
        from conformance.registry import REGISTRY
        self.registry = REGISTRY
        self.db = db or {"ops": {}}
        self.allowed = allowed
        self.info = info or {}
        self.choices: dict = {}    # (op, shape key) -> (variant, knobs): what ran, for reports
        self._fast: dict = {}      # (op, shapes, dtypes and scalars as passed) -> choice: the per-call path

    def _candidates(self, op: str, half: bool = False) -> list:
        """The allowed variant names, oldest first; for a call with a half-stored (float16) argument only the
        half-storage variants, and for any other call none of them (they round what they read)."""
        spec = self.registry.get(op)
        names = [v.name for v in spec.variants] if spec else ["naive"]
        if self.allowed is not None:
            names = [n for n in self.allowed.get(op, ["naive"]) if n in names or n == "naive"]
        if spec:
            names = [n for n in names if bool(spec.variant(n).half_args) == half]
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
        key = call_key(spec.reference, args, kwargs) if spec else shape_key(args, kwargs)
        half = any(getattr(a, "dtype", None) == np.float16 for a in args)
        memo = (op, key + (",storage=half" if half else ""))     # shapes alike, storage not: separate choices
        hit = self.choices.get(memo)
        if hit is not None:
            return hit
        names = self._candidates(op, half)
        entry = self.db.get("ops", {}).get(op, {})
        tuned = [c for c in entry.get("shapes", {}).get(key, {}).get("candidates", []) if c["variant"] in names]
        if tuned:  # the fastest verified candidate among the allowed ones, as the tuner timed them
            best = min(tuned, key=lambda c: c["seconds"])
            choice = (best["variant"], dict(best["knobs"]))
        else:
            choice = ("naive", {})
            for name in reversed(names):  # the most advanced allowed variant that handles this shape
                v = spec.variant(name) if spec else None
                if v is not None and not v.runs_on(self.info):
                    continue    # another device type, or a feature this device lacks (NVIDIA PTX for mma_tf32)
                if v is None or v.applies is None or v.applies(args, kwargs or {}):
                    defaults = entry.get("defaults", {})   # a half variant shares its base kernel's knobs
                    knobs = defaults.get(name, defaults.get(name.removesuffix("_half"), v.knobs if v else {}))
                    choice = (name, dict(knobs))
                    break
        self.choices[memo] = choice
        return choice
