"""Run one registry case on one device variant and compare it with the reference, in float64 on the host.

The device sees the inputs rounded to the dtype under test; the reference runs in float64 on those same rounded
inputs, so the measured error is the device's alone. Inputs and outputs sit between poisoned guard regions
(Runtime.guard_bytes; the poison is a NaN pattern), so an unwritten element, an out-of-bounds write, and an
out-of-bounds read (its NaN reaches the output) fail on any device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sdcl.opencl_impl.dispatch import run
from sdcl.opencl_impl.ops import to_half
from sdcl.opencl_impl.runtime import INPUT_POISON, POISON, Runtime
from sdcl.registry import Case, OpSpec


@dataclass
class Result:
    op: str
    variant: str
    knobs: dict
    dtype: str
    case: str
    passed: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    rel_l2: float = 0.0
    max_ulp: float = 0.0
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def cast_case(case: Case, dtype) -> Case:
    """The case with every float array rounded to dtype (integer arrays, e.g. token ids, untouched)."""
    def c(a):
        if isinstance(a, np.ndarray):
            return a.astype(dtype) if a.dtype.kind == "f" else a
        if isinstance(a, list):
            return [c(x) for x in a]
        return a
    return Case(case.name, tuple(c(a) for a in case.args), {k: c(v) for k, v in case.kwargs.items()})


def _to_device(rt: Runtime, a):
    """A float input on the device; with rt.guard_bytes set, inside poisoned guard regions (Runtime.empty) like the
    outputs: a kernel that reads past an input reads the NaN poison, which shows in its output, and one that writes
    there is caught by check_guards."""
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        if not rt.guard_bytes:
            return rt.to_device(a)
        y = rt.empty(a.shape, a.dtype, poison=INPUT_POISON)
        if a.size:
            y.set(a.copy(order="C"))        # np.ascontiguousarray would make a 0-d array 1-d
        return y
    if isinstance(a, list):
        return [_to_device(rt, x) for x in a]
    return a


def device_args(rt: Runtime, spec: OpSpec, variant: str, case: Case) -> tuple:
    """(args, kwargs) of a case on the device, the variant's half_args stored in half (as a model stored in half
    passes them)."""
    half = next((v.half_args for v in spec.variants if v.name == variant), ())   # () for an undeclared launcher
    args = [_to_device(rt, a) for a in case.args]
    args = [to_half(rt, a) if i in half and a is not None else a for i, a in enumerate(args)]
    return args, {k: _to_device(rt, v) for k, v in case.kwargs.items()}


def guard_bytes_for(rt: Runtime) -> int:
    """Guard size: a whole number of the device's sub-buffer alignment, at least 4 KiB."""
    align = max(rt.device.mem_base_addr_align // 8, 4)
    return max(4096, align) // align * align


def reference_output(spec: OpSpec, case: Case, dtype) -> np.ndarray:
    """The float64 reference on the inputs rounded to dtype (what the device sees)."""
    exact = cast_case(cast_case(case, dtype), np.float64)
    return spec.reference(*exact.args, **exact.kwargs)


def run_case(rt: Runtime, spec: OpSpec, variant: str, knobs: dict, case: Case, dtype,
             expected: np.ndarray | None = None) -> Result:
    """Check one variant on one case; `expected` (from reference_output) saves recomputing the reference."""
    dtype = np.dtype(dtype)
    if expected is None:
        expected = reference_output(spec, case, dtype)
    case = cast_case(case, dtype)
    res = Result(spec.name, variant, dict(knobs), dtype.name, case.summary(), False)
    old_guard = rt.guard_bytes
    rt.guard_bytes = guard_bytes_for(rt)
    rt.guarded.clear()
    try:
        args, kwargs = device_args(rt, spec, variant, case)
        out = run(rt, spec, spec.variant(variant), knobs, *args, **kwargs)
        rt.queue.finish()
        got = out.get()
        problems = rt.check_guards()
    finally:
        rt.guard_bytes = old_guard
        rt.guarded.clear()
    if got.shape != expected.shape:
        res.message = f"shape {got.shape} != reference {expected.shape}"
        return res
    if spec.output_dtype_follows_input and got.dtype != dtype:
        res.message = f"dtype {got.dtype} != input dtype {dtype}"
        return res
    words = got.view(np.uint32) if got.dtype == np.float32 else got.view(np.uint64) >> np.uint64(32)
    unwritten = int(np.count_nonzero(words == POISON))
    if unwritten:
        problems.append(f"{unwritten} of {got.size} output element(s) never written "
                        f"(first at flat index {int(np.flatnonzero(words == POISON)[0])})")
    g, e = got.astype(np.float64), expected.astype(np.float64)
    err = np.abs(g - e)
    both_nan = np.isnan(g) & np.isnan(e)
    err[both_nan] = 0.0
    err[np.isnan(err)] = np.inf
    tol = spec.tolerance_of(variant, dtype)      # the variant's own (e.g. Winograd's, with its reason), else the row's
    if tol.atol_scale == "input":
        first = next(a for a in case.arrays() if a.dtype.kind == "f").astype(np.float64)
        scale = float(np.max(np.abs(first[np.isfinite(first)]), initial=0.0))
    else:
        scale = float(np.max(np.abs(e[np.isfinite(e)]), initial=0.0))
    res.max_abs = float(err.max(initial=0.0))
    res.max_rel = float(np.max(err / np.maximum(np.abs(e), np.finfo(np.float64).tiny), initial=0.0))
    norm = np.linalg.norm(np.where(np.isfinite(e), e, 0.0))
    res.rel_l2 = float(np.linalg.norm(np.where(np.isfinite(err), err, 1e300)) / (norm if norm > 0 else 1.0))
    spacing = np.spacing(np.abs(e).astype(dtype)).astype(np.float64)
    res.max_ulp = float(np.max(err / np.maximum(spacing, np.finfo(dtype).smallest_subnormal), initial=0.0))
    bound = tol.rtol * np.abs(e) + tol.atol * scale
    bad = ~(err <= bound) & ~both_nan
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        idx = np.unravel_index(i, e.shape)
        poisoned = int(np.count_nonzero(np.isnan(g) & ~np.isnan(e)))
        problems.append(f"{int(bad.sum())} element(s) outside rtol={tol.rtol:g} "
                        f"atol={tol.atol:g}*max|{tol.atol_scale}|; "
                        f"first at {tuple(int(x) for x in idx)}: got {g.flat[i]!r}, reference {e.flat[i]!r}"
                        + (f" ({poisoned} NaN where the reference is finite: a read outside an input's bounds picks "
                           f"up the NaN poison of its guard region)" if poisoned else ""))
    res.passed = not problems
    res.message = "; ".join(problems)
    return res
