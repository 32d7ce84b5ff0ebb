"""Interrupted runs leave nothing half-written: Ctrl-C (SIGINT) or SIGTERM during a generation, while an image, a
tuning table or a report is being written, or in the middle of a history's transaction, leaves the earlier files
whole, no partial or temporary file, and exits 130 (SIGINT) or 143 (SIGTERM) with one line.

To land a signal inside a write, the subprocess runs sdcl with the final rename of sdcl.files' atomic writes slowed
down (it announces itself in a marker file, then sleeps): the signal arrives after the new content is in its
temporary file and before it would replace the old one.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

SLOW_WRITES = """
import os, sys, time
import sdcl.files as files
real = files.os.replace
def slow_replace(src, dst):
    open(os.environ["SDCL_TEST_MARKER"], "w").write(str(dst))
    for _ in range(600):    # short sleeps: a signal another thread (PoCL's) takes does not cut a sleep short, and is
        time.sleep(0.1)     # handled at the next one (one sleep of 60 s outlasted the wait for the exit, 2026-12-07)
    real(src, dst)
files.os.replace = slow_replace
from sdcl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start(code: str, args, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"exited {proc.returncode} before the point of interruption: {proc.communicate()}"
        assert time.time() - t0 < timeout, "the run never reached the point of interruption"
        time.sleep(0.05)


def _interrupt(proc: subprocess.Popen, sig) -> tuple:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    want = 130 if sig == signal.SIGINT else 143
    assert proc.returncode == want, (proc.returncode, err)
    assert "Traceback" not in err and ("interrupted" in err or "terminated" in err), err
    return out, err


def _leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_generate_interrupted_while_writing_the_image(tmp_path, sig):
    (tmp_path / "img.png").write_bytes(b"the earlier image")
    marker = tmp_path / "marker"
    proc = _start(SLOW_WRITES, ["generate", "x", "--model", "tiny-sd2", "--steps", "1", "--quiet", "-o", "img.png"],
                  tmp_path, {"SDCL_TEST_MARKER": str(marker)})
    _wait_for(marker, proc)
    _interrupt(proc, sig)
    assert (tmp_path / "img.png").read_bytes() == b"the earlier image"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_generate_interrupted_while_denoising(tmp_path, sig):
    (tmp_path / "img.png").write_bytes(b"the earlier image")
    proc = _start("import sys; from sdcl.cli import main; sys.exit(main(sys.argv[1:]))",
                  ["generate", "x", "--model", "tiny-sd2", "--steps", "900", "-o", "img.png"], tmp_path)
    time.sleep(4)                   # the interpreter's start, then a few of the 900 steps
    assert proc.poll() is None
    _interrupt(proc, sig)
    assert (tmp_path / "img.png").read_bytes() == b"the earlier image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


def test_tune_interrupted_while_writing_its_table(tmp_path):
    """The user's earlier table stays whole (it is what the policy reads)."""
    from sdcl.opencl_impl.devices import default_device, device_info
    from sdcl.opencl_impl.selection import device_slug
    tuning = tmp_path / "tuning"
    tuning.mkdir()
    table = tuning / f"{device_slug(device_info(default_device()))}.json"
    earlier = json.dumps({"device": "earlier", "ops": {}})
    table.write_text(earlier)
    marker = tmp_path / "marker"
    proc = _start(SLOW_WRITES, ["tune", "--ops", "softmax", "--model", "sd15", "--max-configs", "1", "--reps", "1"],
                  tmp_path, {"SDCL_TEST_MARKER": str(marker), "SDCL_TUNING_DIR": str(tuning)})
    _wait_for(marker, proc, timeout=600)
    _interrupt(proc, signal.SIGTERM)
    assert table.read_text() == earlier
    assert _leftovers(tmp_path) == []


def test_gate_interrupted_while_writing_its_reports(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    for f in ("report.md", "report.json", "junit.xml"):
        (report / f).write_text(f"earlier {f}")
    marker = tmp_path / "marker"
    proc = _start(SLOW_WRITES, ["conformance", "--ops", "silu", "--skip-models", "--jobs", "1", "--report", report],
                  tmp_path, {"SDCL_TEST_MARKER": str(marker)})
    _wait_for(marker, proc)
    _interrupt(proc, signal.SIGINT)
    for f in ("report.md", "report.json", "junit.xml"):
        text = (report / f).read_text()
        assert text == f"earlier {f}" or (f == "report.md" and text.startswith("# sdcl conformance")), f
    assert _leftovers(tmp_path) == []


KILL_IN_TRANSACTION = """
import os, sys, time
from sdcl.perf.history import History

class SlowBenchmarks(list):
    def __iter__(self):      # the import's loop over the results: stop inside its transaction
        for i, b in enumerate(list.__iter__(self)):
            if i == 1:
                open(os.environ["SDCL_TEST_MARKER"], "w").write("in the transaction")
                time.sleep(60)
            yield b

doc = {"machine_info": {"sdcl": {"device": "d"}}, "commit_info": {"id": "new"}, "datetime": "2026-12-04",
       "benchmarks": SlowBenchmarks({"fullname": f"x::t{i}", "stats": {"data": [1.0, 1.1]}, "extra_info": {}}
                                    for i in range(3))}
with History(sys.argv[1]) as h:
    h.import_json(doc)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_history_killed_inside_a_transaction_keeps_its_runs(tmp_path, sig):
    from sdcl.perf.history import History
    db = tmp_path / "history.sqlite"
    with History(db) as h:
        h.import_json({"machine_info": {"sdcl": {"device": "d"}}, "commit_info": {"id": "old"}, "datetime": "2026",
                       "benchmarks": [{"fullname": "x::t", "stats": {"data": [1.0, 1.2]}, "extra_info": {}}]})
    marker = tmp_path / "marker"
    proc = _start(KILL_IN_TRANSACTION, [db], tmp_path, {"SDCL_TEST_MARKER": str(marker)})
    _wait_for(marker, proc)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    with History(db) as h:
        assert [r.commit_id for r in h.runs()] == ["old"]
        assert list(h.results(h.runs()[0].id)) == ["x::t"]


def test_perf_run_interrupted_while_benchmarking_leaves_the_history_as_it_was(tmp_path):
    from sdcl.perf.history import History
    db = tmp_path / "history.sqlite"
    with History(db) as h:
        h.import_json({"machine_info": {"sdcl": {"device": "d"}}, "commit_info": {"id": "old"}, "datetime": "2026",
                       "benchmarks": [{"fullname": "x::t", "stats": {"data": [1.0, 1.2]}, "extra_info": {}}]})
    data = db.read_bytes()
    proc = _start("import sys; from sdcl.cli import main; sys.exit(main(sys.argv[1:]))",
                  ["perf", "run", "--db", db, "--processes", "3", "-k", "silu"], tmp_path)
    time.sleep(6)                   # inside the first benchmark process
    assert proc.poll() is None
    _interrupt(proc, signal.SIGINT)
    assert db.read_bytes() == data
