"""From an op call to a variant's host code: which variant runs (the runtime's policy), checking that it can take
the call, and calling the launcher its registry declaration names.

Launchers are found through their declaration (`Variant.launcher`, "module:function"), imported when first run: no
module registers anything by being imported.
"""

from __future__ import annotations

import importlib

import numpy as np

from sdcl.opencl_impl.launch import Call
from sdcl.opencl_impl.runtime import LoopCapError, Runtime
from sdcl.opencl_impl.selection import Policy
from sdcl.opencl_impl.shapes import compute_dtype, has_half
from sdcl.registry import REGISTRY
from sdcl.registry.spec import OpSpec, Variant

_LAUNCHERS: dict = {}   # "module:function" -> the function (import lookups, done once)


class LauncherError(LookupError):
    """A variant's declaration names a launcher that cannot be imported."""


def launcher(spec: OpSpec, v: Variant):
    """The host function a variant's declaration names ("module:function"), or the function itself where the
    declaration holds one (a test's or a plugin's variant)."""
    if callable(v.launcher):
        return v.launcher
    ref = v.launcher_for(spec.name)
    fn = _LAUNCHERS.get(ref)
    if fn is None:
        module, _, attr = ref.partition(":")
        if not module or not attr:
            raise LauncherError(f"{spec.name} {v.name}: the declaration names no launcher ('module:function'), "
                                f"got {v.launcher!r}")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise LauncherError(f"{spec.name} {v.name}: launcher {ref} cannot be loaded: {e}") from None
        _LAUNCHERS[ref] = fn
    return fn


def check_call(spec: OpSpec, v: Variant, args) -> None:
    """Refuse a call the variant does not implement, by name: a dtype outside Variant.dtypes (float16 among them:
    the kernels that read and write half); a half-stored (float16) argument beside float32 ones to a variant that
    would misread it (only Variant.half_args variants read half)."""
    dt = compute_dtype(args)
    if dt is not None and dt.name not in v.dtypes:
        readers = [x.name for x in spec.variants if dt.name in x.dtypes]
        raise ValueError(f"{spec.name}: variant {v.name!r} implements {', '.join(v.dtypes)}, not {dt.name}"
                         + (f"; the variants of {dt.name} are {readers}" if dt == np.float16 else ""))
    if has_half(args) and not v.half_args:
        halves = [f"{a.dtype}{a.shape}" for a in args if getattr(a, "dtype", None) == np.float16]
        readers = [x.name for x in spec.variants if x.half_args]
        raise ValueError(f"{spec.name}: variant {v.name!r} reads float32/float64 arrays, got half-stored "
                         f"{', '.join(halves)}; the half-storage variants are {readers}")


def run(rt: Runtime, spec: OpSpec, v: Variant, knobs: dict | None, *args, **kwargs):
    """Run a declared variant of an op with the given knobs (the rest at their declared defaults)."""
    check_call(spec, v, args)
    return launcher(spec, v)(Call(rt, spec.name, v, v.complete(knobs)), *args, **kwargs)


def run_variant(rt: Runtime, op: str, variant: str, knobs: dict | None, *args, **kwargs):
    """Run one named variant of a registry op with the given knobs (the rest at their declared defaults)."""
    spec = REGISTRY[op]
    return run(rt, spec, spec.variant(variant), knobs, *args, **kwargs)


def choose(rt: Runtime, op: str, args, kwargs=None) -> tuple:
    """The (variant, knobs) to run: the runtime's policy (sdcl.opencl_impl.selection.Policy) if it has one, else the
    naive kernel; a half-stored weight, which only the half-storage variants read, gets an untuned policy's pick."""
    if rt.policy is not None:
        return rt.policy(op, args, kwargs or {})
    if has_half(args):
        return Policy(info=rt.info)(op, args, kwargs or {})
    return "naive", {}


def dispatch(rt: Runtime, op: str, *args, **kwargs):
    """Run the op call through the variant the runtime chooses; where that variant's loops would run past this
    device's cap at this shape (Mesa llvmpipe: LoopCapError), through the first of the op's other variants that
    takes it: naive, then the others in declaration order that run on this device at their default knobs (the
    attention at 4096 keys on llvmpipe: flash and naive refuse, gemm's GEMMs and softmax run)."""
    variant, knobs = choose(rt, op, args, kwargs)
    try:
        return run_variant(rt, op, variant, knobs, *args, **kwargs)
    except LoopCapError as refused:
        spec = REGISTRY[op]
        others = [v for v in sorted(spec.variants, key=lambda v: v.name != "naive") if v.name != variant
                  and v.runs_on(rt.info) and not v.half_compute
                  and (v.applies is None or v.applies(args, kwargs))
                  and (v.constraint is None or v.constraint(v.complete(None), rt.info))]
        for v in others:
            try:
                check_call(spec, v, args)
            except ValueError:
                continue
            try:
                return run(rt, spec, v, None, *args, **kwargs)
            except LoopCapError:
                continue
        raise refused
