"""The benchmark history and its regression check, on real runs of the real benchmark suite.

Two claims, each shown with real `sdcl perf run` runs (pytest-benchmark JSON, imported into SQLite) of the
quick silu benchmark on the default OpenCL device:
- a rerun of the same code is not flagged (two runs, same kernels; each run is several processes, as
  `sdcl perf run` does, since a process can sit tens of percent off another for its whole life);
- a planted slowdown of one kernel is caught: the third run overlays kernels/silu.cl with a copy whose
  silu_naive does 48 extra multiply-adds per element (perf/planted.py; about 3x the kernel time on PoCL, well
  above the run-to-run swings of a loaded 2-core machine).
The statistics underneath (Mann-Whitney U, the rule, step detection) are checked against SciPy and by hand.
"""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from sdcl.perf import regress
from sdcl.perf.history import History, resolve_device


def _has_device() -> bool:
    try:
        from sdcl.opencl_impl.runtime import all_devices
        return bool(all_devices())
    except ImportError:
        return False


needs_device = pytest.mark.skipif(not _has_device(), reason="no OpenCL device (install pocl-opencl-icd)")


# ---------------------------------------------------------------------------------------------- real runs

# three processes per run (sdcl perf run's default is 2): the check needs every process of the new run slower
# than every one of the baseline, and on PoCL with 2 shared cores a whole process of this 0.1 ms kernel lands at
# ~0.095 or ~0.165 ms, about 1 in 4 at the first; a rerun with every process at 0.165 after a baseline with every
# one at 0.095 is flagged, 2 processes: ~3.5% of reruns, 3 processes: ~0.7%
PROCESSES = 3


def _run(db, *extra) -> None:
    from sdcl.perf.cli import run
    rc = run(str(db), quick=True, keyword="silu", extra=list(extra), processes=PROCESSES)
    assert rc == 0, f"sdcl perf run exited {rc}"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A history of two real runs of the same code."""
    db = tmp_path_factory.mktemp("history") / "perf-history.sqlite"
    _run(db)
    _run(db)
    return db


@needs_device
def test_rerun_of_the_same_code_is_not_flagged(two_runs, capsys):
    from sdcl.perf.cli import check

    with History(two_runs) as h:
        runs = h.runs()
        assert len(runs) == 2 and runs[0].device == runs[1].device
        findings = regress.check(h)
    silu = [f for f in findings if "silu" in f.name]
    assert len(silu) == 1
    f = silu[0]
    assert f.metric == "kernel", "the quick benchmark records kernel-event rounds; the check must use them"
    assert f.verdict != "regression", f.line()
    assert check(str(two_runs)) == 0
    assert "0 regression(s)" in capsys.readouterr().out


@needs_device
def test_planted_slowdown_of_one_kernel_is_caught(two_runs, tmp_path, capsys):
    from sdcl.perf.cli import check
    from sdcl.perf.planted import planted_overlay

    db = tmp_path / "perf-history.sqlite"
    shutil.copy(two_runs, db)
    overlay = planted_overlay(tmp_path / "overlay", "silu", delay=48)
    _run(db, "--kernel-overlay", str(overlay))

    with History(db) as h:
        newest = h.runs()[-1]
        assert newest.environment["kernel_overlay"].keys() == {"silu.cl"}
        findings = [f for f in regress.check(h) if "silu" in f.name]
    assert [f.verdict for f in findings] == ["regression"], findings[0].line()
    assert findings[0].change > 0.2 and findings[0].p < regress.ALPHA
    assert check(str(db)) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "test_op[silu-naive-" in out


@needs_device
def test_history_rows_hold_every_round_and_the_extra_info(two_runs):
    with History(two_runs) as h:
        run = h.runs()[-1]
        (name, res), = h.results(run.id).items()
    e = res.extra_info
    assert name.endswith("test_op[silu-naive-sd21_unet_l3]")
    assert len(res.rounds) >= 5 and res.median == pytest.approx(float(np.median(res.rounds)))
    assert len(e["kernel_rounds_s"]) == len(res.rounds)
    assert e["processes"] == PROCESSES and len(e["process_kernel_medians_s"]) == PROCESSES
    assert min(e["process_kernel_medians_s"]) <= e["kernel_median_s"] <= max(e["process_kernel_medians_s"])
    assert 0 < e["kernel_median_s"] <= res.median  # device time is part of the wall time of the same rounds
    assert e["gflops"] == pytest.approx(e["flops"] / e["kernel_median_s"] * 1e-9)
    assert e["peak_alloc_bytes"] >= 2 * 2 * 1280 * 8 * 8 * 4  # the float32 input and the output, at least
    assert run.environment["peak"]["gflops"] > 0 and run.environment["peak"]["gbps"] > 0
    if e.get("torch_device"):
        assert len(e["torch_rounds_s"]) == len(res.rounds) and e["ratio_vs_torch"] > 0


def test_import_rejects_json_without_rounds(tmp_path):
    doc = {"machine_info": {}, "commit_info": {}, "datetime": "2026-01-01T00:00:00",
           "benchmarks": [{"fullname": "x::test_a", "stats": {"median": 1.0}, "extra_info": {}}]}
    (tmp_path / "b.json").write_text(json.dumps(doc))
    with History(tmp_path / "h.sqlite") as h, pytest.raises(ValueError, match="no round data"):
        h.import_json(tmp_path / "b.json")


def test_resolve_device_by_substring(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        for dev in ("Portable Computing Language / cpu / 3.1", "NVIDIA CUDA / H100 / 550"):
            doc = {"machine_info": {"sdcl": {"device": dev}}, "commit_info": {"id": "abc"}, "datetime": "2026",
                   "benchmarks": [{"fullname": "x::t", "stats": {"data": [1.0, 1.1]}, "extra_info": {}}]}
            h.import_json(doc)
        assert resolve_device(h, "portable").startswith("Portable")
        assert resolve_device(h, "nvidia").startswith("NVIDIA")
        with pytest.raises(ValueError, match="no device matching"):
            resolve_device(h, "oclgrind")


# ------------------------------------------------------------------------------------------- the statistics

def test_mann_whitney_u_by_hand():
    # x = [1, 2, 3], y = [4, 5]: every y beats every x, U = 6; exactly 1 of the C(5, 2) = 10 orderings does.
    u, p = regress.mann_whitney_u([1, 2, 3], [4, 5], "greater")
    assert u == 6 and p == pytest.approx(0.1)
    u, p = regress.mann_whitney_u([1, 2, 3], [4, 5], "less")
    assert p == pytest.approx(1.0)
    # ties count one half: y = [2] ties with x's 2, beats 1: U = 1.5
    assert regress.mann_whitney_u([1, 2, 3], [2], "greater")[0] == 1.5


@pytest.mark.parametrize("n1,n2,shift,ties", [(5, 7, 0.0, False), (12, 15, 0.8, False), (40, 60, 0.3, False),
                                              (20, 25, 0.5, True), (80, 90, 0.1, False)])
def test_mann_whitney_u_matches_scipy(n1, n2, shift, ties):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(n1 * 100 + n2)
    x, y = rng.standard_normal(n1), rng.standard_normal(n2) + shift
    if ties:
        x, y = np.round(x, 1), np.round(y, 1)
    method = "asymptotic" if ties or n1 * n2 > regress.EXACT_LIMIT else "exact"
    for alt in ("greater", "less", "two-sided"):
        u, p = regress.mann_whitney_u(x, y, alt)
        ref = stats.mannwhitneyu(y, x, alternative=alt, method=method)
        assert u == pytest.approx(ref.statistic)
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_rule_needs_both_size_and_significance():
    rng = np.random.default_rng(0)
    base = 1.0 + 0.01 * rng.standard_normal(30)
    # 3% slower, hugely significant: below the 5% threshold, not a regression
    assert regress.compare(base, base * 1.03)["verdict"] == "same"
    # 30% slower on 3 rounds against 3: large but not significant at 0.01 (exact p = 1/20)
    r = regress.compare(base[:3], base[:3] * 1.3)
    assert r["verdict"] == "same" and r["p"] == pytest.approx(0.05)
    # 30% slower with 30 rounds each: a regression; 30% faster: an improvement
    assert regress.compare(base, base * 1.3)["verdict"] == "regression"
    assert regress.compare(base, base / 1.3)["verdict"] == "improvement"
    # a noisy benchmark's band raises the bar: 8% is within 3 MADs of its run-to-run spread
    assert regress.compare(base, base * 1.08, noise=regress.noise_band([1.0, 1.05, 0.96, 1.04, 0.97]))["verdict"] \
        == "same"


def test_processes_must_not_overlap():
    # two processes per run; the baseline's sit 0.111 and 0.120 ms (the state of a shared machine moves over
    # seconds), the rerun's 0.121 and 0.125: pooled, +9% with a tiny rank-test p, but the fastest rerun
    # process is within 1% of the slowest baseline one: not a regression
    rng = np.random.default_rng(1)
    rounds = lambda meds: np.concatenate([m * (1 + 0.005 * rng.standard_normal(50)) for m in meds])  # noqa: E731
    base, new = [0.111, 0.120], [0.121, 0.125]
    r = regress.compare(rounds(base), rounds(new), base_procs=base, new_procs=new)
    assert r["verdict"] == "same" and r["p"] < regress.ALPHA and r["change"] > 0.05
    assert r["process_change"] == pytest.approx(0.121 / 0.120 - 1)
    # the same rounds without the process medians: flagged (the flake this rule removes)
    assert regress.compare(rounds(base), rounds(new))["verdict"] == "regression"
    # a 3x slowdown clears every pair of processes; a 3x speed-up is an improvement
    slow, fast = [3 * x for x in new], [x / 3 for x in new]
    assert regress.compare(rounds(base), rounds(slow), base_procs=base, new_procs=slow)["verdict"] == "regression"
    assert regress.compare(rounds(base), rounds(fast), base_procs=base, new_procs=fast)["verdict"] == "improvement"
    # bimodal baseline (0.094 and 0.164 ms, seen on PoCL with 2 cores): a rerun at 0.165 is not a regression
    bi = [0.094, 0.164]
    assert regress.compare(rounds(bi), rounds([0.165, 0.166]), base_procs=bi,
                           new_procs=[0.165, 0.166])["verdict"] == "same"


def test_merge_processes_pools_rounds_and_keeps_each_median():
    from sdcl.perf.cli import merge_processes

    def doc(wall, kernel, torch, extra=()):
        bench = lambda name, scale: {  # noqa: E731
            "fullname": f"perf/x.py::{name}", "name": name, "stats": {"data": [w * scale for w in wall]},
            "extra_info": {"kernel_rounds_s": [k * scale for k in kernel], "torch_rounds_s": torch, "flops": 10**9,
                           "bytes": 10**8, "peak_gflops": 100.0, "peak_gbps": 10.0, "peak_alloc_bytes": len(wall)}}
        return {"machine_info": {"node": "n"}, "commit_info": {"id": "c"}, "datetime": "d",
                "benchmarks": [bench("test_a", 1.0)] + [bench(n, 2.0) for n in extra]}
    a = doc([3.0, 1.0, 2.0], [0.5, 0.7, 0.6], [1.0, 1.0, 1.0], extra=["test_only_in_one"])
    b = doc([5.0, 4.0], [0.9, 0.8], [2.0, 2.0])
    m = merge_processes([a, b])
    by = {x["name"]: x for x in m["benchmarks"]}
    x, e = by["test_a"], by["test_a"]["extra_info"]
    assert x["stats"]["data"] == [3.0, 1.0, 2.0, 5.0, 4.0] and x["stats"]["median"] == 3.0
    assert x["stats"]["min"] == 1.0 and x["stats"]["max"] == 5.0 and x["stats"]["rounds"] == 5
    assert e["kernel_rounds_s"] == [0.5, 0.7, 0.6, 0.9, 0.8] and e["kernel_median_s"] == 0.7
    assert e["process_kernel_medians_s"] == pytest.approx([0.6, 0.85]) and e["process_wall_medians_s"] == [2.0, 4.5]
    assert e["processes"] == 2 and e["peak_alloc_bytes"] == 3
    assert e["gflops"] == pytest.approx(1.0 / 0.7)                 # 1 GFLOP over the pooled kernel median
    assert e["pct_roofline"] == pytest.approx(100 * (1 / 0.7) / 100.0)
    assert e["torch_median_s"] == 1.0 and e["ratio_vs_torch"] == pytest.approx(3.0)
    assert by["test_only_in_one"]["extra_info"]["processes"] == 1
    assert m["machine_info"] == a["machine_info"] and merge_processes([a]) is a


def test_step_detection():
    flat = [1.0, 1.02, 0.99, 1.01, 1.0, 0.98]
    assert regress.detect_step(flat) is None
    k, change = regress.detect_step(flat[:3] + [1.2, 1.22, 1.19])
    assert k == 3 and change == pytest.approx(0.2, abs=0.02)
    assert regress.detect_step([1.0, 1.3, 1.0, 1.3, 1.0, 1.3]) is None  # alternating: segments overlap


@needs_device
def test_merge_appends_another_historys_runs_with_their_rounds(two_runs, tmp_path, capsys):
    from sdcl.perf.cli import import_file
    dst = tmp_path / "merged.sqlite"
    shutil.copy(two_runs, dst)
    with History(two_runs) as src:
        runs = src.runs()
        want = {r.id: src.results(r.id) for r in runs}
    packed = tmp_path / "runs.sqlite.gz"      # as docs/results keeps a history brought back from a device
    packed.write_bytes(gzip.compress(two_runs.read_bytes()))
    assert import_file(str(dst), [str(packed)]) == 0
    assert "merged" in capsys.readouterr().out
    with History(dst) as h:
        merged = sorted(h.runs(), key=lambda r: r.id)     # runs() orders by date: the copies sit beside their originals
        assert len(merged) == 2 * len(runs)
        for old, new in zip(runs, merged[len(runs):]):
            assert (new.device, new.commit_id, new.date) == (old.device, old.commit_id, old.date)
            got = h.results(new.id)
            assert {n: r.rounds for n, r in got.items()} == {n: r.rounds for n, r in want[old.id].items()}
