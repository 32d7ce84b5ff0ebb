"""`sdcl report merge` on reports the gate itself wrote on the default device: a run split over two calls (silu,
then gelu) and a run under another profile (matmul under `oclgrind`, with its skipped rows), plus a report of a
planted silu failure written by the runner's own writer (check_row, write_reports). The merged matrix must hold
every row as its report says, in one column per device and profile, the planted FAIL over the gate's pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sdcl.resources import kernel_dir

from test_perf_dashboard import _has_device


pytestmark = pytest.mark.skipif(not _has_device(), reason="no OpenCL device (install pocl-opencl-icd)")

SILU = "if (i < n) STORE(y, i, SILU(LOAD(x, i)));"


def _sdcl(*args, cwd) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "sdcl.cli", *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ), check=False)
    assert res.returncode == 0, res.stderr
    return res


def _planted_report(tmp_path) -> None:
    """silu naive float32 computing 1% too much, checked by the runner and written by the gate's writer."""
    from sdcl.conformance.gate import device_name
    from sdcl.conformance.report import write_reports
    from sdcl.conformance.runner import check_row
    from sdcl.opencl_impl.devices import select_device
    from sdcl.opencl_impl.runtime import Runtime
    from sdcl.registry import REGISTRY

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    src = (kernel_dir() / "elementwise.cl").read_text()
    assert SILU in src
    (overlay / "elementwise.cl").write_text(src.replace(SILU, "if (i < n) STORE(y, i, SILU(LOAD(x, i)) * (REAL)1.01);"))
    rt = Runtime(select_device(None), kernel_path=(overlay, kernel_dir()))
    row = check_row(rt, REGISTRY["silu"], "naive", "float32", "ci", sd=False)
    assert row.verdict == "FAIL", row
    write_reports([row], tmp_path / "pocl" / "planted", device_name(None), "ci")


def test_gate_reports_merge_as_each_report_says(tmp_path):
    gate = ["conformance", "--skip-models", "--jobs", "1"]
    _sdcl(*gate, "--ops", "silu", "--report", tmp_path / "pocl" / "call1", cwd=tmp_path)
    _sdcl(*gate, "--ops", "gelu", "--report", tmp_path / "pocl" / "call2", cwd=tmp_path)
    _sdcl(*gate, "--ops", "matmul", "--profile", "oclgrind", "--report", tmp_path / "tiny", cwd=tmp_path)
    _planted_report(tmp_path)
    res = _sdcl("report", "merge", tmp_path / "pocl", tmp_path / "tiny", "--out", tmp_path / "merged", cwd=tmp_path)
    assert "4 report(s), 2 column(s)" in res.stdout

    merged = json.loads((tmp_path / "merged" / "coverage-matrix.json").read_text())
    md = (tmp_path / "merged" / "coverage-matrix.md").read_text()
    columns = [(c["device"], c["profile"]) for c in merged["columns"]]
    cells = {(x["kind"], x["name"], x["variant"], x["dtype"]): x["cells"] for x in merged["rows"]}
    skips = 0
    for path in sorted(tmp_path.glob("*/**/report.json")):
        if "merged" in path.parts:
            continue
        report = json.loads(path.read_text())
        i = columns.index((report["device"], report["profile"]))
        for r in report["rows"]:
            cell = cells[(r["kind"], r["name"], r["variant"], r["dtype"])][i]
            if (r["name"], r["variant"], r["dtype"]) == ("silu", "naive", "float32"):
                assert cell["verdict"] == "FAIL"          # the planted failure outranks the gate's pass
                continue
            assert (cell["verdict"], cell["cases"], cell["configs"]) == (r["verdict"], r["cases"], r["configs"])
            if r["verdict"] == "skip":
                skips += 1
                n = merged["skip_reasons"].index(r["skipped"]) + 1
                assert cell["text"].startswith("skip: ") and cell["text"].endswith(f"[{n}]")
                assert f"\n{n}. {r['skipped']}\n" in md
            else:
                knobs = f" x{r['configs']} knobs" if r["configs"] > 1 else ""
                assert f"| {r['name']} | {r['variant']} | {r['dtype']} |" in md
                noted = " (notes)" if r["notes"] else ""       # e.g. settings checked at the source level
                assert cell["text"] == f"pass {r['cases']}{knobs}{noted}"
    assert skips >= 2            # matmul mma_tf32: no NVIDIA PTX here, and float32 only
    line = next(x for x in md.splitlines() if x.startswith("| silu | naive | float32 |"))
    assert line.split(" | ")[3].startswith("FAIL ") and line.endswith("| - |")   # no silu row under oclgrind
