"""Bad input through the command line, as a user types it: each case runs `sdcl` in a subprocess and checks the exit
code (README: 2 bad input, 3 environment or device), that stderr holds one error line naming the problem (plus an
optional hint) and no traceback, and that the files around are as they were."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

GENERATE = ["generate", "a red bicycle", "--model", "tiny-sd2", "--steps", "1", "--quiet"]


def sdcl(*args, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdcl.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def one_error(res, code: int, *fragments: str) -> str:
    """The error line, after checking the exit code, the error and hint lines, and the absence of a traceback."""
    lines = [line for line in res.stderr.splitlines() if not line.startswith("sdcl: warning:")]
    assert res.returncode == code, f"exit {res.returncode}, wanted {code}:\n{res.stderr}"
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert 1 <= len(lines) <= 2 and lines[0].startswith("sdcl") and ": error: " in lines[0], res.stderr
    assert len(lines) == 1 or lines[1].startswith("  hint: "), res.stderr
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def place(tmp_path):
    """A working folder with an earlier image, a file, and a read-only folder."""
    (tmp_path / "old.png").write_bytes(b"earlier image")
    (tmp_path / "afile").write_text("x")
    return tmp_path


BAD_GENERATE = [
    ("guidance_nan", ["--guidance", "nan"], 2, ["--guidance", "finite", "nan"]),
    ("guidance_inf", ["--guidance", "inf"], 2, ["--guidance", "inf"]),
    ("eta_nan", ["--eta", "nan"], 2, ["--eta", "nan"]),
    ("eta_above_one", ["--eta", "2"], 2, ["--eta", "2"]),
    ("eta_with_euler", ["--eta", "0.5", "--sampler", "euler"], 2, ["--eta", "ddim", "euler"]),
    ("size_zero", ["--size", "0"], 2, ["--size", "0"]),
    ("size_negative", ["--size", "-16"], 2, ["--size", "-16"]),
    ("size_odd", ["--size", "15"], 2, ["--size", "multiple of 2", "15"]),
    ("size_beyond_memory", ["--size", "65536", "--backend", "opencl"], 3, ["65536", "needs at least", "global memory",
                                                                           "allocates at most"]),
    ("size_beyond_host", ["--size", "262144"], 3, ["262144", "host memory"]),
    ("steps_zero", ["--steps", "0"], 2, ["--steps", "0"]),
    ("steps_1000_ddim", ["--steps", "1000"], 2, ["--steps", "1..999", "1000"]),
    ("steps_1000_euler", ["--steps", "1000", "--sampler", "euler"], 2, ["1..999", "euler"]),
    ("steps_999_dpmpp", ["--steps", "999", "--sampler", "dpmpp_2m"], 2, ["1..998", "999"]),
    ("steps_not_a_number", ["--steps", "many"], 2, ["--steps", "many"]),
    ("seed_negative", ["--seed", "-1"], 2, ["--seed", "-1"]),
    ("checkpoint_empty", ["--checkpoint", ""], 2, ["--checkpoint", "empty"]),
    ("checkpoint_missing", ["--checkpoint", "nowhere.safetensors"], 2, ["nowhere.safetensors", "no such"]),
    ("output_unknown_type", ["-o", "out.xyz"], 2, ["out.xyz", ".xyz"]),
    ("output_no_suffix", ["-o", "out"], 2, ["out", "no suffix"]),
    ("output_is_a_folder", ["-o", "."], 2, ["folder"]),
    ("output_below_a_file", ["-o", "afile/img.png"], 2, ["afile", "file"]),
    ("output_folder_missing", ["-o", "no/such/folder/img.png"], 2, ["no/such/folder", "does not exist"]),
    ("model_unknown", ["--model", "sd99"], 2, ["--model", "sd99"]),
    ("device_unknown", ["--backend", "opencl", "--device", "nosuchvendor"], 2, ["nosuchvendor"]),
    ("device_without_opencl", ["--device", "portable"], 2, ["--device", "--backend opencl"]),
    ("half_storage_of_float16", ["--dtype", "float16", "--backend", "opencl", "--storage", "half"], 2,
     ["--storage half", "--dtype float32"]),
    ("unknown_option", ["--colour", "red"], 2, ["--colour"]),
]


@pytest.mark.parametrize("name,extra,code,fragments", BAD_GENERATE, ids=[c[0] for c in BAD_GENERATE])
def test_generate_refuses_bad_input_in_one_line(place, name, extra, code, fragments):
    before = sorted(p.name for p in place.iterdir())
    res = sdcl(*GENERATE, *extra, *([] if "-o" in extra else ["-o", "new.png"]), cwd=place)
    one_error(res, code, *fragments)
    assert sorted(p.name for p in place.iterdir()) == before          # nothing written, nothing left behind
    assert (place / "old.png").read_bytes() == b"earlier image"


def _address_space_2gib():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_generate_refuses_before_building_anything(place):
    """--model sd15 --size 12 was refused after building 4.3 GB of weights: now before any. Under a 2 GiB
    address-space cap the refusal still comes with its own message; the control (a valid size, same cap) shows that
    building the weights would have failed there with an out-of-memory error."""
    def run(size):
        return subprocess.run([sys.executable, "-m", "sdcl.cli", "generate", "x", "--model", "sd15", "--size",
                               str(size), "--steps", "1", "-o", "a.png"], cwd=place, capture_output=True, text=True,
                              timeout=300, preexec_fn=_address_space_2gib)
    one_error(run(12), 2, "--size", "multiple of 8")
    one_error(run(16), 3, "out of host memory")


def test_full_disk_keeps_the_earlier_image(place):
    """A write that fails for lack of space (injected: every binary fdopen's write raises ENOSPC) is an environment
    problem (exit 3), one line, and leaves the earlier image whole with no temporary file beside it."""
    hook = place / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import errno, os\n"
        "_fdopen = os.fdopen\n"
        "class _Full:\n"
        "    def __init__(self, f): self.f = f\n"
        "    def __enter__(self): return self\n"
        "    def __exit__(self, *a): self.f.close()\n"
        "    def write(self, data): raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "def fdopen(fd, mode='r', *a, **k):\n"
        "    f = _fdopen(fd, mode, *a, **k)\n"
        "    return _Full(f) if 'w' in mode and 'b' in mode else f\n"
        "os.fdopen = fdopen\n")
    before = sorted(p.name for p in place.iterdir())
    res = sdcl(*GENERATE, "-o", "old.png", cwd=place, env={"PYTHONPATH": str(hook)})
    one_error(res, 3, "No space left on device")
    assert sorted(p.name for p in place.iterdir()) == before
    assert (place / "old.png").read_bytes() == b"earlier image"


def test_debug_shows_the_traceback(place):
    res = sdcl(*GENERATE, "--steps", "1000", "--debug", cwd=place)
    assert res.returncode == 2 and "Traceback" in res.stderr and "1..999" in res.stderr


def test_no_opencl_platform_is_an_environment_problem_with_a_hint(place):
    empty = place / "no-vendors"
    empty.mkdir()
    # pyopencl's wheel loader also reads the ICDs beside it ($PYOPENCL_HOME/.libs, where pip's Oclgrind puts its
    # own), and pyopencl sets PYOPENCL_HOME when imported: point it at the empty folder after that import
    hook = place / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(f"import os, pyopencl\nos.environ['PYOPENCL_HOME'] = {str(empty)!r}\n")
    res = sdcl("devices", cwd=place, env={"OCL_ICD_VENDORS": str(empty), "OPENCL_VENDOR_PATH": str(empty),
                                           "PYTHONPATH": str(hook)})
    one_error(res, 3, "no OpenCL platform", "pocl-opencl-icd")


def _corrupt(path: Path) -> bytes:
    data = b"this is not an SQLite database" * 40
    path.write_bytes(data)
    return data


def _foreign(path: Path) -> bytes:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (t TEXT)")
    con.commit()
    con.close()
    return path.read_bytes()


@pytest.mark.parametrize("make", [_corrupt, _foreign], ids=["corrupt", "foreign_sqlite"])
@pytest.mark.parametrize("command", [["perf", "check"], ["perf", "run", "--quick", "--processes", "1"],
                                     ["perf", "import", "x.json"], ["dashboard", "--out", "site"]],
                         ids=["check", "run", "import", "dashboard"])
def test_a_bad_history_is_one_line_and_never_modified(place, make, command):
    db = place / "history.sqlite"
    data = make(db)
    (place / "x.json").write_text("{}")
    res = sdcl(*command, "--db", db, cwd=place, timeout=120)
    one_error(res, 2, str(db), "not an sdcl benchmark history")
    assert db.read_bytes() == data
    assert not (place / "site").exists()          # the dashboard left no (empty) output folder


def test_perf_check_tells_a_missing_history_from_a_regression(place):
    one_error(sdcl("perf", "check", "--db", "none.sqlite", cwd=place), 2, "none.sqlite", "no such history")
    one_error(sdcl("perf", "check", "--threshold", "nan", cwd=place), 2, "--threshold")


@pytest.fixture
def folders(place):
    """Diffusers folders of tiny-sd1 as sdcl writes them: whole, with a UNet act_fn sdcl does not implement, without
    a vae/ subfolder."""
    import json
    import shutil

    from sdcl.checkpoint import save_diffusers
    from sdcl.reference.configs import TINY_SD1
    from sdcl.reference.pipeline import init_weights
    save_diffusers(init_weights(TINY_SD1), TINY_SD1, place / "ok")
    shutil.copytree(place / "ok", place / "mish")
    config = json.loads((place / "mish" / "unet" / "config.json").read_text())
    (place / "mish" / "unet" / "config.json").write_text(json.dumps({**config, "act_fn": "mish"}))
    shutil.copytree(place / "ok", place / "novae")
    shutil.rmtree(place / "novae" / "vae")
    return place


BAD_CHECKPOINTS = [
    ("act_fn_mish", ["--checkpoint", "mish"], ["unet act_fn 'mish' is not supported", "SD uses silu"]),
    ("no_vae", ["--checkpoint", "novae"], ["no vae/ subfolder"]),
    ("other_family", ["--checkpoint", "ok", "--model", "tiny-sd2"], ["does not match config 'tiny-sd2'",
                                                                     "12 wrong shape"]),
    ("report_without_checkpoint", ["--mismatch-report", "keys.txt"], ["--mismatch-report", "--checkpoint"]),
    ("report_is_a_folder", ["--checkpoint", "ok", "--mismatch-report", "ok"], ["--mismatch-report", "folder"]),
]


@pytest.mark.parametrize("name,extra,fragments", BAD_CHECKPOINTS, ids=[c[0] for c in BAD_CHECKPOINTS])
def test_generate_refuses_a_checkpoint_in_one_line(folders, name, extra, fragments):
    # with a checkpoint, --model only where the case names it
    args = [a for a in GENERATE if a not in ("--model", "tiny-sd2")] if "--checkpoint" in extra else GENERATE
    before = sorted(p.name for p in folders.iterdir())
    res = sdcl(*args, *extra, "-o", "new.png", cwd=folders)
    one_error(res, 2, *fragments)
    assert sorted(p.name for p in folders.iterdir()) == before


BAD_OTHER = [
    ("conformance_unknown_op", ["conformance", "--ops", "nosuchop"], 2, ["nosuchop"]),
    ("conformance_report_is_a_file", ["conformance", "--ops", "silu", "--report", "afile"], 2, ["afile",
                                                                                                "not a folder"]),
    ("conformance_unknown_device", ["conformance", "--ops", "silu", "--device", "nosuchvendor"], 2, ["nosuchvendor"]),
    ("tune_unknown_op", ["tune", "--ops", "nosuchop"], 2, ["nosuchop"]),
    ("tune_variant_of_another_op", ["tune", "--ops", "silu", "--variants", "mma_f16_half"], 2,
     ["mma_f16_half", "not a variant of silu"]),
    ("tune_trace_needs_a_model", ["tune", "--trace-size", "64"], 2, ["--trace-size", "--model"]),
    ("tune_default_folder_missing", ["tune", "--write-default", "nowhere"], 2, ["nowhere", "no such folder"]),
    ("ladder_bad_row", ["ladder", "--model", "tiny-sd2", "--rows", "99", "--no-torch"], 2, ["--rows", "99"]),
    ("report_merge_missing_folder", ["report", "merge", "nowhere"], 2, ["nowhere", "no such folder"]),
    ("report_merge_no_reports", ["report", "merge", "."], 2, ["no report.json and no benchmark history"]),
    ("report_merge_not_a_report", ["report", "merge", "afile"], 2, ["afile", "neither a folder nor"]),
    ("no_command", [], 2, ["COMMAND"]),
]


@pytest.mark.parametrize("name,args,code,fragments", BAD_OTHER, ids=[c[0] for c in BAD_OTHER])
def test_other_commands_refuse_bad_input_in_one_line(place, name, args, code, fragments):
    before = sorted(p.name for p in place.iterdir())
    one_error(sdcl(*args, cwd=place), code, *fragments)
    assert sorted(p.name for p in place.iterdir()) == before
