"""The conformance gate: every registry op and variant, the model layers and the tiny pipeline on one device.

Writes report.json, junit.xml and report.md (op x variant x device: cases run, worst error, verdict; coverage,
and every skip with its reason) into the report folder; returns non-zero when anything failed.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conformance.check import Result, run_case
from conformance.registry import REGISTRY, OpSpec


@dataclass
class Row:
    """One line of the report: an op variant (or a model check) at one dtype on one device."""

    kind: str            # "op" or "model"
    name: str            # op name or model check name
    variant: str
    dtype: str
    device: str
    cases: int = 0
    passed: bool = True
    skipped: str = ""    # the reason, when skipped
    worst_rel_l2: float = 0.0
    worst_max_abs: float = 0.0
    worst_ulp: float = 0.0
    metric: str = ""     # model checks: e.g. "PSNR 62.1 dB"
    failure: str = ""
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return "skip" if self.skipped else ("pass" if self.passed else "FAIL")


def _fold(row: Row, res: Result) -> None:
    row.cases += 1
    row.worst_rel_l2 = max(row.worst_rel_l2, res.rel_l2)
    row.worst_max_abs = max(row.worst_max_abs, res.max_abs)
    row.worst_ulp = max(row.worst_ulp, res.max_ulp)
    if not res.passed and row.passed:
        row.passed = False
        row.failure = f"{res.case}: {res.message}"


def check_op(rt, spec: OpSpec, variant: str, dtype: str, profile: str, device: str) -> Row:
    """Fuzz one variant with the Hypothesis profile, then its SD shapes; shrink and record the first failure."""
    from hypothesis import assume, given, settings

    from conformance import profiles

    row = Row("op", spec.name, variant, dtype, device)
    v = spec.variant(variant)
    if dtype == "float64" and not rt.info["fp64"]:
        row.skipped = "device has no fp64 (cl_khr_fp64)"
        return row
    missing = [n for n in v.needs if not rt.info.get(n)]
    if missing:
        row.skipped = f"device lacks {', '.join(missing)}"
        return row
    t0 = time.perf_counter()
    last_failure: list = []

    @settings(settings.get_profile(profile))
    @given(case=spec.strategy())
    def fuzz(case):
        assume(v.applies is None or v.applies(case.args, case.kwargs))
        res = run_case(rt, spec, variant, v.knobs, case, dtype)
        _fold(row, res)
        if not res.passed:
            last_failure[:] = [res]
            raise AssertionError(res.message)

    try:
        fuzz()
    except AssertionError:
        # Hypothesis re-runs the minimal example last: report that one.
        row.passed = False
        if last_failure:
            row.failure = f"minimal failing case {last_failure[0].case}: {last_failure[0].message}"
    except Exception as e:  # a launcher that crashes (bad shape handling, build error) is a failure too
        row.passed = False
        row.failure = f"{type(e).__name__}: {e}"
    cases = [c for c in spec.sd_cases() if v.applies is None or v.applies(c.args, c.kwargs)]
    if profile == "ci":
        cases = [c for c in cases if spec.flops(c) <= profiles.CI_SD_FLOP_LIMIT]
    for case in cases:
        try:
            _fold(row, run_case(rt, spec, variant, v.knobs, case, dtype))
        except Exception as e:
            row.passed = False
            row.failure = row.failure or f"{case.summary()}: {type(e).__name__}: {e}"
    row.seconds = time.perf_counter() - t0
    return row


def write_reports(rows: list, folder: Path, device: str, profile: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(
        {"device": device, "profile": profile, "rows": [dict(r.__dict__, verdict=r.verdict) for r in rows]},
        indent=2))

    suite = ET.Element("testsuite", name=f"sdcl-conformance[{device}]", tests=str(len(rows)),
                       failures=str(sum(r.verdict == "FAIL" for r in rows)),
                       skipped=str(sum(r.verdict == "skip" for r in rows)))
    for r in rows:
        tc = ET.SubElement(suite, "testcase", classname=f"{r.kind}.{r.name}", name=f"{r.variant}[{r.dtype}]",
                           time=f"{r.seconds:.3f}")
        if r.verdict == "FAIL":
            ET.SubElement(tc, "failure", message=r.failure[:500]).text = r.failure
        elif r.verdict == "skip":
            ET.SubElement(tc, "skipped", message=r.skipped)
    ET.ElementTree(suite).write(folder / "junit.xml", encoding="utf-8", xml_declaration=True)

    lines = [f"# sdcl conformance: {device}", "", f"Hypothesis profile `{profile}`.", "",
             "| kind | name | variant | dtype | cases | worst rel L2 | worst max abs | worst ulp | metric | verdict |",
             "|---|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r.kind} | {r.name} | {r.variant} | {r.dtype} | {r.cases} | {r.worst_rel_l2:.2e} | "
                     f"{r.worst_max_abs:.2e} | {r.worst_ulp:.1f} | {r.metric} | {r.verdict} |")
    ran = [r for r in rows if r.verdict != "skip"]
    lines += ["", "## Coverage", "",
              f"{len(ran)} of {len(rows)} rows ran on {device}; "
              f"ops covered: {len({r.name for r in ran if r.kind == 'op'})} of {len(REGISTRY)}.", ""]
    skipped = [r for r in rows if r.verdict == "skip"]
    if skipped:
        lines += ["Skipped, with the reason:", ""] + [f"- {r.kind} {r.name} {r.variant} {r.dtype}: {r.skipped}"
                                                    for r in skipped] + [""]
    failed = [r for r in rows if r.verdict == "FAIL"]
    if failed:
        lines += ["## Failures", ""] + [f"- {r.name} {r.variant} {r.dtype}: {r.failure}" for r in failed] + [""]
    (folder / "report.md").write_text("\n".join(lines))


def _policy_row(rt, device: str) -> Row:
    """An informational row: which non-naive variants the model checks ran through."""
    used = sorted({f"{op}:{v}" for (op, _), (v, _) in rt.policy.choices.items()})
    return Row("model", "variants used by the model checks", "policy", "-", device, cases=len(used),
               metric=", ".join(used))


def main(args) -> int:
    from opencl_impl.runtime import Runtime, device_key, select_device

    import conformance.profiles  # noqa: F401  (registers the profiles)

    rt = Runtime(select_device(args.device))
    device = f"{rt.info['platform']} / {rt.info['device']}"
    names = args.ops.split(",") if args.ops else list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; the registry has {list(REGISTRY)}")
    rows = []
    print(f"conformance on {device_key(rt.device)}, profile {args.profile}")
    for name in names:
        spec = REGISTRY[name]
        for v in spec.variants:
            for dtype in ("float32", "float64"):
                row = check_op(rt, spec, v.name, dtype, args.profile, device)
                rows.append(row)
                print(f"  {row.verdict:4} op {name:20} {v.name:16} {dtype:8} {row.cases:4} cases "
                      f"rel_l2 {row.worst_rel_l2:.1e}  {row.seconds:6.1f} s  {row.skipped or row.failure[:120]}")
    if not args.skip_models:
        from conformance.models import check_models
        from opencl_impl.selection import Policy, load_db
        # the models run as a user's pipeline runs them: with the device's selection policy (tuned database)
        rt.policy = Policy(load_db(rt.info), info=rt.info)
        for row in check_models(rt, device, args.profile):
            rows.append(row)
            print(f"  {row.verdict:4} model {row.name:40} {row.dtype:8} {row.metric}  {row.failure[:160]}")
        rows.append(_policy_row(rt, device))
        rt.policy = None
    folder = Path(args.report)
    write_reports(rows, folder, device, args.profile)
    failed = [r for r in rows if r.verdict == "FAIL"]
    print(f"{len(rows) - len(failed)} passed or skipped, {len(failed)} failed; "
          f"report in {folder}/report.md, report.json, junit.xml")
    return 1 if failed else 0
