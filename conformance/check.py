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


_CHUNK = 1 << 16     # elements per pass of the comparison: its float64 temporaries stay in the caches (1 << 20
                     # went to memory at each of its passes: float32 compare 0.45 -> 0.24 s for 10M elements)
_HALF_VALUES: np.ndarray | None = None     # every float16 bit pattern's value as float64, made at first use


def _float64(a: np.ndarray) -> np.ndarray:
    """a as float64; float16 read through the table of its 65536 values (numpy's own conversion costs about 4 ns an
    element, the table lookup a fraction of it; NaN payloads are lost either way)."""
    global _HALF_VALUES
    if a.dtype != np.float16:
        return a.astype(np.float64, copy=False)
    if _HALF_VALUES is None:
        with np.errstate(invalid="ignore"):
            _HALF_VALUES = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)
    return _HALF_VALUES.take(a.view(np.uint16))


def _rounded_spacing(abs_e: np.ndarray, dtype, abs_max: float) -> np.ndarray:
    """np.spacing(abs_e.astype(dtype)) in float64, at least dtype's smallest subnormal, for abs_e >= 0 whose largest
    value (NaN if any is) is abs_max: the gap at the reference rounded to dtype, from its binary exponent (numpy's
    float16 conversion and spacing cost about 25 ns an element)."""
    fi = np.finfo(dtype)
    top = float(fi.max) - float(fi.max - np.nextafter(fi.max, fi.dtype.type(0))) / 2     # above it, x rounds to max or inf
    if not abs_max < top:                           # rare (those, inf, NaN): numpy's own, inf at max, NaN past it
        with np.errstate(over="ignore", invalid="ignore"):
            return np.maximum(np.spacing(abs_e.astype(dtype)).astype(np.float64), fi.smallest_subnormal)
    m, ex = np.frexp(np.maximum(abs_e, fi.tiny))            # x = m 2^ex, m in [0.5, 1); below tiny the gap is the
    ex += m >= 1 - 2.0 ** -(fi.nmant + 2)                   # subnormals'; m this close to 1 rounds up to 2^ex
    return np.ldexp(1.0, ex - (fi.nmant + 1))               # the gap in [2^(ex-1), 2^ex): 2^(ex-1-nmant)


def _chunks(n: int):
    for lo in range(0, n, _CHUNK):
        yield slice(lo, min(n, lo + _CHUNK))


def _finite_absmax(a: np.ndarray) -> float:
    flat, m = a.reshape(-1), 0.0
    for sl in _chunks(flat.size):
        x = np.abs(_float64(flat[sl]))
        m = max(m, float(np.max(x, where=np.isfinite(x), initial=0.0)))
    return m


def compare(got: np.ndarray, expected: np.ndarray, dtype, tol, scale: float, res: Result, elem_scale=None,
            elem_extra=None) -> list:
    """Fill res's error measures of got against the float64 reference, chunk by chunk; the problems found:
    output words still holding the poison (never written) and elements outside |got - ref| <= rtol |ref| +
    atol scale. A NaN where the reference has one too counts as equal. elem_scale: a function giving a
    per-element scale (flat, float64) that replaces `scale` where larger (Tolerance's "dot" and "half_inputs");
    called only when some element fails with `scale` alone, as no element that passes with it can fail with the
    larger one. elem_extra: a function giving a per-element allowance (flat, float64) added to the bound
    (Tolerance's "half_inputs"), likewise called only when some element fails without it."""
    g_all, e_all = got.reshape(-1), expected.reshape(-1)
    tiny = np.finfo(np.float64).tiny
    unwritten = first_unwritten = bad_count = poisoned = 0
    first_bad = -1
    err_sq = ref_sq = 0.0
    for sl in _chunks(g_all.size):
        gc = g_all[sl]
        with np.errstate(invalid="ignore"):                 # the poison is a signalling NaN
            g, e = _float64(gc), e_all[sl].astype(np.float64, copy=False)
        err = np.subtract(g, e)
        np.abs(err, out=err)
        g_nan, e_nan = np.isnan(g), np.isnan(e)
        both_nan = g_nan & e_nan
        any_both_nan = bool(both_nan.any())
        if any_both_nan:
            err[both_nan] = 0.0
        err_nan = np.isnan(err)
        if err_nan.any():
            err[err_nan] = np.inf
        abs_e = np.abs(e)
        err_max, e_max = float(err.max(initial=0.0)), float(abs_e.max(initial=0.0))
        res.max_abs = max(res.max_abs, err_max)
        tmp = np.maximum(abs_e, tiny)
        res.max_rel = max(res.max_rel, float(np.divide(err, tmp, out=tmp).max(initial=0.0)))
        # the sums of squares of the finite values (a pass to pick them only where some are not)
        finite_err = err if np.isfinite(err_max) else np.where(np.isfinite(err), err, 1e300)
        finite_e = e if np.isfinite(e_max) else np.where(np.isfinite(e), e, 0.0)
        with np.errstate(over="ignore"):
            err_sq += float(finite_err @ finite_err)
        ref_sq += float(finite_e @ finite_e)
        with np.errstate(over="ignore", invalid="ignore"):
            spacing = _rounded_spacing(abs_e, dtype, e_max)
            res.max_ulp = max(res.max_ulp, float(np.divide(err, spacing, out=spacing).max(initial=0.0)))
        bad = ~(err <= tol.rtol * abs_e + tol.atol * scale + tol.floor) if tol.rtol else \
            ~(err <= tol.atol * scale + tol.floor)
        if any_both_nan:
            bad &= ~both_nan
        wide = scale
        if elem_scale is not None and bad.any():
            wide = np.maximum(elem_scale()[sl], scale)
            bad &= ~(err <= tol.rtol * abs_e + tol.atol * wide + tol.floor)
        if elem_extra is not None and bad.any():
            bad &= ~(err <= tol.rtol * abs_e + tol.atol * wide + tol.floor + elem_extra()[sl])
        hit = _poisoned(gc, sl.start)
        if gc.dtype == np.float16:
            hit &= bad | g_nan      # 0xDBAD is a half value (-245.6): an element the reference has is not flagged
        if hit.any():
            if not unwritten:
                first_unwritten = sl.start + int(np.flatnonzero(hit)[0])
            unwritten += int(np.count_nonzero(hit))
        if bad.any():
            if first_bad < 0:
                first_bad = sl.start + int(np.flatnonzero(bad)[0])
            bad_count += int(np.count_nonzero(bad))
        poisoned += int(np.count_nonzero(g_nan & ~e_nan))
    res.rel_l2 = float(np.sqrt(err_sq) / (np.sqrt(ref_sq) if ref_sq > 0 else 1.0))
    problems = []
    if unwritten:
        problems.append(f"{unwritten} of {got.size} output element(s) never written "
                        f"(first at flat index {first_unwritten})")
    if bad_count:
        idx = np.unravel_index(first_bad, expected.shape)
        problems.append(f"{bad_count} element(s) outside rtol={tol.rtol:g} "
                        f"atol={tol.atol:g}*{_SCALE_NAME[tol.atol_scale]}"
                        + (f" + {tol.floor:g}" if tol.floor else "") + "; "
                        f"first at {tuple(int(x) for x in idx)}: got {float(g_all[first_bad])!r}, "
                        f"reference {float(e_all[first_bad])!r}"
                        + (f" ({poisoned} NaN where the reference is finite: a read outside an input's bounds picks "
                           f"up the NaN poison of its guard region)" if poisoned else ""))
    return problems


def _poisoned(g: np.ndarray, start: int) -> np.ndarray:
    """Which output elements still hold the 32-bit POISON word Runtime.empty filled them with: for float32 the
    word, for float64 its high half; for float16 the half of the word its position holds (0xDBAD at even flat
    indices, the NaN 0x7FBA at odd ones: arrays start 4-byte aligned)."""
    if g.dtype == np.float32:
        return g.view(np.uint32) == POISON
    if g.dtype == np.float64:
        return (g.view(np.uint64) >> np.uint64(32)) == POISON
    words, hit = g.view(np.uint16), np.empty(g.size, bool)
    lo, hi = POISON & 0xFFFF, POISON >> 16                  # the word's halves, at even and odd flat indices
    first, second = (lo, hi) if start % 2 == 0 else (hi, lo)
    np.equal(words[0::2], first, out=hit[0::2])
    np.equal(words[1::2], second, out=hit[1::2])
    return hit


_SCALE_NAME = {"ref": "max|ref|", "input": "max|input|", "dot": "max(max|ref|, sqrt(sum (a_k b_k)^2))",
               "half_inputs": "max(max|ref|, sqrt(sum terms^2)) + |ref(inputs in float16) - ref|"}


def dot_scale(spec: OpSpec, case: Case, size: int):
    """Tolerances "dot" and "half_inputs": a function giving sqrt(sum_k t_k^2) per output element (flat) over the
    terms t_k of its last sum: spec.terms where the op declares it, else the reference on the squared float inputs
    (sqrt(sum_k (a_k b_k)^2) for a bilinear op), of the case already rounded to the dtype; computed on first call."""
    memo = []

    def get():
        if not memo:
            if spec.terms is not None:
                f64 = cast_case(case, np.float64)
                out = np.asarray(spec.terms(*f64.args, **f64.kwargs), dtype=np.float64)
            else:
                def sq(a):
                    if isinstance(a, np.ndarray):
                        return np.square(a.astype(np.float64)) if a.dtype.kind == "f" else a
                    return [sq(x) for x in a] if isinstance(a, list) else a
                out = spec.reference(*(sq(a) for a in case.args), **{k: sq(v) for k, v in case.kwargs.items()})
                out = np.sqrt(np.asarray(out, dtype=np.float64))
            memo.append(out.reshape(size))
        return memo[0]
    return get


def half_input_effect(spec: OpSpec, case: Case, expected: np.ndarray):
    """Tolerance "half_inputs": a function giving |ref(the inputs rounded to float16) - ref| per output element
    (flat): what the rounding of the inputs to half, which the variant declares, moves the exact result; computed on
    first call. case: already rounded to the dtype, as the device sees it."""
    memo = []

    def get():
        if not memo:
            exact = cast_case(cast_case(case, np.float16), np.float64)
            out = np.asarray(spec.reference(*exact.args, **exact.kwargs), dtype=np.float64)
            memo.append(np.abs(out - expected.astype(np.float64)).reshape(-1))
        return memo[0]
    return get


def cast_case(case: Case, dtype) -> Case:
    """The case with every float array rounded to dtype (integer arrays, e.g. token ids, untouched)."""
    def c(a):
        if isinstance(a, np.ndarray):
            return a.astype(dtype, copy=False) if a.dtype.kind == "f" else a
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
    """Guard size: a whole number of the device's sub-buffer alignment, at least 4 KiB. None on Oclgrind, which checks
    every access against its buffer's bounds itself, and whose uninitialized-value tracking reported every guarded
    input, and every guarded scratch array a first kernel filled for a second, as uninitialized."""
    if rt.info["platform"] == "Oclgrind":
        return 0
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
    tol = spec.tolerance_of(variant, dtype)      # the variant's own (e.g. Winograd's, with its reason), else the row's
    if tol.atol_scale == "input":
        first = next(a for a in case.arrays() if a.dtype.kind == "f")
    else:
        first = expected
    scale = _finite_absmax(first)
    elem = dot_scale(spec, case, expected.size) if tol.atol_scale in ("dot", "half_inputs") else None
    extra = half_input_effect(spec, case, expected) if tol.atol_scale == "half_inputs" else None
    problems += compare(got, expected, dtype, tol, scale, res, elem, extra)
    res.passed = not problems
    res.message = "; ".join(problems)
    return res
