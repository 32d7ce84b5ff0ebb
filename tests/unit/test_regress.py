"""The benchmark history and the statistics of the regression check, without a device: JSON import, device lookup,
Mann-Whitney U (by hand; against SciPy in tests/oracle/test_regress_scipy.py), the rule, the merge of processes, step detection. The real runs of the
benchmark suite are in tests/integration/test_perf_history.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdcl.perf import regress
from sdcl.perf.history import History, resolve_device


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
    # paired rounds: 3/1, 1/1, 2/1, 5/2, 4/2 -> median 2.0 (the medians' ratio would be 3.0 / 1.0)
    assert e["torch_median_s"] == 1.0 and e["ratio_vs_torch"] == pytest.approx(2.0)
    assert by["test_only_in_one"]["extra_info"]["processes"] == 1
    assert m["machine_info"] == a["machine_info"] and merge_processes([a]) is a


def test_step_detection():
    flat = [1.0, 1.02, 0.99, 1.01, 1.0, 0.98]
    assert regress.detect_step(flat) is None
    k, change = regress.detect_step(flat[:3] + [1.2, 1.22, 1.19])
    assert k == 3 and change == pytest.approx(0.2, abs=0.02)
    assert regress.detect_step([1.0, 1.3, 1.0, 1.3, 1.0, 1.3]) is None  # alternating: segments overlap


def _result(kernel, torch=None):
    from sdcl.perf.history import Result
    extra = {"kernel_rounds_s": list(kernel)}
    if torch is not None:
        extra["torch_rounds_s"] = list(torch)
    k = np.asarray(kernel)
    return Result(0, "x::test_op[a]", list(k), float(np.median(k)), float(k.mean()), 0.0, float(k.min()),
                  float(k.max()), extra)


def test_rule_5_a_machine_that_slowed_down_slows_torch_too():
    rng = np.random.default_rng(3)
    ours, torch = 1e-3 * (1 + 0.02 * rng.standard_normal(60)), 5e-4 * (1 + 0.02 * rng.standard_normal(60))
    base = _result(ours, torch)
    slower_machine = _result(ours * 1.2, torch * 1.2)        # both sides 20% slower: not our code
    r = regress.judge([base], slower_machine)
    assert r["verdict"] == "same" and abs(r["torch_change"]) < 0.02
    slower_kernel = _result(ours * 1.3, torch)               # ours 30% slower, torch as before: a regression
    r = regress.judge([base], slower_kernel)
    assert r["verdict"] == "regression" and r["torch_change"] > 0.25
    assert regress.judge([base], _result(ours / 1.3, torch))["verdict"] == "improvement"


def test_rule_5_needs_torch_on_both_sides():
    rng = np.random.default_rng(4)
    ours = 1e-3 * (1 + 0.02 * rng.standard_normal(60))
    r = regress.judge([_result(ours)], _result(ours * 1.2, 5e-4 * np.ones(60)))
    assert r["verdict"] == "regression" and r["torch_change"] is None


def test_ratio_vs_torch_is_the_median_of_paired_rounds():
    from sdcl.perf.measure import ratio_vs_torch
    # round by round 1/1, 2/4, 3/1: median 1.0 (the medians' ratio, 2 / 1, ignores which rounds went together)
    assert ratio_vs_torch([1.0, 2.0, 3.0], [1.0, 4.0, 1.0]) == pytest.approx(1.0)
    # rounds without a pair each: the medians' ratio
    assert ratio_vs_torch([1.0, 2.0, 3.0], [1.0, 4.0]) == pytest.approx(2.0 / 2.5)


def test_the_benchmark_suite_does_not_inherit_an_xdist_workers_variables(monkeypatch):
    # pytest-benchmark disables every benchmark where PYTEST_XDIST_WORKER is set; a perf run started from inside an
    # xdist worker (these tests with -n) then imported nothing
    import sys

    from sdcl.perf.cli import _call
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("SDCL_KEPT_FOR_THE_SUITE", "1")
    code = ("import os, sys; sys.exit(3 if any(k.startswith('PYTEST_XDIST_') for k in os.environ) else "
            "0 if os.environ.get('SDCL_KEPT_FOR_THE_SUITE') == '1' else 4)")
    assert _call([sys.executable, "-c", code], ".") == 0
