"""The coverage matrix of several gate reports: every row (op x variant x dtype, and the model checks) against each
device and profile the reports ran on (`sdcl report merge`, docs/CONFORMANCE.md).

A column is one device and profile. Reports of the same device and profile (a run split over several calls, a
rerun) fill one column; a row in two of them keeps the worse verdict (FAIL over pass over skip), and between two of
the same verdict the one with more cases. Cells: "pass N" (cases; "xK knobs" when K > 1 settings were checked),
"FAIL <the failure's first words>", "skip: <the reason in a few words> [n]" (footnote n: the whole reason), "-"
where no report of the column has the row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from sdcl.errors import BadInput

_RANK = {"skip": 0, "pass": 1, "FAIL": 2}
_FIELDS = ("kind", "name", "variant", "dtype", "verdict")
_PLATFORMS = {"Portable Computing Language": "PoCL"}   # shorter column labels


@dataclass
class Report:
    path: Path
    device: str
    profile: str
    rows: list          # report.json's row objects


def load_report(path: str | Path) -> Report:
    """One report.json as `sdcl conformance` writes it (conformance/report.py); BadInput naming the file if it is
    not valid JSON or not a gate report."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a conformance report (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: not a conformance report: corrupt JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) \
            or not all(isinstance(data.get(k), str) for k in ("device", "profile")):
        raise BadInput(f"{path}: not an sdcl conformance report (it needs \"device\", \"profile\" and \"rows\", as "
                       "`sdcl conformance` writes them)")
    for i, row in enumerate(data["rows"]):
        missing = [k for k in _FIELDS if not isinstance(row, dict) or not isinstance(row.get(k), str)]
        if missing or row["verdict"] not in _RANK:
            what = f"lacks {', '.join(missing)}" if missing else f"has verdict {row['verdict']!r}"
            raise BadInput(f"{path}: not an sdcl conformance report (row {i} {what})")
    return Report(path, data["device"], data["profile"], data["rows"])


def find_reports(folder: Path, skip: Path | None = None) -> list:
    """The report.json files under `folder` (itself included), hidden folders and `skip` left out, sorted."""
    skip = skip.resolve() if skip is not None else None
    out = []
    for p in sorted(Path(folder).rglob("report.json")):
        parts = p.relative_to(folder).parts[:-1]
        if any(s.startswith(".") for s in parts) or (skip is not None and skip in p.resolve().parents):
            continue
        out.append(p)
    return out


def _key(row: dict) -> tuple:
    return row["kind"], row["name"], row["variant"], row["dtype"]


@dataclass
class Column:
    device: str
    profile: str
    reports: list = field(default_factory=list)     # paths
    rows: dict = field(default_factory=dict)        # key -> (row, report path)

    @property
    def label(self) -> str:
        platform, _, name = self.device.partition(" / ")
        short = f"{_PLATFORMS.get(platform, platform)} / {name}" if name else self.device
        return f"{short}, {self.profile}"

    def add(self, report: Report) -> None:
        self.reports.append(report.path)
        for row in report.rows:
            old = self.rows.get(_key(row))
            if old is None or _worse(row, old[0]):
                self.rows[_key(row)] = (row, report.path)


def _worse(new: dict, old: dict) -> bool:
    """Whether `new` replaces `old`: a worse verdict (FAIL over pass over skip), or the same with more cases."""
    a, b = _RANK[new["verdict"]], _RANK[old["verdict"]]
    return a > b or (a == b and (new.get("cases") or 0) > (old.get("cases") or 0))


@dataclass
class Matrix:
    columns: list
    keys: list                                      # row keys, ops in registry order, then the model checks
    reasons: list = field(default_factory=list)     # distinct skip reasons; footnote n is reasons[n - 1]


def merge(reports: list) -> Matrix:
    """The matrix of these reports: a column per (device, profile) in the order met, every row of any of them."""
    columns: dict = {}
    for r in reports:
        columns.setdefault((r.device, r.profile), Column(r.device, r.profile)).add(r)
    keys = list(dict.fromkeys(k for c in columns.values() for k in c.rows))
    keys.sort(key=_order(keys))
    reasons = list(dict.fromkeys(row.get("skipped") or "?" for k in keys for c in columns.values()
                                 for row, _ in [c.rows.get(k, ({}, None))] if row.get("verdict") == "skip"))
    return Matrix(list(columns.values()), keys, reasons)


def _order(keys: list):
    """Sort key: op rows in registry order (op, variant, dtype), ops it does not know after them, then the
    model checks; otherwise in the order first met."""
    from sdcl.registry import DTYPES, REGISTRY
    ops = list(REGISTRY)
    first = {k: i for i, k in enumerate(keys)}

    def key(k: tuple) -> tuple:
        kind, name, variant, dtype = k
        if kind != "op":
            return (2, first[k])
        if name not in REGISTRY:
            return (1, first[k])
        variants = [v.name for v in REGISTRY[name].variants]
        return (0, ops.index(name), variants.index(variant) if variant in variants else len(variants),
                DTYPES.index(dtype) if dtype in DTYPES else len(DTYPES), first[k])
    return key


# --- cells ---------------------------------------------------------------------------------------------------------

_SHORT = [(re.compile(r"implements (.+) only"), r"\1 only"),
          (re.compile(r"\bno fp64\b"), "no fp64"),
          (re.compile(r"device lacks (\w+)"), r"no \1")]


def short_reason(reason: str, words: int = 4) -> str:
    """A skip reason in a few words: "matmul mma_tf32 implements float32 only" -> "float32 only", "device lacks
    nvidia_ptx (...)" -> "no nvidia_ptx"; otherwise its first words without parentheses."""
    for pattern, repl in _SHORT:
        m = pattern.search(reason)
        if m:
            return m.expand(repl)
    plain = re.sub(r"\s*\([^)]*\)", "", reason).split()
    return " ".join(plain[:words]) + (" ..." if len(plain) > words else "")


def short_failure(text: str, chars: int = 60) -> str:
    line = " ".join((text or "failed").split())
    return line if len(line) <= chars else line[:chars - 3].rstrip() + "..."


def cell(row: dict | None, reasons: list) -> str:
    if row is None:
        return "-"
    if row["verdict"] == "skip":
        reason = row.get("skipped") or "?"
        return f"skip: {short_reason(reason)} [{reasons.index(reason) + 1}]"
    if row["verdict"] == "FAIL":
        return f"FAIL {short_failure(row.get('failure', ''))}"
    knobs = f" x{row['configs']} knobs" if (row.get("configs") or 0) > 1 else ""
    noted = " (notes)" if row.get("notes") else ""       # e.g. shapes or knob settings this device cannot run
    return f"pass {row.get('cases', 0)}{knobs}{noted}"


def totals(matrix: Matrix, column: Column) -> dict:
    rows = [row for row, _ in column.rows.values()]
    count = {v: sum(r["verdict"] == v for r in rows) for v in _RANK}
    return {"rows": len(rows), "pass": count["pass"], "FAIL": count["FAIL"], "skip": count["skip"],
            "missing": len(matrix.keys) - len(rows),
            "cases": sum(r.get("cases") or 0 for r in rows if r["verdict"] != "skip")}


# --- the two files -------------------------------------------------------------------------------------------------

def to_json(matrix: Matrix) -> dict:
    cols = [{"label": c.label, "device": c.device, "profile": c.profile, "reports": [str(p) for p in c.reports],
             "totals": totals(matrix, c)} for c in matrix.columns]
    rows = []
    for k in matrix.keys:
        cells = []
        for c in matrix.columns:
            row, src = c.rows.get(k, (None, None))
            cells.append(None if row is None else {
                "text": cell(row, matrix.reasons), "verdict": row["verdict"], "cases": row.get("cases", 0),
                "configs": row.get("configs", 0), "reason": row.get("skipped", ""), "failure": row.get("failure", ""),
                "notes": row.get("notes", ""), "metric": row.get("metric", ""), "report": str(src)})
        rows.append(dict(zip(("kind", "name", "variant", "dtype"), k), cells=cells))
    return {"columns": cols, "rows": rows, "skip_reasons": matrix.reasons}


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def to_markdown(matrix: Matrix) -> str:
    labels = [_md(c.label) for c in matrix.columns]
    lines = ["# Conformance coverage", "",
             ("Each cell: the row's verdict and the cases it ran (\"xK knobs\": at K knob settings), \"FAIL\" with "
              "the start of its failure, \"skip\" with its reason in short (the whole reason below, by footnote), "
              "\"-\" where no report of that column has the row; \"(notes)\": what the row left out or checked another way, under \"Notes\". Made by `sdcl report merge` from:"), ""]
    lines += [f"- **{label}**: " + ", ".join(f"`{p}`" for p in c.reports) for label, c in zip(labels, matrix.columns)]
    for title, kind in (("Ops", "op"), ("Model checks", "model")):
        keys = [k for k in matrix.keys if (k[0] == "op") == (kind == "op")]
        if not keys:
            continue
        head = "op" if kind == "op" else "check"
        lines += ["", f"## {title}", "", f"| {head} | variant | dtype | " + " | ".join(labels) + " |",
                  "|---|---|---|" + "---|" * len(labels)]
        for k in keys:
            lines.append(f"| {_md(k[1])} | {_md(k[2])} | {_md(k[3])} | "
                         + " | ".join(_md(cell(c.rows.get(k, (None,))[0], matrix.reasons)) for c in matrix.columns)
                         + " |")
    lines += ["", "## Totals", "", "| column | rows | pass | FAIL | skip | not in its reports | cases run |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, c in zip(labels, matrix.columns):
        t = totals(matrix, c)
        lines.append(f"| {label} | {t['rows']} | {t['pass']} | {t['FAIL']} | {t['skip']} | {t['missing']} | "
                     f"{t['cases']} |")
    if matrix.reasons:
        lines += ["", "## Skip reasons", ""] + [f"{i}. {_md(r)}" for i, r in enumerate(matrix.reasons, 1)]
    failed = [(label, k, row) for label, c in zip(labels, matrix.columns) for k in matrix.keys
              for row in [c.rows.get(k, (None,))[0]] if row and row["verdict"] == "FAIL"]
    if failed:
        lines += ["", "## Failures", ""] + [f"- {label}: {k[1]} {k[2]} {k[3]}: {_md(row.get('failure', ''))}"
                                            for label, k, row in failed]
    noted = [(label, k, row) for label, c in zip(labels, matrix.columns) for k in matrix.keys
             for row in [c.rows.get(k, (None,))[0]] if row and row.get("notes")]
    if noted:
        lines += ["", "## Notes", ""] + [f"- {label}: {k[1]} {k[2]} {k[3]}: {_md(row['notes'])}"
                                         for label, k, row in noted]
    return "\n".join(lines) + "\n"
