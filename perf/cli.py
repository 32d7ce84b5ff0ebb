"""What `sdcl perf run|import|check|peak` and `sdcl dashboard` do (sdcl/cli.py parses the arguments)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sdcl.errors import BadInput, EnvironmentProblem
from sdcl.files import write_text

# The pytest-benchmark suite (ops, layers, end to end) ships with the package, with its own pytest.ini.
SUITE_DIR = Path(__file__).resolve().parent / "benchmarks"


def pytest_command(json_path: str, device: str | None = None, quick: bool = False, full_size: bool = False,
                   keyword: str | None = None, extra: list | None = None, suite_dir: Path = SUITE_DIR) -> list:
    """The pytest command line of a benchmark run (the suite in suite_dir, every round written to json_path)."""
    marks = "quick" if quick else (None if full_size else "not fullsize")
    cmd = [sys.executable, "-m", "pytest", str(suite_dir), "-p", "no:cacheprovider", "-q",
           f"--benchmark-json={json_path}", "--benchmark-columns=min,median,max,rounds"]
    cmd += ["-m", marks] if marks else ["-m", ""]
    if device:
        cmd += ["--device", device]
    if keyword:
        cmd += ["-k", keyword]
    return cmd + list(extra or [])


def _call(cmd: list, cwd) -> int:
    """Run a command and wait; on an interruption (Ctrl-C, SIGTERM) stop it too rather than leave it running.
    The benchmark suite is a pytest session of its own: run from inside a pytest-xdist worker (a user's test, or
    this project's tests spread with -n), it must not inherit the worker's PYTEST_XDIST_* variables, from which
    pytest-benchmark concludes that xdist is active and disables every benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env)
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def run(db: str, device: str | None = None, quick: bool = False, full_size: bool = False,
        keyword: str | None = None, extra: list | None = None, keep_json: str | None = None,
        processes: int = 2) -> int:
    """Run the benchmark suite in `processes` fresh processes one after another, merge their rounds per benchmark
    (merge_processes) and import the result into the history as one run.

    Several processes, as asv does: the rounds of one process are not independent (on a shared machine a whole
    process can sit tens of percent off another: the machine's state drifts over seconds), so the regression rule
    compares the runs' per-process medians too (perf/regress.py, compare: the processes must not overlap)."""
    from sdcl.perf.history import History, check_history

    if processes < 1:
        raise BadInput(f"--processes must be at least 1, got {processes}")
    check_history(Path(db))       # a history that cannot take the run is found before any benchmark runs
    folder = Path(db).absolute().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"--db {db}: the folder {folder} does not exist or is not writable")
    with tempfile.TemporaryDirectory(prefix="sdcl-perf-") as tmp:
        docs, rc = [], 0
        for i in range(processes):
            json_path = os.path.join(tmp, f"benchmarks-{i}.json")
            cmd = pytest_command(json_path, device, quick, full_size, keyword, extra)
            print(f"$ {' '.join(cmd)}" + (f"   [process {i + 1} of {processes}]" if processes > 1 else ""), flush=True)
            rc = _call(cmd, SUITE_DIR) or rc
            # pytest-benchmark creates the file when it parses its options, and leaves it empty if nothing ran
            if Path(json_path).exists() and Path(json_path).stat().st_size > 0:
                docs.append(json.loads(Path(json_path).read_text()))
        if not docs:
            raise EnvironmentProblem(f"the benchmark suite exited {rc} and no benchmark completed; nothing imported",
                                     hint="its output above says why")
        merged = merge_processes(docs)
        if keep_json:
            write_text(keep_json, json.dumps(merged, indent=1))
        try:
            with History(db) as h:
                run_id = h.import_json(merged, source=keep_json or f"sdcl perf run ({len(docs)} process(es))")
                new = next(x for x in h.runs() if x.id == run_id)
                n = len(h.results(run_id))
        except (BadInput, sqlite3.Error, OSError) as e:
            saved = Path(f"{db}.run-{time.strftime('%Y%m%d-%H%M%S')}.json")
            write_text(saved, json.dumps(merged, indent=1))
            raise EnvironmentProblem(f"the history {db} could not take the run ({e}); the run is saved in {saved}",
                                     hint=f"sdcl perf import --db HISTORY {saved}") from None
        print(f"imported run {run_id} ({n} benchmark(s) from {len(docs)} process(es), device {new.device}, "
              f"commit {new.label}) into {db}")
    if rc:
        raise EnvironmentProblem(f"the benchmark suite exited {rc}: some benchmarks failed (the others are imported)",
                                 hint="its output above says which and why")
    return 0


def merge_processes(docs: list) -> dict:
    """One pytest-benchmark document from the documents of several processes of the same suite: per benchmark,
    every process's wall, kernel and torch rounds concatenated, the statistics and extra_info's medians, rates and
    ratio recomputed from them (perf.measure.summary), and each process's median kept as
    process_{wall,kernel}_medians_s. A benchmark that some processes did not complete keeps the rounds of those
    that did. Machine and commit info come from the first document."""
    from sdcl.perf.measure import Timing, summary

    if len(docs) == 1:
        return docs[0]
    by_name: dict = {}
    for doc in docs:
        for b in doc["benchmarks"]:
            by_name.setdefault(b["fullname"], []).append(b)
    benchmarks = []
    for name, parts in by_name.items():
        wall = [x for b in parts for x in b["stats"]["data"]]
        infos = [b.get("extra_info") or {} for b in parts]
        kernel = [x for e in infos for x in e.get("kernel_rounds_s") or []]
        torch = [x for e in infos for x in e.get("torch_rounds_s") or []]
        first = infos[0]
        peak = ({"gflops": first["peak_gflops"], "gbps": first["peak_gbps"]}
                if "peak_gflops" in first and "peak_gbps" in first else None)
        timing = Timing(kernel=kernel, torch=torch, launches=first.get("launches_per_call", 0),
                        first_call_s=first.get("first_call_s", 0.0))
        info = dict(first)
        info.update(summary(timing, wall, first.get("flops"), first.get("bytes"), peak))
        if any("peak_alloc_bytes" in e for e in infos):
            info["peak_alloc_bytes"] = max(e.get("peak_alloc_bytes", 0) for e in infos)
        info["processes"] = len(parts)
        info["process_wall_medians_s"] = [float(np.median(b["stats"]["data"])) for b in parts]
        if all(e.get("kernel_rounds_s") for e in infos):
            info["process_kernel_medians_s"] = [float(np.median(e["kernel_rounds_s"])) for e in infos]
        w = np.asarray(wall, dtype=np.float64)
        q1, q3 = np.percentile(w, [25, 75])
        # recomputed from the pooled rounds; the first process's outlier counts would no longer describe them
        stats = dict(data=wall, rounds=len(wall), min=float(w.min()), max=float(w.max()),
                     mean=float(w.mean()), median=float(np.median(w)), q1=float(q1), q3=float(q3),
                     iqr=float(q3 - q1), stddev=float(w.std(ddof=1)) if len(w) > 1 else 0.0,
                     total=float(w.sum()), ops=float(1.0 / w.mean()) if w.mean() > 0 else 0.0,
                     iterations=parts[0]["stats"].get("iterations", 1))
        benchmarks.append(dict(parts[0], stats=stats, extra_info=info))
    return dict(docs[0], benchmarks=benchmarks)


def import_file(db: str, files: list, commit: str | None = None) -> int:
    from sdcl.perf.history import History
    with History(db) as h:
        for f in files:
            if str(f).endswith((".sqlite", ".db", ".sqlite.gz")):    # another history: all its runs
                ids = h.merge(f)
                print(f"merged {f}: {len(ids)} run(s) ({ids[0] if ids else '-'}..{ids[-1] if ids else '-'}) into {db}")
                continue
            run_id = h.import_json(f, commit=commit)
            print(f"imported {f} as run {run_id} ({len(h.results(run_id))} benchmark(s)) into {db}")
    return 0


def check(db: str, device: str | None = None, threshold: float = 0.05, alpha: float = 0.01,
          metric: str = "kernel", verbose: bool = False) -> int:
    """Print the verdicts of the newest run; 1 if anything regressed."""
    from sdcl.perf import regress
    from sdcl.perf.history import History, resolve_device

    if not Path(db).exists():
        raise BadInput(f"--db {db}: no such history file", hint="run `sdcl perf run` or `sdcl perf import` first")
    with History(db) as h:
        findings = regress.check(h, resolve_device(h, device), threshold, alpha, metric)
    regressions = [f for f in findings if f.verdict == "regression"]
    by_device: dict = {}
    for f in findings:
        by_device.setdefault(f.device, []).append(f)
    for dev, fs in by_device.items():
        print(f"{dev}: {len(fs)} benchmark(s), {sum(f.verdict == 'regression' for f in fs)} regression(s), "
              f"{sum(f.verdict == 'improvement' for f in fs)} improvement(s)")
        for f in fs:
            if verbose or f.verdict in ("regression", "improvement") or f.step:
                print("  " + f.line())
    if regressions:
        print(f"REGRESSION: {len(regressions)} benchmark(s) slower (median up by more than max({threshold:.0%}, "
              f"noise) with Mann-Whitney p < {alpha})")
        return 1
    return 0


def dashboard(db: str, out: str, ladder: list | None = None) -> int:
    from sdcl.perf.dashboard import build
    files = build(db, out, ladder)
    print(f"wrote {len(files)} page(s) into {out}: open {files[0]}")
    return 0


def peak(device: str | None = None, refresh: bool = False) -> int:
    from sdcl.opencl_impl.devices import select_device
    from sdcl.opencl_impl.runtime import Runtime
    from sdcl.perf.peak import get_peak, peak_cache_path
    p = get_peak(Runtime(select_device(device)), refresh=refresh)
    print(f"{p['device']}: {p['gflops']:.4g} GFLOP/s (FMA chain, vec {p['fma']['vec']} x {p['fma']['chains']} "
          f"chains), {p['gbps']:.4g} GB/s (copy, vec {p['copy']['vec']}); measured {p['date']}, "
          f"cached in {peak_cache_path()}")
    return 0
