"""The conformance gate: every registry op and variant, the model layers and the tiny pipeline on one device.

Writes report.json, junit.xml and report.md (op x variant x device: cases run, worst error, verdict; coverage,
and every skip with its reason) into the report folder as rows finish, so a run that is stopped keeps what it
found; returns non-zero when anything failed.
"""

from __future__ import annotations

import time
from pathlib import Path

from sdcl.conformance.report import Row, write_reports
from sdcl.conformance.runner import References, check_row
from sdcl.registry import DTYPES, REGISTRY


def _policy_row(rt, device: str) -> Row:
    """An informational row: which non-naive variants the model checks ran through."""
    used = sorted({f"{op}:{v}" for (op, _), (v, _) in rt.policy.choices.items()})
    return Row("model", "variants used by the model checks", "policy", "-", device, cases=len(used),
               metric=", ".join(used))


def _line(row: Row) -> str:
    if row.kind == "op":
        return (f"  {row.verdict:4} op {row.name:20} {row.variant:16} {row.dtype:8} {row.cases:4} cases "
                f"rel_l2 {row.worst_rel_l2:.1e}  {row.seconds:6.1f} s  {row.skipped or row.failure[:120]}")
    return f"  {row.verdict:4} model {row.name:40} {row.dtype:8} {row.metric or row.skipped}  {row.failure[:160]}"


def run(rt, ops: list, profile: str, folder: Path, skip_models: bool = False, log=print) -> list:
    """Every row of these ops (then the model checks) on rt's device; the reports rewritten after each row."""
    from sdcl.opencl_impl.selection import policy_for

    device = f"{rt.info['platform']} / {rt.info['device']}"
    refs = References()
    rows: list = []
    t0 = time.perf_counter()
    total = sum(len(REGISTRY[n].variants) for n in ops) * len(DTYPES)

    def add(row: Row) -> None:
        rows.append(row)
        done = sum(r.kind == "op" for r in rows)
        log(f"[{done}/{total} op rows, {time.perf_counter() - t0:5.0f} s]" + _line(row) if row.kind == "op"
            else f"[{time.perf_counter() - t0:5.0f} s]" + _line(row))
        write_reports(rows, folder, device, profile)

    for name in ops:
        spec = REGISTRY[name]
        for v in spec.variants:
            for dtype in DTYPES:
                add(check_row(rt, spec, v.name, dtype, profile, refs=refs, device=device))
    if not skip_models:
        from sdcl.conformance.models import check_models
        # the models run as a user's pipeline runs them: with the device's selection policy (tuning table)
        saved, rt.policy = rt.policy, policy_for(rt)
        try:
            for row in check_models(rt, device, profile):
                add(row)
            add(_policy_row(rt, device))
        finally:
            rt.policy = saved
    return rows


def main(args) -> int:
    from sdcl.opencl_impl.devices import device_key, select_device
    from sdcl.opencl_impl.runtime import Runtime

    import sdcl.conformance.profiles  # noqa: F401  (registers the profiles)

    names = args.ops.split(",") if args.ops else list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; the registry has {list(REGISTRY)}")
    rt = Runtime(select_device(args.device))
    folder = Path(args.report)
    print(f"conformance on {device_key(rt.device)}, profile {args.profile}; reports in {folder}/", flush=True)
    rows = run(rt, names, args.profile, folder, args.skip_models, log=lambda s: print(s, flush=True))
    failed = [r for r in rows if r.verdict == "FAIL"]
    print(f"{len(rows) - len(failed)} passed or skipped, {len(failed)} failed; "
          f"report in {folder}/report.md, report.json, junit.xml")
    return 1 if failed else 0
