"""The benchmark history: an SQLite file of runs and their results, filled from pytest-benchmark JSON files.

    runs(id, device, commit_id, commit_time, dirty, branch, date, environment, machine, source)
    results(run_id, name, rounds, median, mean, stddev, min, max, extra_info)

`device` is the OpenCL device key (platform / device / driver version) the run measured, read from the
machine_info that perf/benchmarks/conftest.py writes; `environment` holds the versions, OpenCL environment variables, the
measured peak and any kernel overlay; `machine` the rest of pytest-benchmark's machine_info. `rounds` is every
wall-clock round pytest-benchmark recorded; `extra_info` is the benchmark's own record (kernel rounds, GFLOP/s,
torch rounds and ratio, peak memory; see docs/PERF.md). JSON columns are stored as text.

The default file is `perf-history.sqlite` in the working directory, or the path in SDCL_PERF_DB.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from sdcl.errors import BadInput

DEFAULT_DB = "perf-history.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device      TEXT NOT NULL,
    commit_id   TEXT,
    commit_time TEXT,
    dirty       INTEGER,
    branch      TEXT,
    date        TEXT NOT NULL,          -- when the benchmarks ran (ISO 8601, UTC)
    environment TEXT NOT NULL,          -- JSON
    machine     TEXT NOT NULL,          -- JSON
    source      TEXT                    -- the imported file
);
CREATE TABLE IF NOT EXISTS results (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,          -- pytest-benchmark's fullname
    rounds      TEXT NOT NULL,          -- JSON list of wall-clock seconds, every round
    median      REAL,
    mean        REAL,
    stddev      REAL,
    min         REAL,
    max         REAL,
    extra_info  TEXT NOT NULL,          -- JSON
    PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS runs_device_date ON runs(device, date);
"""


def default_path() -> str:
    return os.environ.get("SDCL_PERF_DB") or DEFAULT_DB


@dataclass
class Run:
    id: int
    device: str
    commit_id: str | None
    commit_time: str | None
    dirty: bool
    branch: str | None
    date: str
    environment: dict
    machine: dict
    source: str | None

    @property
    def label(self) -> str:
        """Short commit id (+ when the tree was dirty; "(overlay)" when kernels were overlaid), else the run id."""
        label = self.commit_id[:8] + ("+" if self.dirty else "") if self.commit_id else f"run {self.id}"
        return label + (" (overlay)" if self.environment.get("kernel_overlay") else "")

    @property
    def peak(self) -> dict | None:
        return self.environment.get("peak")


@dataclass
class Result:
    run_id: int
    name: str
    rounds: list
    median: float
    mean: float
    stddev: float
    min: float
    max: float
    extra_info: dict

    def samples(self, metric: str = "kernel") -> tuple:
        """(metric actually used, its rounds): kernel-event rounds when recorded and asked for, else wall."""
        if metric == "kernel" and self.extra_info.get("kernel_rounds_s"):
            return "kernel", list(self.extra_info["kernel_rounds_s"])
        return "wall", list(self.rounds)

    def torch_ratios(self, metric: str = "kernel") -> list:
        """Our round / torch's round of the same round (torch runs right after each of ours), for the rounds of
        `metric`; [] without a torch baseline of as many rounds."""
        _, ours = self.samples(metric)
        torch = self.extra_info.get("torch_rounds_s") or []
        if len(torch) != len(ours) or not all(t > 0 for t in torch):
            return []
        return [o / t for o, t in zip(ours, torch)]

    def process_medians(self, metric: str = "kernel") -> list:
        """The median of each process's rounds of `metric` when the run merged several processes, else []."""
        return list(self.extra_info.get(f"process_{metric}_medians_s") or [])

    @property
    def short_name(self) -> str:
        """The test id without its file, e.g. test_op[silu-naive-sd21_unet_l0]."""
        return self.name.split("::")[-1]


_TABLES = {"runs": {"id", "device", "commit_id", "date", "environment", "machine"},
           "results": {"run_id", "name", "rounds", "extra_info"}}


def check_history(path: Path) -> bool:
    """Whether `path` holds an sdcl history (True), or is absent or an empty file (False: a new one may be made
    there). Anything else, a corrupt file or another program's SQLite database, is a BadInput naming the file; it
    is only read, never changed."""
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return False
    if not path.is_file():
        raise BadInput(f"{path}: not a history file (a folder)")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cols = {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")} for t in _TABLES}
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise BadInput(f"{path}: not an sdcl benchmark history (SQLite: {e}); it is left as it is") from None
    missing = [t for t, want in _TABLES.items() if not want <= cols[t]]
    if missing:
        raise BadInput(f"{path}: an SQLite file without sdcl's {' and '.join(missing)} table(s): not an sdcl "
                       "benchmark history; it is left as it is")
    return True


class History:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path or default_path())
        exists = check_history(self.path)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA foreign_keys = ON")
            if not exists:
                self.db.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise BadInput(f"{self.path}: cannot be opened as a history (SQLite: {e})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- writing -------------------------------------------------------------------------------------------------
    def import_json(self, data: dict | str | os.PathLike, source: str | None = None, commit: str | None = None) -> int:
        """Store one pytest-benchmark JSON document (a dict or a file path) as a new run; returns its id."""
        if not isinstance(data, dict):
            source = source or str(data)
            data = json.loads(Path(data).read_text())
        if "benchmarks" not in data or "machine_info" not in data:
            raise ValueError(f"{source or 'input'}: not a pytest-benchmark JSON file (no benchmarks/machine_info)")
        machine = dict(data["machine_info"])
        sdcl = machine.pop("sdcl", None) or {}
        device = sdcl.get("device") or _device_from_benchmarks(data["benchmarks"]) or \
            f"host / {machine.get('node', '?')} / {machine.get('cpu', {}).get('brand_raw', '?')}"
        environment = dict(sdcl.get("environment") or {})
        environment.update(peak=sdcl.get("peak"), device_info=sdcl.get("device_info"),
                           kernel_overlay=sdcl.get("kernel_overlay") or {},
                           pytest_benchmark=data.get("version"))
        ci = data.get("commit_info") or {}
        with self.db:
            cur = self.db.execute(
                "INSERT INTO runs (device, commit_id, commit_time, dirty, branch, date, environment, machine, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (device, commit or ci.get("id"), ci.get("time"), int(bool(ci.get("dirty"))), ci.get("branch"),
                 data.get("datetime") or "", json.dumps(environment), json.dumps(machine), source))
            run_id = cur.lastrowid
            for b in data["benchmarks"]:
                s = b.get("stats") or {}
                rounds = s.get("data")
                if not rounds:
                    raise ValueError(f"{source or 'input'}: benchmark {b.get('fullname')} has no round data "
                                     "(write the JSON with --benchmark-json, which includes every round)")
                self.db.execute(
                    "INSERT INTO results (run_id, name, rounds, median, mean, stddev, min, max, extra_info) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, b["fullname"], json.dumps(rounds), s.get("median"), s.get("mean"), s.get("stddev"),
                     s.get("min"), s.get("max"), json.dumps(b.get("extra_info") or {})))
        return run_id

    def merge(self, other: str | os.PathLike, skip_known: bool = False) -> list:
        """Append every run of another history file (e.g. one brought back from a device machine; gzipped as
        *.gz, the way docs/results keeps them) as new runs; returns their ids here. With `skip_known`, a run this
        history already holds (same device, date, commit and source: the same run reached by two files) is left
        out."""
        if str(other).endswith(".gz"):
            with tempfile.TemporaryDirectory(prefix="sdcl-history-") as tmp:
                plain = Path(tmp) / "history.sqlite"
                try:
                    plain.write_bytes(gzip.decompress(Path(other).read_bytes()))
                except (gzip.BadGzipFile, EOFError, zlib.error) as e:
                    raise BadInput(f"{other}: not a gzipped history ({e})") from None
                return self.merge(plain, skip_known)
        if not check_history(Path(other)):
            raise BadInput(f"{other}: no such history file, or an empty one")
        src = History(other)
        ids = []
        try:
            cols = "device, commit_id, commit_time, dirty, branch, date, environment, machine, source"
            known = {tuple(r) for r in self.db.execute("SELECT device, date, commit_id, source FROM runs")}
            with self.db:
                for row in src.db.execute(f"SELECT id, {cols} FROM runs ORDER BY date, id").fetchall():
                    if skip_known and (row[1], row[6], row[2], row[9]) in known:
                        continue
                    cur = self.db.execute(f"INSERT INTO runs ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row[1:])
                    ids.append(cur.lastrowid)
                    self.db.executemany(
                        "INSERT INTO results (run_id, name, rounds, median, mean, stddev, min, max, extra_info) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(cur.lastrowid, *r) for r in src.db.execute(
                            "SELECT name, rounds, median, mean, stddev, min, max, extra_info FROM results "
                            "WHERE run_id = ?", (row[0],))])
        finally:
            src.close()
        return ids

    # --- reading -------------------------------------------------------------------------------------------------
    def devices(self) -> list:
        return [r[0] for r in self.db.execute("SELECT DISTINCT device FROM runs ORDER BY device")]

    def runs(self, device: str | None = None) -> list:
        """Runs oldest first (by benchmark date, then id)."""
        q = "SELECT id, device, commit_id, commit_time, dirty, branch, date, environment, machine, source FROM runs"
        rows = self.db.execute(q + (" WHERE device = ?" if device else "") + " ORDER BY date, id",
                               (device,) if device else ())
        return [Run(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], json.loads(r[7]), json.loads(r[8]), r[9])
                for r in rows]

    def latest_run(self, device: str | None = None) -> Run | None:
        runs = self.runs(device)
        return runs[-1] if runs else None

    def results(self, run_id: int) -> dict:
        """{benchmark name: Result} of one run."""
        rows = self.db.execute("SELECT run_id, name, rounds, median, mean, stddev, min, max, extra_info "
                               "FROM results WHERE run_id = ? ORDER BY name", (run_id,))
        return {r[1]: Result(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))
                for r in rows}


def find_histories(folder: Path, skip: Path | None = None) -> list:
    """The history files (*.sqlite, *.sqlite.gz) under `folder` (itself included), hidden folders and `skip` left
    out, sorted."""
    folder, skip = Path(folder), (skip.resolve() if skip is not None else None)
    out = []
    for p in sorted({*folder.rglob("*.sqlite"), *folder.rglob("*.sqlite.gz")}):
        if any(s.startswith(".") for s in p.relative_to(folder).parts[:-1]) or not p.is_file() \
                or (skip is not None and skip in p.resolve().parents):
            continue
        out.append(p)
    return out


def _device_from_benchmarks(benchmarks: list) -> str | None:
    for b in benchmarks:
        d = (b.get("extra_info") or {}).get("device")
        if d:
            return d
    return None


def resolve_device(history: History, name: str | None) -> str | None:
    """A device key of the history from an exact key or a case-insensitive substring ("portable", "nvidia")."""
    if not name:
        return None
    devices = history.devices()
    if name in devices:
        return name
    found = [d for d in devices if name.lower() in d.lower()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"no device matching {name!r} in {history.path}; it has: " + "; ".join(devices or ["none"]))
    raise ValueError(f"{name!r} matches several devices in {history.path}: " + "; ".join(found))
