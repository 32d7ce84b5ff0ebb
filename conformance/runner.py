"""The one runner of the registry: an op variant at one dtype on one device, over fuzzed shapes (Hypothesis driving
the row's case generator) and the real SD shapes. The gate (`sdcl conformance`) and the pytest templates
(tests/test_conformance_ops.py) both call `check_row`.

Each case's float64 reference is computed once and shared by every variant and dtype that checks the same case
(`References`): in the ci profile Hypothesis is derandomized, so the variants of an op that handle the same shapes
draw the same cases. A row stops at its first failure, which Hypothesis then shrinks to a minimal case; the row's
case count is the cases it ran before that, shrink attempts excluded. A kernel that fails to build fails the row
once: nothing is built again for further cases.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

import numpy as np

from sdcl.conformance.check import Result, reference_output, run_case
from sdcl.conformance.profiles import CI_SD_FLOP_LIMIT
from sdcl.conformance.report import Row
from sdcl.opencl_impl.runtime import KernelBuildError
from sdcl.registry import Case, OpSpec, Variant


def skip_reason(rt, spec: OpSpec, v: Variant, dtype: str) -> str | None:
    """Why this row cannot run on this device, or None."""
    if dtype not in v.dtypes:
        return f"{spec.name} {v.name} implements {', '.join(v.dtypes)} only"
    if dtype == "float64" and not rt.info["fp64"]:
        return "device has no fp64 (cl_khr_fp64)"
    missing = [n for n in v.needs if not rt.info.get(n)]
    if missing:
        return f"device lacks {', '.join(missing)}"
    return None


def sd_cases(spec: OpSpec, v: Variant, profile: str, refs: "References | None" = None) -> list:
    """The row's SD-shape cases this variant handles; in the ci profile only those of at most CI_SD_FLOP_LIMIT."""
    every = refs.sd_cases(spec) if refs is not None else spec.sd_cases()
    cases = [c for c in every if v.applies is None or v.applies(c.args, c.kwargs)]
    if profile == "ci":
        cases = [c for c in cases if spec.flops(c) <= CI_SD_FLOP_LIMIT]
    return cases


def _digest(case: Case) -> bytes:
    h = hashlib.blake2b(digest_size=16)

    def feed(a):
        if isinstance(a, np.ndarray):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).data)
        elif isinstance(a, (list, tuple)):
            h.update(b"[")
            for x in a:
                feed(x)
            h.update(b"]")
        else:
            h.update(repr(a).encode())
    feed(case.args)
    feed(sorted(case.kwargs.items()))
    return h.digest()


class References:
    """float64 references by (op, dtype, case contents), computed once; least recently used dropped beyond
    max_bytes. Also the SD-shape cases of the op checked last (made once for all its rows, so their digests are
    computed once too: hashing a 33M-element case costs as much as checking it)."""

    def __init__(self, max_bytes: int = 2 << 30):
        self.max_bytes = max_bytes
        self._memo: OrderedDict = OrderedDict()
        self._bytes = 0
        self._sd_source = None          # the sd_cases function whose cases are held
        self._sd: list = []
        self._sd_digests: dict = {}     # id(case) -> digest (None until needed) of the held SD cases
        self.hits = self.misses = 0

    def sd_cases(self, spec: OpSpec) -> list:
        if self._sd_source is not spec.sd_cases:
            self._sd_source, self._sd = spec.sd_cases, list(spec.sd_cases())
            self._sd_digests = dict.fromkeys(map(id, self._sd))
        return self._sd

    def digest(self, case: Case) -> bytes:
        """The case's content digest; an SD case held here is hashed once (while it is held, no other live object
        has its id)."""
        if id(case) not in self._sd_digests:
            return _digest(case)
        if self._sd_digests[id(case)] is None:
            self._sd_digests[id(case)] = _digest(case)
        return self._sd_digests[id(case)]

    def get(self, spec: OpSpec, case: Case, dtype) -> np.ndarray:
        key = (spec.name, np.dtype(dtype).name, self.digest(case))
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            self.hits += 1
            return hit
        self.misses += 1
        ref = reference_output(spec, case, dtype)
        self._memo[key] = ref
        self._bytes += ref.nbytes
        while self._bytes > self.max_bytes and len(self._memo) > 1:
            _, old = self._memo.popitem(last=False)
            self._bytes -= old.nbytes
        return ref


def _fold(row: Row, res: Result) -> None:
    row.cases += 1
    row.worst_rel_l2 = max(row.worst_rel_l2, res.rel_l2)
    row.worst_max_abs = max(row.worst_max_abs, res.max_abs)
    row.worst_ulp = max(row.worst_ulp, res.max_ulp)
    if not res.passed and row.passed:
        row.passed = False
        row.failure = f"{res.case}: {res.message}"


class _Stop(Exception):
    """A failure that is not the kernel's answer (a build error): the row stops, nothing is shrunk."""


def check_row(rt, spec: OpSpec, variant: str, dtype: str, profile: str = "ci", knobs: dict | None = None,
              refs: References | None = None, device: str = "", fuzz: bool = True, sd: bool = True) -> Row:
    """Check one variant at one dtype: Hypothesis-fuzzed cases (the profile's number), then the SD shapes.
    knobs: the setting to check (default: the declared defaults)."""
    from hypothesis import assume, given, settings

    from sdcl.conformance.strategies import cases

    v = spec.variant(variant)
    knobs = v.complete(knobs)
    refs = refs if refs is not None else References()
    row = Row("op", spec.name, variant, dtype, device or f"{rt.info['platform']} / {rt.info['device']}")
    row.skipped = skip_reason(rt, spec, v, dtype) or ""
    if row.skipped:
        return row
    t0 = time.perf_counter()
    state = {"failed": None, "counting": True, "stop": None}

    def one(case: Case) -> Result:
        if state["stop"]:
            raise _Stop(state["stop"])
        try:
            return run_case(rt, spec, variant, knobs, case, dtype, expected=refs.get(spec, case, dtype))
        except KernelBuildError as e:
            state["stop"] = f"kernel build failed: {e}"
            raise _Stop(state["stop"]) from None
        except Exception as e:  # a launcher that crashes (bad shape handling) is a failure of this case
            return Result(spec.name, variant, dict(knobs), dtype, case.summary(), False,
                          message=f"{type(e).__name__}: {e}")

    if fuzz:
        @settings(settings.get_profile(profile))
        @given(case=cases(spec))
        def fuzzed(case):
            assume(v.applies is None or v.applies(case.args, case.kwargs))
            res = one(case)
            if state["counting"]:
                _fold(row, res)
            if not res.passed:
                state["counting"] = False       # what follows is Hypothesis shrinking this failure
                state["failed"] = res
                raise AssertionError(res.message)

        try:
            fuzzed()
        except _Stop as e:
            row.passed, row.failure = False, str(e)
        except AssertionError:
            # Hypothesis re-runs the minimal failing example last: report that one.
            row.passed = False
            if state["failed"] is not None:
                row.failure = f"minimal failing case {state['failed'].case}: {state['failed'].message}"
        except Exception as e:  # noqa: BLE001  (Hypothesis's own errors, e.g. no valid example)
            row.passed = False
            row.failure = f"{type(e).__name__}: {e}"
    if sd and row.passed:
        for case in sd_cases(spec, v, profile, refs):
            try:
                _fold(row, one(case))
            except _Stop as e:
                row.passed, row.failure = False, str(e)
            if not row.passed:
                break
    row.seconds = time.perf_counter() - t0
    return row
