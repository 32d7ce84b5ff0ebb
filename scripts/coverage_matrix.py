"""The conformance coverage matrix: op x variant x dtype against the devices of several gate reports.

    python scripts/coverage_matrix.py "PoCL, ci"=conformance-report/report.json "H200, thorough"=a.json,b.json > m.md

Each column is one device and profile, from one or more report.json files (a run split over several calls); a cell
is the row's verdict and its case count (and knob settings when more than one), "-" where no report has the row.
"""

from __future__ import annotations

import json
import sys


def load(paths: str) -> dict:
    rows = {}
    for p in paths.split(","):
        for r in json.load(open(p))["rows"]:
            if r["kind"] == "op":
                rows[(r["name"], r["variant"], r["dtype"])] = r
    return rows


def cell(r: dict | None) -> str:
    if r is None:
        return "-"
    if r["verdict"] == "skip":
        return "skip"
    knobs = f" x{r['configs']} knobs" if r.get("configs", 0) > 1 else ""
    return f"{r['verdict']} {r['cases']}{knobs}"


def main(argv: list) -> str:
    columns = [(a.split("=", 1)[0], load(a.split("=", 1)[1])) for a in argv]
    keys = list(dict.fromkeys(k for _, rows in columns for k in rows))
    lines = ["| op | variant | dtype | " + " | ".join(name for name, _ in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for op, variant, dtype in keys:
        lines.append(f"| {op} | {variant} | {dtype} | "
                     + " | ".join(cell(rows.get((op, variant, dtype))) for _, rows in columns) + " |")
    totals = []
    for name, rows in columns:
        ran = [r for r in rows.values() if r["verdict"] != "skip"]
        totals.append(f"- {name}: {len(rows)} rows, {len(ran)} ran, "
                      f"{sum(r['verdict'] == 'FAIL' for r in ran)} failed, {sum(r['cases'] for r in ran)} cases")
    return "\n".join(lines + [""] + totals) + "\n"


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]))
