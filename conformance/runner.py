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
import math
import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from sdcl.conformance.check import Result, cast_case, reference_output, run_case
from sdcl.conformance.profiles import CI_SD_FLOP_LIMIT, MAX_SIZE
from sdcl.conformance.report import Row
from sdcl.opencl_impl.runtime import KernelBuildError, LaunchLimitError, LoopCapError
from sdcl.registry import FEATURES, Case, OpSpec, Variant


EMULATE_PTX = "SDCL_EMULATE_PTX"     # "1" (`sdcl conformance --emulate-ptx`; read by the worker processes too)


def emulates_ptx(rt, v: Variant) -> bool:
    """With SDCL_EMULATE_PTX=1, a tensor-core variant (NVIDIA PTX its one missing feature) runs its kernels with
    MMA_EMULATE 1 instead of skipping: each PTX instruction (mma.sync, ldmatrix, cp.async) replaced by plain OpenCL C
    that moves the same elements, so the tiles' index math, local-memory races and tails that the PTX path shares are
    checked (under Oclgrind, against its access, race and uninitialized-value checks); not the instructions."""
    return (os.environ.get(EMULATE_PTX) == "1" and "MMA_EMULATE" in v.knobs
            and [n for n in v.needs if not rt.info.get(n)] == ["nvidia_ptx"])


def skip_reason(rt, spec: OpSpec, v: Variant, dtype: str) -> str | None:
    """Why this row cannot run on this device, or None."""
    if dtype not in v.dtypes:
        return f"{spec.name} {v.name} implements {', '.join(v.dtypes)} only"
    if dtype == "float64" and not rt.info["fp64"]:
        return "device has no fp64 (cl_khr_fp64)"
    missing = [n for n in v.needs if not rt.info.get(n)]
    if missing and not emulates_ptx(rt, v):
        return f"device lacks {', '.join(FEATURES.get(n, n) for n in missing)}"
    return None


def sd_cases(spec: OpSpec, v: Variant, profile: str, refs: "References | None" = None, default: bool = True) -> list:
    """The row's SD-shape cases this variant handles; in the ci profile (and for a knob setting other than the
    default, `default=False`, in dev) only those of at most CI_SD_FLOP_LIMIT. None in ci for a setting other than
    the default (a tuning table's: the tuner checked it at its SD shape on its device; ci checks it on the fuzzed
    shapes), nor under oclgrind (a simulator: tiny fuzzed shapes only)."""
    if profile == "oclgrind" or (profile == "ci" and not default):
        return []
    every = refs.sd_cases(spec) if refs is not None else spec.sd_cases()
    cases = [c for c in every if v.applies is None or v.applies(c.args, c.kwargs)]
    if profile == "ci" or (profile != "thorough" and not default):
        cases = [c for c in cases if spec.flops(c) <= CI_SD_FLOP_LIMIT]
    return cases


def row_configs(rt, spec: OpSpec, v: Variant, profile: str) -> list:
    """The knob settings a row checks: the declared default first; in the ci profile then every setting a shipped
    tuning table (any device's) or the user's table for this device gives the variant; in dev and thorough every
    setting of the variant's space the device admits (Variant.configs) and those of the tables. A table's setting
    the device cannot build (the variant's constraint on this device) is left out. Under oclgrind: the default and
    the smallest setting (least product of its knob values above 0), whose tiles tiny shapes fill and overrun. A
    variant run through its PTX emulation (emulates_ptx), in every profile: the two settings named there."""
    from sdcl.opencl_impl.selection import load_table, shipped_tables, table_configs

    size = lambda k: math.prod(x for x in k.values() if isinstance(x, int) and x > 0)   # noqa: E731
    if emulates_ptx(rt, v):     # an NVIDIA GPU's default tiles may not fit this device: its paths (the 0/1 knobs:
        # cp.async, channels-last copies, ldmatrix) at the smallest tiles that keep them, then the smallest setting
        configs = v.configs(rt.info)
        flags = [n for n, vals in v.space.items() if set(vals) <= {0, 1}]
        like = [k for k in configs if all(k[n] == v.knobs[n] for n in flags)]
        out = ([min(like, key=size)] if like else []) + [min(configs, key=size)]
        return [{**k, "MMA_EMULATE": 1} for i, k in enumerate(out) if k not in out[:i]]
    if profile == "oclgrind":       # the defaults and the smallest tiles (full tiles and tails at tiny sizes)
        smallest = min(v.configs(rt.info), key=size)
        return [v.complete(None)] + ([smallest] if smallest != v.complete(None) else [])
    # every shipped table, and the device's own as the policy reads it (the user's laid over the shipped one)
    tables = shipped_tables(rt.tuning_dirs[1]) + [load_table(rt.info, rt.tuning_dirs)]
    out = [v.complete(None)] if profile == "ci" else [v.complete(k) for k in v.configs(rt.info)]
    for k in table_configs(tables, spec.name, v.name):
        k = v.complete(k)
        if k not in out and (v.constraint is None or v.constraint(k, rt.info)):
            out.append(k)
    return out


def examples_per_config(profile: str, n: int, done: int = 0, default: bool = True) -> int:
    """Fuzzed examples for the next of n knob settings still to check, `done` examples run at the ones before: the
    profile's number (oclgrind: each setting; ci: the declared default, then CI_EXAMPLES_PER_TABLE_SETTING for each
    tuning table's setting, the first cases of the same derandomized sequence), else what remains of that number
    spread over the n settings, at least MIN_EXAMPLES_PER_CONFIG each (thorough: 2000 per row in all)."""
    from hypothesis import settings
    total = settings.get_profile(profile).max_examples
    if profile == "ci" and not default:
        return min(total, CI_EXAMPLES_PER_TABLE_SETTING)
    return total if profile in ("ci", "oclgrind") else max(MIN_EXAMPLES_PER_CONFIG, -(-(total - done) // max(n, 1)))


def source_level(rt, spec: OpSpec, v: Variant, profile: str, configs: list) -> list:
    """The settings of `configs` checked at the source level (built with SOURCE_CHECK_FLAGS): under ci on a CPU
    device, those only other devices' tuning tables give (not the declared default, not a setting of this device's
    table as its policy reads it, not a PTX emulation's); else none."""
    from sdcl.opencl_impl.selection import load_table, table_configs

    if profile != "ci" or rt.info.get("type") != "CPU" or emulates_ptx(rt, v):
        return []
    own = [v.complete(None)] + [v.complete(k) for k in table_configs([load_table(rt.info, rt.tuning_dirs)],
                                                                     spec.name, v.name)]
    return [k for k in configs if k not in own]


# ci on a CPU device: another device's setting is checked for what its source computes, built without optimization
# (this device never runs it; an optimizer does not change what a correct kernel computes). PoCL's code generation
# for a GPU's register tiles was most of the tests' time on a fresh machine: docs/CONFORMANCE.md has the figures.
SOURCE_CHECK_FLAGS = ("-cl-opt-disable",)
MIN_EXAMPLES_PER_CONFIG = 10
# ci: a tuning table's setting (every shipped table's, checked on whatever device runs CI) at the first 4 fuzzed cases
# of the default's 12 (no SD shapes: sd_cases): a row's time on a fresh machine is almost all kernel builds, one per
# setting and per shape parameter compiled in (attention's head dim, which each fuzzed case draws anew), so the
# tables' settings multiplied the builds (attention flash float32 on PoCL: 132 s cold, 5.6 s warm, 2026-12-06). The
# dev and thorough profiles spread their examples over every setting as before.
CI_EXAMPLES_PER_TABLE_SETTING = 4


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
    computed once too: hashing a 33M-element case costs as much as checking it). With `shared` (a folder), the
    references of SD cases are shared with the other processes given the same folder: the first to need one
    computes it and saves it there while the others wait for it, then each reads it memory-mapped (the gate's
    workers checking the knob settings of one row: 16 of them computing SD 2.x's 4096-token float64 attention at
    once, 5.4 GB each, ran a 128 GiB host out of memory)."""

    def __init__(self, max_bytes: int = 2 << 30, shared: str | None = None):
        self.max_bytes = max_bytes
        self.shared = shared
        self._memo: OrderedDict = OrderedDict()
        self._bytes = 0
        self._sd_source = None          # the sd_cases function whose cases are held
        self._sd: list = []
        self._sd_digests: dict = {}     # id(case) -> digest (None until needed) of the held SD cases
        self._sd_cast: dict = {}        # (id(case), dtype) -> the held SD case rounded to dtype
        self.hits = self.misses = 0

    def sd_cases(self, spec: OpSpec) -> list:
        if self._sd_source is not spec.sd_cases:
            self._sd_source, self._sd = spec.sd_cases, list(spec.sd_cases())
            self._sd_digests = dict.fromkeys(map(id, self._sd))
            self._sd_cast = {}
        return self._sd

    def cast(self, case: Case, dtype) -> Case:
        """The case rounded to dtype (cast_case); an SD case held here is rounded once per dtype (the knob settings of
        a row each check every SD case: rounding SD 2.x's activations again cost ~0.4 s a setting)."""
        if id(case) not in self._sd_digests:
            return cast_case(case, dtype)
        key = (id(case), np.dtype(dtype).name)
        if key not in self._sd_cast:
            self._sd_cast[key] = cast_case(case, dtype)
        return self._sd_cast[key]

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
        if self.shared and id(case) in self._sd_digests:
            ref = self._shared(key, lambda: reference_output(spec, case, dtype))
        else:
            ref = reference_output(spec, case, dtype)
        self._memo[key] = ref
        self._bytes += ref.nbytes
        while self._bytes > self.max_bytes and len(self._memo) > 1:
            _, old = self._memo.popitem(last=False)
            self._bytes -= old.nbytes
        return ref

    def _shared(self, key: tuple, compute) -> np.ndarray:
        """The reference of `key` from the shared folder, computed and saved there first by whichever process holds
        its lock first (a lock file per reference: the others wait, then read)."""
        name = Path(self.shared) / f"{key[0]}-{key[1]}-{key[2].hex()}"
        npy = name.with_suffix(".npy")
        with open(name.with_suffix(".lock"), "w") as lock:
            try:
                import fcntl
                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:     # (no fcntl: each process may compute it too)
                pass
            if not npy.exists():
                tmp = name.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, compute())
                os.replace(tmp, npy)
        return np.load(npy, mmap_mode="r")


def _fold(row: Row, res: Result) -> None:
    row.cases += 1
    row.worst_rel_l2 = max(row.worst_rel_l2, res.rel_l2)
    row.worst_max_abs = max(row.worst_max_abs, res.max_abs)
    row.worst_ulp = max(row.worst_ulp, res.max_ulp)
    if not res.passed and row.passed:
        row.passed = False
        row.failure = f"{res.case}: {res.message}"


def _note(row: Row, text: str) -> None:
    """Add a note to the row's notes."""
    row.notes = f"{row.notes}; {text}" if row.notes else text


class _Stop(BaseException):
    """A failure that is not the kernel's answer (a build error, a launch the device refuses): the row stops,
    nothing is shrunk or replayed (a BaseException, which Hypothesis lets through at once)."""


def check_row(rt, spec: OpSpec, variant: str, dtype: str, profile: str = "ci", knobs: dict | None = None,
              refs: References | None = None, device: str = "", fuzz: bool = True, sd: bool = True,
              configs: list | None = None, part: int | None = None) -> Row:
    """Check one variant at one dtype at each knob setting of `configs` (default: [knobs], the declared defaults
    completed by the given ones): Hypothesis-fuzzed cases (examples_per_config), then the SD shapes. The row
    stops at the first setting that fails, and its failure names that setting's knobs. `part`: the setting
    configs[part] alone (the gate spreads a long row's settings over its worker processes, then merge_parts), with
    the profile's examples spread evenly over all the settings."""
    v = spec.variant(variant)
    configs = [v.complete(k) for k in (configs or [knobs])]
    refs = refs if refs is not None else References()
    row = Row("op", spec.name, variant, dtype, device or f"{rt.info['platform']} / {rt.info['device']}")
    row.skipped = skip_reason(rt, spec, v, dtype) or ""
    if row.skipped:
        return row
    if emulates_ptx(rt, v):
        _note(row, "NVIDIA PTX emulated (MMA_EMULATE 1): the tiles' indexing, local-memory races and tails checked, "
                   "not mma.sync, ldmatrix or cp.async themselves")
    t0 = time.perf_counter()
    unfit, fuzzed, source_only = [], 0, 0
    at_source = source_level(rt, spec, v, profile, configs)
    for i, kn in enumerate(configs):
        if part is not None and i != part:
            continue
        # the profile's fuzzed examples spread over the settings still to check (those that launch share it all)
        examples = (examples_per_config(profile, len(configs) - i, fuzzed, default=i == 0) if part is None else
                    examples_per_config(profile, len(configs), default=i == 0)) if fuzz else 0
        with rt.built_with(SOURCE_CHECK_FLAGS if kn in at_source else ()):
            ran, refused = _check_config(rt, spec, v, dtype, profile, kn, refs, row, examples,
                                         sd_cases(spec, v, profile, refs, default=i == 0) if sd else [])
        fuzzed += ran
        source_only += kn in at_source and not refused
        if refused and i > 0:       # a setting other than the default that this device cannot launch: noted
            unfit.append((str(kn), refused))
            row.passed, row.failure = True, ""
            continue
        row.configs += 1
        if not row.passed:
            if len(configs) > 1:
                row.failure = f"knobs {kn}: {row.failure}"
            break
    if source_only:
        _note(row, f"{source_only} knob setting(s) of other devices' tuning tables checked at the source level "
                   f"(built with {' '.join(SOURCE_CHECK_FLAGS)})")
    if unfit:
        _note(row, f"{len(unfit)} knob setting(s) this device cannot launch: {', '.join(k for k, _ in unfit)} "
                   f"(first: {unfit[0][1]})")
    row.seconds = time.perf_counter() - t0
    return row


def merge_parts(parts: list) -> Row:
    """One row from its knob settings checked apart (check_row's `part`, in the settings' order): the cases, settings
    and seconds summed, the worst errors the largest, the failure the first failing setting's (each failing part
    names its knobs), the notes each once. Unlike a row checked in one process, the settings after a failing one
    are checked too."""
    first = parts[0]
    if first.skipped:
        return first
    failed = [p for p in parts if not p.passed]
    notes = dict.fromkeys(n for p in parts for n in p.notes.split("; ") if n)
    return Row(first.kind, first.name, first.variant, first.dtype, first.device,
               cases=sum(p.cases for p in parts), configs=sum(p.configs for p in parts), passed=not failed,
               worst_rel_l2=max(p.worst_rel_l2 for p in parts), worst_max_abs=max(p.worst_max_abs for p in parts),
               worst_ulp=max(p.worst_ulp for p in parts), failure=failed[0].failure if failed else "",
               seconds=sum(p.seconds for p in parts), notes="; ".join(notes))


def _check_config(rt, spec: OpSpec, v: Variant, dtype: str, profile: str, knobs: dict, refs: References, row: Row,
                  examples: int, sd: list) -> tuple:
    """Fold one knob setting's cases into the row: `examples` fuzzed ones, then the SD cases `sd`; returns how many
    fuzzed cases ran (shrink attempts excluded) and why the device refused to launch it ("" if it did not)."""
    from hypothesis import assume, given, reject, settings

    from sdcl.conformance.strategies import cases

    state = {"failed": None, "counting": True, "stop": None, "refused": "", "capped": []}
    before = row.cases

    def one(case: Case) -> Result | None:
        """The case's result; None for a shape whose loops this device would cut short (the launcher refuses it)."""
        if state["stop"]:
            raise _Stop(state["stop"])
        try:
            expected = refs.get(spec, case, dtype)
            return run_case(rt, spec, v.name, knobs, refs.cast(case, dtype), dtype, expected=expected)
        except LoopCapError as e:
            state["capped"].append((cast_case(case, dtype).summary(), str(e)))     # the row's dtype
            return None
        except KernelBuildError as e:
            state["stop"] = f"kernel build failed: {e}"
            raise _Stop(state["stop"]) from None
        except LaunchLimitError as e:
            state["stop"] = state["refused"] = f"launch refused: {e}"
            raise _Stop(state["stop"]) from None
        except Exception as e:  # a launcher that crashes (bad shape handling) is a failure of this case
            return Result(spec.name, v.name, dict(knobs), dtype, case.summary(), False,
                          message=f"{type(e).__name__}: {e}")

    if examples:
        @settings(settings.get_profile(profile), max_examples=examples)
        @given(case=cases(spec, MAX_SIZE.get(profile)))
        def fuzzed(case):
            assume(v.applies is None or v.applies(case.args, case.kwargs))
            res = one(case)
            if res is None:
                reject()
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
    fuzzed = row.cases - before
    if row.passed:
        for case in sd:
            try:
                res = one(case)
                if res is not None:
                    _fold(row, res)
            except _Stop as e:
                row.passed, row.failure = False, str(e)
            if not row.passed:
                break
    if state["capped"]:
        shapes = sorted({c for c, _ in state["capped"]})
        _note(row, f"knobs {knobs}: {len(shapes)} shape(s) not run, refused by the launcher: {', '.join(shapes[:3])}"
              + (f" and {len(shapes) - 3} more" if len(shapes) > 3 else "") + f" ({state['capped'][0][1]})")
    return fuzzed, state["refused"]
