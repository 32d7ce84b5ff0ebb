"""The gate's rows and its three reports: report.json (every row), junit.xml (CI systems), report.md (people)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from sdcl.files import write_bytes, write_text
from sdcl.registry import REGISTRY


@dataclass
class Row:
    """One line of the report: an op variant (or a model check) at one dtype on one device."""

    kind: str            # "op" or "model"
    name: str            # op name or model check name
    variant: str
    dtype: str
    device: str
    cases: int = 0
    configs: int = 0     # knob settings checked (up to the one that failed)
    passed: bool = True
    skipped: str = ""    # the reason, when skipped
    worst_rel_l2: float = 0.0
    worst_max_abs: float = 0.0
    worst_ulp: float = 0.0
    metric: str = ""     # model checks: e.g. "PSNR 62.1 dB"
    failure: str = ""
    seconds: float = 0.0
    notes: str = ""      # e.g. knob settings this device cannot launch

    @property
    def verdict(self) -> str:
        return "skip" if self.skipped else ("pass" if self.passed else "FAIL")


def write_reports(rows: list, folder: Path, device: str, profile: str) -> None:
    """The three reports of these rows, each written atomically (a gate writes them again as rows finish)."""
    folder = Path(folder)
    write_text(folder / "report.json", json.dumps(
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
    write_bytes(folder / "junit.xml", ET.tostring(suite, encoding="utf-8", xml_declaration=True))

    lines = [f"# sdcl conformance: {device}", "", f"Hypothesis profile `{profile}`.", "",
             "| kind | name | variant | dtype | knob settings | cases | worst rel L2 | worst max abs | worst ulp | metric "
             "| verdict |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r.kind} | {r.name} | {r.variant} | {r.dtype} | {r.configs or ''} | {r.cases} | "
                     f"{r.worst_rel_l2:.2e} | {r.worst_max_abs:.2e} | {r.worst_ulp:.1f} | {r.metric} | {r.verdict} |")
    ran = [r for r in rows if r.verdict != "skip"]
    lines += ["", "## Coverage", "",
              f"{len(ran)} of {len(rows)} rows ran on {device}; "
              f"ops covered: {len({r.name for r in ran if r.kind == 'op'})} of {len(REGISTRY)}.", ""]
    skipped = [r for r in rows if r.verdict == "skip"]
    if skipped:
        lines += ["Skipped, with the reason:", ""] + [f"- {r.kind} {r.name} {r.variant} {r.dtype}: {r.skipped}"
                                                    for r in skipped] + [""]
    noted = [r for r in rows if r.notes]
    if noted:
        lines += ["Notes:", ""] + [f"- {r.name} {r.variant} {r.dtype}: {r.notes}" for r in noted] + [""]
    failed = [r for r in rows if r.verdict == "FAIL"]
    if failed:
        lines += ["## Failures", ""] + [f"- {r.name} {r.variant} {r.dtype}: {r.failure}" for r in failed] + [""]
    write_text(folder / "report.md", "\n".join(lines))
