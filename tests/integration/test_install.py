"""sdcl as a new user installs it: a wheel built from this tree, installed in a fresh virtual environment with the
newest dependencies from the package index, used from a directory outside the checkout.

- The wheel holds one top-level package, `sdcl` (no `kernels`, `reference`, `perf`, ... beside it), with the kernel
  sources, the tuning tables, the BPE vocabulary and the benchmark suite as package data.
- With the runtime dependencies only (`sdcl[opencl]`: no Hypothesis, torch or diffusers), `sdcl devices` lists the
  default device and `sdcl generate --backend opencl` writes an image.
- With Hypothesis added, a small gate (`sdcl conformance --ops ... --skip-models`) passes and writes its reports.
- Every sdcl module and data folder in use is the installed one, none from the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(cmd, cwd, env=None, timeout=900) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built (pip, isolated build) from a copy of the tree: a build in the checkout would leave build/
    there, whose stale files a later wheel could pick up."""
    tree = tmp_path_factory.mktemp("tree") / "sdcl"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                               ".pytest_cache", ".hypothesis", ".whl", ".tox"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, tree], cwd=dist)
    [whl] = dist.glob("sdcl-*.whl")
    return whl


@pytest.fixture(scope="module")
def env(wheel, tmp_path_factory):
    """A fresh venv holding the wheel and its runtime dependencies only; (python, sdcl script, environment, cwd)."""
    home = tmp_path_factory.mktemp("user")
    where = home / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    py, sdcl = where / "bin" / "python", where / "bin" / "sdcl"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "VIRTUAL_ENV", "SDCL_"))}
    environ.update(SDCL_TUNING_DIR=str(home / "tuning"), SDCL_CACHE_DIR=str(home / "cache"))
    _run([py, "-m", "pip", "install", "-q", f"{wheel}[opencl]"], cwd=home, env=environ)
    return py, sdcl, environ, home


def test_the_wheel_holds_one_namespace_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sdcl"}, tops
    for needed in ("sdcl/kernels/gemm/tiled_reg.cl", "sdcl/kernels/common.h", "sdcl/kernels/norm/moments.h",
                   "sdcl/tuning/default.json",
                   "sdcl/reference/bpe_simple_vocab_16e6.txt.gz", "sdcl/perf/benchmarks/test_bench_ops.py",
                   "sdcl/perf/benchmarks/pytest.ini", "sdcl/registry/linalg.py", "sdcl/checkpoint/__init__.py"):
        assert needed in names, needed
    assert any(n.startswith("sdcl/tuning/") and n.endswith(".json") and "default" not in n for n in names)


def test_runtime_dependencies_only_devices_and_generate(env):
    py, sdcl, environ, home = env
    for absent in ("hypothesis", "torch", "diffusers", "transformers"):
        res = subprocess.run([str(py), "-c", f"import {absent}"], capture_output=True, env=environ, cwd=home)
        assert res.returncode != 0, f"{absent} is installed: this venv should hold the runtime dependencies only"
    out = _run([sdcl, "devices"], cwd=home, env=environ).stdout
    assert "*" in out and "Portable Computing Language" in out
    _run([sdcl, "generate", "a red bicycle", "--model", "tiny-sd2", "--backend", "opencl", "--steps", "2",
          "--quiet", "-o", home / "out.png"], cwd=home, env=environ)
    assert (home / "out.png").stat().st_size > 0
    # every module and data folder in use is the installed one
    probe = ("import importlib, pkgutil, sdcl, sdcl.resources as r;"
             "mods = [m.name for m in pkgutil.walk_packages(sdcl.__path__, 'sdcl.')"
             " if not m.name.startswith(('sdcl.conformance', 'sdcl.perf'))"
                 " and not m.name.endswith('__main__')];"
             "[importlib.import_module(m) for m in mods];"
             "import sys; print('\\n'.join([sys.modules[m].__file__ for m in mods] + "
             "[str(r.kernel_dir()), str(r.shipped_tuning_dir())]))")
    paths = _run([py, "-c", probe], cwd=home, env=environ).stdout.split()
    venv_root = str(py.parent.parent)
    assert len(paths) > 20 and all(p.startswith(venv_root) for p in paths), [p for p in paths if not p.startswith(venv_root)]


def test_a_small_gate_from_outside_the_checkout(env):
    py, sdcl, environ, home = env
    _run([py, "-m", "pip", "install", "-q", "hypothesis"], cwd=home, env=environ)
    _run([sdcl, "conformance", "--ops", "silu,add,softmax", "--skip-models", "--report", home / "report"],
         cwd=home, env=environ)
    for f in ("report.md", "report.json", "junit.xml"):
        assert (home / "report" / f).stat().st_size > 0
    assert "| softmax | reduce | float32 |" in (home / "report" / "report.md").read_text()
