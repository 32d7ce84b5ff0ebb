"""What `sdcl perf run|import|check|peak` and `sdcl dashboard` do (sdcl/cli.py parses the arguments)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PERF_DIR = Path(__file__).resolve().parent


def pytest_command(json_path: str, device: str | None = None, quick: bool = False, full_size: bool = False,
                   keyword: str | None = None, extra: list | None = None) -> list:
    """The pytest command line of a benchmark run (the perf suite, every round written to json_path)."""
    marks = "quick" if quick else (None if full_size else "not fullsize")
    cmd = [sys.executable, "-m", "pytest", str(PERF_DIR), "-p", "no:cacheprovider", "-q",
           f"--benchmark-json={json_path}", "--benchmark-columns=min,median,max,rounds"]
    cmd += ["-m", marks] if marks else ["-m", ""]
    if device:
        cmd += ["--device", device]
    if keyword:
        cmd += ["-k", keyword]
    return cmd + list(extra or [])


def run(db: str, device: str | None = None, quick: bool = False, full_size: bool = False,
        keyword: str | None = None, extra: list | None = None, keep_json: str | None = None) -> int:
    """Run the benchmark suite in a fresh process, then import its JSON into the history as one run."""
    from perf.history import History

    with tempfile.TemporaryDirectory(prefix="sdcl-perf-") as tmp:
        json_path = keep_json or os.path.join(tmp, "benchmarks.json")
        cmd = pytest_command(json_path, device, quick, full_size, keyword, extra)
        print("$ " + " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=PERF_DIR.parent)
        # pytest-benchmark creates the file when it parses its options, and leaves it empty if nothing ran
        if not Path(json_path).exists() or Path(json_path).stat().st_size == 0:
            print(f"sdcl perf run: pytest exited {rc} and no benchmark completed; nothing imported", file=sys.stderr)
            return rc or 2
        with History(db) as h:
            run_id = h.import_json(json_path)
            new = next(x for x in h.runs() if x.id == run_id)
            n = len(h.results(run_id))
        print(f"imported run {run_id} ({n} benchmark(s), device {new.device}, commit {new.label}) into {db}")
    return rc


def import_file(db: str, files: list, commit: str | None = None) -> int:
    from perf.history import History
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
    from perf import regress
    from perf.history import History, resolve_device

    if not Path(db).exists():
        raise FileNotFoundError(f"no history file {db}: run `sdcl perf run` or `sdcl perf import` first")
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
    from perf.dashboard import build
    files = build(db, out, ladder)
    print(f"wrote {len(files)} page(s) into {out}: open {files[0]}")
    return 0


def peak(device: str | None = None, refresh: bool = False) -> int:
    from opencl_impl.runtime import Runtime, select_device
    from perf.peak import get_peak, peak_cache_path
    p = get_peak(Runtime(select_device(device)), refresh=refresh)
    print(f"{p['device']}: {p['gflops']:.4g} GFLOP/s (FMA chain, vec {p['fma']['vec']} x {p['fma']['chains']} "
          f"chains), {p['gbps']:.4g} GB/s (copy, vec {p['copy']['vec']}); measured {p['date']}, "
          f"cached in {peak_cache_path()}")
    return 0
