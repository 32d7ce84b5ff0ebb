"""The gate as a pytest plugin (sdcl.conformance.pytest_plugin), run as another repository would run it: pytest in
an empty folder with `--sdcl`, over pytest-xdist workers. Its rows are the gate's rows: the same verdicts as
`sdcl conformance` on the same ops, in report.json, and in pytest's own JUnit file; the example plugin's planted
twin fails with op and variant named; a row the device cannot run is a skipped test with the reason; without
`--sdcl` it adds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from test_cli_errors import sdcl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLUGINS = os.pathsep.join(str(EXAMPLES / p) for p in ("sdcl-vecops/sdcl_vecops",
                                                       "sdcl-vecops-planted/sdcl_vecops_planted"))

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ is not beside these tests")


def pytest_run(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})


def verdicts(report: Path) -> dict:
    return {(r["name"], r["variant"], r["dtype"]): r["verdict"]
            for r in json.loads(report.read_text())["rows"] if r["kind"] == "op"}


def test_the_rows_are_the_gates_rows_over_xdist_workers(tmp_path):
    env = {"SDCL_PLUGINS": PLUGINS}
    res = pytest_run("--sdcl", "--sdcl-ops", "add", "--sdcl-skip-models", "--sdcl-report", tmp_path / "py",
                     "--junitxml", tmp_path / "junit.xml", "-n", "2", cwd=tmp_path, env=env)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    gate = sdcl("conformance", "--ops", "add", "--skip-models", "--report", tmp_path / "cli", cwd=tmp_path, env=env)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    ours, theirs = verdicts(tmp_path / "py" / "report.json"), verdicts(tmp_path / "cli" / "report.json")
    assert ours == theirs and len(ours) == 7      # add naive in float16 too
    assert {k for k, v in ours.items() if v == "FAIL"} == {("add", "vec_planted", d) for d in ("float32", "float64")}
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    assert failed == {"add:vec_planted:float32", "add:vec_planted:float64"}, cases.keys()
    assert "add vec_planted float32" in res.stdout        # the failure text names op, variant and dtype


def test_a_row_the_device_cannot_run_is_skipped_with_its_reason(tmp_path, rt):
    if rt.info.get("nvidia_ptx"):
        pytest.skip("this device runs mma_tf32")
    res = pytest_run("--sdcl", "--sdcl-ops", "matmul", "--sdcl-skip-models", "-k", "mma_tf32 and float32", "-rs",
                     cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "1 skipped" in res.stdout and "nvidia_ptx" in res.stdout, res.stdout[-3000:]


def test_without_the_flag_it_adds_nothing(tmp_path):
    res = pytest_run("--collect-only", "-q", cwd=tmp_path)
    assert res.returncode == 5, res.stdout        # pytest's "no tests collected"


def _has_rusticl() -> bool:
    try:
        import pyopencl as cl
        return any(p.name == "rusticl" for p in cl.get_platforms())
    except Exception:
        return False


@pytest.mark.skipif(not _has_rusticl(), reason="Mesa's rusticl is not installed (apt-get install mesa-opencl-icd)")
def test_rows_spread_over_two_devices_each_with_its_report(tmp_path):
    res = pytest_run("--sdcl", "--sdcl-device", "portable,rusticl", "--sdcl-ops", "silu", "--sdcl-skip-models",
                     "--sdcl-report", tmp_path / "r", "-n", "2", cwd=tmp_path, env={"RUSTICL_ENABLE": "llvmpipe"})
    assert res.returncode == 0, res.stdout[-3000:]
    pocl, rusticl = (json.loads((tmp_path / "r" / d / "report.json").read_text()) for d in ("portable", "rusticl"))
    assert pocl["device"].startswith("Portable Computing Language") and rusticl["device"].startswith("rusticl")
    def verdicts(report):
        return {(r["variant"], r["dtype"]): r["verdict"] for r in report["rows"]}
    assert verdicts(pocl) == {("naive", "float32"): "pass", ("naive", "float64"): "pass", ("naive", "float16"): "pass",
                              ("vec", "float32"): "pass", ("vec", "float64"): "pass", ("vec", "float16"): "pass"}
    assert verdicts(rusticl) == {("naive", "float32"): "pass", ("naive", "float64"): "skip",     # llvmpipe has no
                                 ("naive", "float16"): "pass",                                  # fp64 (float16 is
                                 ("vec", "float32"): "pass", ("vec", "float64"): "skip",        # stored half:
                                 ("vec", "float16"): "pass"}                                    # vload_half, core)
    assert all("fp64" in r["skipped"] for r in rusticl["rows"] if r["dtype"] == "float64")
