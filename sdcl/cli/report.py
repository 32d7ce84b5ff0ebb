"""`sdcl report merge DIR... [--out DIR]`: the gate reports and benchmark histories of several machines as one
coverage matrix (sdcl.conformance.coverage) and one dashboard (sdcl.perf.dashboard). docs/CONFORMANCE.md, docs/PERF.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdcl.cli.checks import nonempty
from sdcl.errors import BadInput


def add_parser(sub, parents) -> None:
    rp = sub.add_parser("report", parents=parents, help="merge the gate reports and benchmark histories of several "
                                                         "machines")
    rsub = rp.add_subparsers(dest="report_command", required=True, metavar="COMMAND", parser_class=sub._parser_class)
    m = rsub.add_parser("merge", parents=parents,
                        help="one coverage matrix (op x variant x dtype against each device and profile) from every "
                             "report.json, and one dashboard from every history (*.sqlite, *.sqlite.gz), found "
                             "under the folders given")
    m.add_argument("folders", nargs="+", type=nonempty, metavar="DIR",
                   help="folders searched for report.json and history files (a file of either kind is taken as it is)")
    m.add_argument("--out", default="merged-report", type=nonempty,
                   help="output folder: coverage-matrix.md, coverage-matrix.json, dashboard/ (default: merged-report)")
    m.set_defaults(run=run_merge)


def _found(folders: list, out: Path) -> tuple:
    """(report.json files, history files) under the folders; BadInput for a folder that is missing or holds
    neither."""
    from sdcl.conformance.coverage import find_reports
    from sdcl.perf.history import find_histories

    reports, histories = [], []
    for name in folders:
        path = Path(name)
        if path.is_file():
            if path.name.endswith((".sqlite", ".sqlite.gz")):
                histories.append(path)
            elif path.suffix == ".json":
                reports.append(path)
            else:
                raise BadInput(f"{path}: neither a folder nor a report.json or history (.sqlite, .sqlite.gz) file")
            continue
        if not path.is_dir():
            raise BadInput(f"{path}: no such folder")
        r, h = find_reports(path, skip=out), find_histories(path, skip=out)
        if not r and not h:
            raise BadInput(f"{path}: no report.json and no benchmark history (.sqlite, .sqlite.gz) in it",
                           hint="give folders that hold `sdcl conformance --report` folders or history files")
        reports += r
        histories += h
    return list(dict.fromkeys(reports)), list(dict.fromkeys(histories))


def merge(folders: list, out: str | Path) -> dict:
    """Write the merged matrix and dashboard into `out`; returns what was written and merged. Every input is read
    and checked before anything is written."""
    from sdcl.conformance import coverage
    from sdcl.files import write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a folder")
    report_files, histories = _found(folders, out)
    matrix = coverage.merge([coverage.load_report(p) for p in report_files]) if report_files else None
    written = []
    if histories:                     # checks every history before it writes, and writes atomically
        from sdcl.perf.dashboard import build
        written.append(build(histories, out / "dashboard")[0])
    if matrix is not None:
        written.append(write_text(out / "coverage-matrix.json", json.dumps(coverage.to_json(matrix), indent=2)))
        written.append(write_text(out / "coverage-matrix.md", coverage.to_markdown(matrix)))
    return {"written": written, "reports": report_files, "histories": histories, "matrix": matrix}


def run_merge(args) -> int:
    from sdcl.conformance.coverage import totals

    done = merge(args.folders, args.out)
    matrix = done["matrix"]
    if matrix is not None:
        print(f"{len(done['reports'])} report(s), {len(matrix.columns)} column(s), {len(matrix.keys)} rows:")
        for c in matrix.columns:
            t = totals(matrix, c)
            print(f"  {c.label}: {t['pass']} pass, {t['FAIL']} FAIL, {t['skip']} skip, {t['missing']} not run, "
                  f"{t['cases']} cases")
    if done["histories"]:
        print(f"{len(done['histories'])} benchmark histor{'y' if len(done['histories']) == 1 else 'ies'} merged")
    print("wrote " + ", ".join(str(p) for p in done["written"]))
    return 0
