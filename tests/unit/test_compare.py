"""The checker's comparison, which runs chunk by chunk: its measures and first-failure positions are those of the
whole array, wherever the chunk boundaries fall."""

import numpy as np
import pytest

import sdcl.conformance.check as C
from sdcl.opencl_impl.runtime import POISON
from sdcl.registry import Tolerance


def _result():
    return C.Result("op", "v", {}, "float32", "case", False)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_measures_do_not_depend_on_chunks(monkeypatch, chunk):
    monkeypatch.setattr(C, "_CHUNK", chunk)
    rng = np.random.default_rng(0)
    e = rng.standard_normal((5, 13))
    g = (e * (1 + 1e-7 * rng.standard_normal(e.shape))).astype(np.float32)
    res = _result()
    problems = C.compare(g, e, np.dtype(np.float32), Tolerance(1e-3, 0.0, "test"), float(np.abs(e).max()), res)
    err = np.abs(g.astype(np.float64) - e)
    assert problems == []
    assert res.max_abs == pytest.approx(err.max(), rel=0, abs=0)
    assert res.max_rel == pytest.approx(np.max(err / np.abs(e)), rel=1e-15)
    assert res.rel_l2 == pytest.approx(np.linalg.norm(err) / np.linalg.norm(e), rel=1e-12)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_first_failures_are_global_positions(monkeypatch, chunk):
    monkeypatch.setattr(C, "_CHUNK", chunk)
    e = np.linspace(1.0, 2.0, 40).reshape(4, 10)
    g = e.astype(np.float32)
    g[2, 3] = 5.0                                      # flat index 23: outside the tolerance
    g[3, 1] = 7.0
    g.view(np.uint32)[1, 9] = POISON                   # flat index 19: never written
    g[3, 8] = np.nan                                   # a NaN where the reference is finite
    res = _result()
    problems = C.compare(g, e, np.dtype(np.float32), Tolerance(1e-6, 0.0, "test"), 2.0, res)
    assert problems[0] == "1 of 40 output element(s) never written (first at flat index 19)"
    assert problems[1].startswith("4 element(s) outside rtol=1e-06")
    assert "first at (1, 9)" in problems[1]            # the poison NaN is itself outside the tolerance
    assert "(2 NaN where the reference is finite" in problems[1]
    assert res.max_abs == np.inf


def test_nan_in_both_is_equal():
    e = np.array([1.0, np.nan, 3.0])
    res = _result()
    assert C.compare(e.astype(np.float32), e, np.dtype(np.float32), Tolerance(1e-6, 0.0, "t"), 3.0, res) == []
