"""Out-of-tree variants (sdcl.registry.plugins) as a user adds them: a plugin folder by `--plugin PATH` and an
installed package by its `sdcl.variants` entry point both add their variants to the gate, the tuner's candidates
and the ladder's tiers; a plugin that cannot be loaded or declares what the registry cannot take is one error line
naming the plugin and the problem (exit 2). scripts/plugin_gate.sh (CI) gates the example and its planted twin."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli_errors import one_error, sdcl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sdcl-vecops" / "sdcl_vecops"

pytestmark = pytest.mark.skipif(not EXAMPLE.is_dir(), reason="examples/ is not beside these tests (an installed sdcl)")


def write_plugin(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("from sdcl.registry import Variant\n" + body)
    return folder


def test_a_plugin_folder_adds_its_variant_to_the_gate(tmp_path):
    res = sdcl("--plugin", EXAMPLE, "conformance", "--ops", "add", "--skip-models", "--jobs", "2",
               "--report", tmp_path / "r", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["rows"]
    got = {(r["name"], r["variant"], r["dtype"]): (r["verdict"], r["cases"]) for r in rows}
    for dtype in ("float32", "float64"):        # in the worker processes too
        verdict, cases = got[("add", "vec", dtype)]
        assert verdict == "pass" and cases > 10, got


def test_an_installed_plugin_is_found_by_its_entry_point(tmp_path):
    site = tmp_path / "site"
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]   # no download
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(site),
                    str(EXAMPLE.parent)], check=True, capture_output=True, cwd=tmp_path)
    code = ("from sdcl.registry import REGISTRY, tiers; from sdcl.registry.plugins import KERNEL_DIRS; "
            "print([v.name for v in REGISTRY['mul'].variants], tiers()[-1], [d.name for d in KERNEL_DIRS])")
    for also_by_path in ({}, {"SDCL_PLUGINS": str(EXAMPLE)}):       # installed and named by path: loaded once
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(site), **also_by_path})
        assert res.stdout.strip() == "['naive', 'vec'] vectorized elementwise ['kernels']", res.stderr


@pytest.mark.parametrize("case", ["missing", "no variants", "unknown op", "taken name", "not a variant",
                                  "import error"])
def test_a_bad_plugin_is_one_error_naming_it(tmp_path, case):
    folder = tmp_path / "myplugin"
    if case == "no variants":
        write_plugin(folder, "X = 1\n")
        words = ("myplugin", "declares no VARIANTS")
    elif case == "unknown op":
        write_plugin(folder, "VARIANTS = {'addd': [Variant('v', launcher='m:f')]}\n")
        words = ("myplugin", "op 'addd' is not in the registry")
    elif case == "taken name":
        write_plugin(folder, "VARIANTS = {'add': [Variant('naive', launcher='m:f')]}\n")
        words = ("myplugin", "add already has a variant 'naive'")
    elif case == "not a variant":
        write_plugin(folder, "VARIANTS = {'add': ['vec']}\n")
        words = ("myplugin", "'vec' is not a sdcl.registry.Variant")
    elif case == "import error":
        write_plugin(folder, "import sdcl_no_such_module\n")
        words = ("myplugin", "importing it failed", "sdcl_no_such_module")
    else:
        words = ("myplugin", "no such module file or package folder")
    res = sdcl("--plugin", folder, "conformance", "--ops", "add", "--skip-models", cwd=tmp_path)
    one_error(res, 2, *words)


def test_a_broken_installed_plugin_is_one_error_naming_its_entry_point(tmp_path):
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[sdcl.variants]\nbroken = broken_plugin_module\n")
    res = sdcl("conformance", "--ops", "add", "--skip-models", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    one_error(res, 2, "plugin broken (entry point broken_plugin_module of sdcl.variants)", "importing it failed")


def test_the_model_checks_run_with_a_forced_plugin_variant(tmp_path):
    res = sdcl("--plugin", EXAMPLE, "conformance", "--ops", "add", "--force", "add:vec", "--report", tmp_path / "r",
               cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["rows"]
    used = next(r for r in rows if r["name"] == "variants used by the model checks")["metric"].split(", ")
    assert "add:vec" in used and "add:naive" not in used, used
    assert "add:naive (float16)" in used      # the example's vec implements float32 and float64 only
    models = [r for r in rows if r["kind"] == "model" and r["variant"] != "policy"]
    assert len(models) > 10 and all(r["verdict"] in ("pass", "skip") for r in models)


def test_forcing_a_variant_an_op_lacks_is_one_error(tmp_path):
    res = sdcl("conformance", "--ops", "add", "--force", "add:vec", cwd=tmp_path)
    one_error(res, 2, "--force add:vec", "op add has no variant 'vec'")


def test_a_variant_that_kills_its_worker_fails_its_rows_and_the_gate_goes_on(tmp_path):
    # a kernel that crashes the OpenCL implementation takes its worker process with it: the rows that were running
    # run again alone, the row that dies is a failure naming the death, and the op's other rows still pass
    plugin = write_plugin(tmp_path / "crashing", (
        "import os, signal\n\n\ndef crash(call, x):\n    os.kill(os.getpid(), signal.SIGSEGV)\n\n\n"
        "VARIANTS = {'silu': [Variant('crashes', launcher=crash)]}\n"))
    res = sdcl("--plugin", plugin, "conformance", "--ops", "silu,gelu", "--skip-models", "--jobs", "2",
               "--report", tmp_path / "r", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["rows"]
    got = {(r["name"], r["variant"], r["dtype"]): r for r in rows}
    for dtype in ("float32", "float64"):
        dead = got[("silu", "crashes", dtype)]
        assert dead["verdict"] == "FAIL" and "died (killed by SIGSEGV)" in dead["failure"], dead
        for ok in (("silu", "naive", dtype), ("gelu", "naive", dtype)):
            assert got[ok]["verdict"] == "pass" and got[ok]["cases"] > 10, got[ok]


def test_a_rows_knob_settings_checked_in_parallel_come_back_as_one_row(tmp_path):
    # outside ci, over several workers, each knob setting of a row is a task of its own: the row is reported once,
    # with every setting's cases, and the failure of a wrong setting or a setting that kills its worker names it
    plugin = write_plugin(tmp_path / "knobbed", (
        "import os, signal\n\nfrom sdcl.opencl_impl.variants import naive\n\n\n"
        "def silu(call, x):\n"
        "    if call.knobs['MODE'] == 3 and os.environ.get('KILL_AT_3'):\n"
        "        os.kill(os.getpid(), signal.SIGSEGV)\n"
        "    y = naive.silu(call, x)\n"
        "    return y * 1.5 if call.knobs['MODE'] == 2 and os.environ.get('WRONG_AT_2') else y\n\n\n"
        "VARIANTS = {'silu': [Variant('knobbed', {'MODE': 0}, space={'MODE': [0, 1, 2, 3]}, launcher=silu)]}\n"))

    def gate(name, split=True, more=(), **env):
        # the gate splits rows on a GPU only (a CPU device's kernels use every core already): switched on here
        args = ["--plugin", str(plugin), "conformance", "--rows", "silu:knobbed:float32", "--profile", "dev",
                "--skip-models", "--jobs", "2", "--report", str(tmp_path / name), *more]
        res = subprocess.run([sys.executable, "-c", "import sys; import sdcl.conformance.gate as g; "
                              f"g.splits_rows = lambda info: {split}; from sdcl.cli import main; "
                              "sys.exit(main(sys.argv[1:]))", *args], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300, env={**os.environ, **env})
        rows = json.loads((tmp_path / name / "report.json").read_text())["rows"]
        assert len(rows) == 1, rows
        return res, rows[0]

    res, row = gate("right")
    assert res.returncode == 0, res.stdout + res.stderr
    assert row["verdict"] == "pass" and row["configs"] == 4, row
    assert row["cases"] >= 4 * 10, row                  # each setting's share of dev's examples, at least 10 each
    res, row = gate("wrong", WRONG_AT_2="1")
    assert res.returncode == 1 and row["verdict"] == "FAIL", row
    assert row["failure"].startswith("knobs {'MODE': 2}: minimal failing case"), row["failure"]
    assert row["configs"] == 4, row                     # the other settings were checked too, and counted
    res, row = gate("wrong-whole", split=False, WRONG_AT_2="1")      # one process: stops at the failing setting
    assert row["verdict"] == "FAIL" and row["failure"].startswith("knobs {'MODE': 2}") and row["configs"] == 3, row
    res, row = gate("killed", KILL_AT_3="1")
    assert res.returncode == 1 and row["verdict"] == "FAIL", row
    assert "knob setting 3" in row["failure"] and "died (killed by SIGSEGV)" in row["failure"], row["failure"]
    # a run stopped before its row was whole keeps the settings that came in; --resume takes them instead of checking
    # them again (setting 2, wrong now, is not run again), and checks the rest
    res, row = gate("right")
    kept = (tmp_path / "right" / "settings.jsonl").read_text().splitlines()
    assert len(kept) == 4, kept
    (tmp_path / "right" / "settings.jsonl").write_text("".join(x + "\n" for x in kept if '@3"' not in x))
    res, row = gate("right", more=["--resume"], WRONG_AT_2="1")
    assert res.returncode == 0 and row["verdict"] == "pass" and row["configs"] == 4, res.stdout + res.stderr
    assert "3 knob setting(s) taken from" in res.stdout, res.stdout
    res, row = gate("right", WRONG_AT_2="1")        # without --resume every setting is checked again
    assert row["verdict"] == "FAIL" and row["failure"].startswith("knobs {'MODE': 2}"), row
    # in one process (--jobs 1), on any device (a CPU's rows are not spread over workers), the settings are checked
    # one after another and kept as they arrive, so --resume continues a stopped run there too
    res, row = gate("one", split=False, more=["--jobs", "1"])
    assert res.returncode == 0 and row["verdict"] == "pass" and row["configs"] == 4, res.stdout + res.stderr
    assert "silu:knobbed:float32 knob setting 1: 2 of 4 in, pass" in res.stdout, res.stdout
    kept = (tmp_path / "one" / "settings.jsonl").read_text().splitlines()
    assert len(kept) == 4, kept
    (tmp_path / "one" / "settings.jsonl").write_text("".join(x + "\n" for x in kept if '@3"' not in x))
    res, row = gate("one", split=False, more=["--jobs", "1", "--resume"], WRONG_AT_2="1")
    assert res.returncode == 0 and row["verdict"] == "pass" and row["configs"] == 4, res.stdout + res.stderr
    assert "3 knob setting(s) taken from" in res.stdout, res.stdout


def test_a_setting_that_runs_out_of_memory_beside_the_other_workers_runs_again_alone(tmp_path):
    # 16 workers' contexts of one CPU-style kernel ran an H100's host out of memory (OUT_OF_HOST_MEMORY at a
    # 1-element case): such a failure is not the kernel's answer; the setting runs again alone, after the others,
    # and what it does alone is its result (noted)
    marks = tmp_path / "marks"
    marks.mkdir()
    plugin = write_plugin(tmp_path / "starved", (
        "import os\nfrom pathlib import Path\n\nfrom sdcl.opencl_impl.variants import naive\n\n\n"
        "def silu(call, x):\n"
        "    mark = Path(os.environ['MARKS']) / str(call.knobs['MODE'])\n"
        "    if call.knobs['MODE'] == 1 and (os.environ.get('ALWAYS') or not mark.exists()):\n"
        "        mark.touch()\n"
        "        raise RuntimeError('clEnqueueFillBuffer failed: OUT_OF_HOST_MEMORY')\n"
        "    return naive.silu(call, x)\n\n\n"
        "VARIANTS = {'silu': [Variant('starved', {'MODE': 0}, space={'MODE': [0, 1, 2]}, launcher=silu)]}\n"))

    def gate(name, **env):
        args = ["--plugin", str(plugin), "conformance", "--rows", "silu:starved:float32", "--profile", "dev",
                "--skip-models", "--jobs", "2", "--report", str(tmp_path / name)]
        res = subprocess.run([sys.executable, "-c", "import sys; import sdcl.conformance.gate as g; "
                              "g.splits_rows = lambda info: True; from sdcl.cli import main; "
                              "sys.exit(main(sys.argv[1:]))", *args], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300, env={**os.environ, "MARKS": str(marks), **env})
        rows = json.loads((tmp_path / name / "report.json").read_text())["rows"]
        assert len(rows) == 1, rows
        return res, rows[0]

    res, row = gate("once")       # out of memory at its first call only
    assert res.returncode == 0 and row["verdict"] == "pass" and row["configs"] == 3, res.stdout + res.stderr
    assert "checked again alone: silu:starved:float32@1" in res.stdout, res.stdout
    assert "checked again alone" in row["notes"], row
    res, row = gate("always", ALWAYS="1")        # alone too: the failure stands
    assert res.returncode == 1 and row["verdict"] == "FAIL", row
    assert row["failure"].startswith("knobs {'MODE': 1}") and "OUT_OF_HOST_MEMORY" in row["failure"], row


def test_the_workers_share_the_hosts_cores_among_their_blas_threads(tmp_path):
    # each worker's BLAS (numpy's OpenBLAS) would start a thread per core: over --jobs workers they get a share each
    seen = tmp_path / "seen"
    plugin = write_plugin(tmp_path / "threads", (
        "import os\n\nfrom sdcl.opencl_impl.variants import naive\n\n\n"
        "def silu(call, x):\n"
        f"    open({str(seen)!r}, 'a').write(os.environ.get('OPENBLAS_NUM_THREADS', '-') + '\\n')\n"
        "    return naive.silu(call, x)\n\n\n"
        "VARIANTS = {'silu': [Variant('threads', launcher=silu)]}\n"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    res = subprocess.run([sys.executable, "-m", "sdcl.cli", "--plugin", str(plugin), "conformance", "--rows",
                          "silu:threads:float32,silu:naive:float32", "--skip-models", "--jobs", "2",
                          "--report", str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(seen.read_text().split()) == {str(max(1, os.cpu_count() // 2))}
