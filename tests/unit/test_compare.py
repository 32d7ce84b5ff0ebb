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


def _cancelling_dot(k: int = 44):
    """(1xK)@(Kx1) whose terms (size ~100) cancel to a result of 1e-3, and the float32 in-order sum a correct kernel
    returns: its rounding error follows the terms, far above 2e-5 of the tiny result."""
    rng = np.random.default_rng(1)
    a = (100 * rng.standard_normal((1, k))).astype(np.float32)
    b = rng.standard_normal((k, 1)).astype(np.float32)
    head = a[0, :-1].astype(np.float64) @ b[:-1, 0].astype(np.float64)
    b[-1, 0] = np.float32((1e-3 - head) / a[0, -1])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    s = np.float32(0)
    for x, y in zip(a[0], b[:, 0]):
        s = np.float32(s + np.float32(x * y))
    return a64, b64, a64 @ b64, np.array([[s]], np.float32)


def test_dot_scale_follows_the_terms_of_a_cancelling_sum():
    from sdcl.registry import REGISTRY, Case
    spec = REGISTRY["matmul"]
    tol = spec.tolerance_of("naive", "float32")
    assert tol.atol_scale == "dot"
    a, b, expected, got = _cancelling_dot()
    scale = float(np.abs(expected).max())
    elem = C.dot_scale(spec, Case("c", (a, b)), expected.size)
    assert np.allclose(elem(), np.sqrt(np.sum((a[0] * b[:, 0]) ** 2)))
    assert abs(float(got[0, 0]) - expected[0, 0]) > tol.atol * scale          # the old max|ref| scale fails it
    assert C.compare(got, expected, np.dtype(np.float32), tol, scale, _result(), elem) == []
    # a kernel that drops one term of the sum, or rounds one product to half, still fails
    dropped = np.array([[got[0, 0] - np.float32(a[0, 5] * b[5, 0])]], np.float32)
    assert C.compare(dropped, expected, np.dtype(np.float32), tol, scale, _result(), elem)
    halfway = np.array([[got[0, 0] + np.float32(a[0, 5] * b[5, 0] * 2.0 ** -11)]], np.float32)
    assert C.compare(halfway, expected, np.dtype(np.float32), tol, scale, _result(), elem)


def test_dot_scale_is_not_computed_when_the_ref_scale_passes():
    e = np.linspace(1.0, 2.0, 10)

    def never():
        raise AssertionError("the per-element scale was computed")
    assert C.compare(e.astype(np.float32), e, np.dtype(np.float32), Tolerance(1e-6, 0.0, "t", "dot"), 2.0,
                     _result(), never) == []


def test_half_inputs_allows_exactly_what_rounding_the_inputs_to_half_moves():
    """attention's flash_mma_f16 tolerance ("half_inputs"): a sharp softmax (scale 3) amplifies the rounding of
    q and k to half past atol * max|ref|; the result of exact arithmetic on the half-rounded inputs passes, while
    twice that error, or the kernel's own error past atol on top of it, fails."""
    from sdcl.registry import REGISTRY, Case
    from sdcl.registry.fuzz import randn
    from sdcl.reference import ops as R
    spec = REGISTRY["attention"]
    tol = spec.tolerance_of("flash_mma_f16", "float32")
    assert tol.atol_scale == "half_inputs"
    q, k, v = (a.astype(np.float32) for a in randn(3, (1, 24, 48), (1, 24, 48), (1, 24, 48)))
    case = Case("sharp", (q, k, v, 2), {"scale": 3.0})
    expected = R.attention(*(a.astype(np.float64) for a in (q, k, v)), 2, scale=3.0)
    h = lambda a: a.astype(np.float16).astype(np.float64)   # noqa: E731
    on_half = R.attention(h(q), h(k), h(v), 2, scale=3.0)
    scale = float(np.abs(expected).max())
    assert np.abs(on_half - expected).max() > tol.atol * scale            # the inputs' rounding alone: past atol
    extra = C.half_input_effect(spec, case, expected)
    assert np.allclose(extra(), np.abs(on_half - expected).reshape(-1), rtol=0, atol=1e-12)
    f32 = np.dtype(np.float32)
    assert C.compare(on_half.astype(np.float32), expected, f32, tol, scale, _result(), elem_extra=extra) == []
    doubled = (expected + 2 * (on_half - expected)).astype(np.float32)   # twice what the rounding moves: fails
    assert C.compare(doubled, expected, f32, tol, scale, _result(), elem_extra=extra)
    i = np.unravel_index(np.argmax(np.abs(on_half - expected)), expected.shape)
    off = on_half.copy()
    off[i] += np.sign(on_half[i] - expected[i]) * 1.5 * tol.atol * scale     # own error past atol, on top
    assert C.compare(off.astype(np.float32), expected, f32, tol, scale, _result(), elem_extra=extra)
    # without the allowance (another tolerance scale), the half-rounded result fails
    assert C.compare(on_half.astype(np.float32), expected, f32, tol, scale, _result())


def test_half_inputs_scale_follows_the_terms_of_a_cancelling_attention_output():
    """The tensor-core attention's own error (weights p rounded to half for P V) follows sqrt(sum_j p_j^2 v_j^2), the
    size of P V's terms (OpSpec.terms), not max|ref|: diffuse attention over keys whose v average out gives outputs
    far smaller than their terms (an H100's thorough run failed correct kernels so). Those terms' scale passes the
    half-rounded weights, while a kernel that drops a key still fails."""
    from sdcl.registry import REGISTRY, Case
    from sdcl.registry.fuzz import randn
    from sdcl.reference import ops as R
    spec = REGISTRY["attention"]
    tol = spec.tolerance_of("gemm_mma_f16", "float32")
    q, k, v = randn(5, (1, 24, 3), (1, 15, 3), (1, 15, 3))
    v = v - v.mean(axis=1, keepdims=True)                  # the keys' values average out: outputs near 0
    q, k, v = (a.astype(np.float16).astype(np.float64) for a in (q, k, v))   # half already: no inputs' allowance
    case = Case("cancelling", (q, k, v, 1), {"scale": 0.05})
    expected = R.attention(q, k, v, 1, scale=0.05)
    s = q[0] @ k[0].T * 0.05
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32).astype(np.float16).astype(np.float64)
    got = (p @ v[0])[None].astype(np.float32)              # P in half, exact sums: what gemm_mma_f16 computes
    scale = float(np.abs(expected).max())
    terms = C.dot_scale(spec, case, expected.size)
    want = np.sqrt(np.square(p) @ np.square(v[0])).reshape(-1)
    assert np.allclose(terms(), want, rtol=2e-3, atol=0)   # p before its rounding to half there
    extra = C.half_input_effect(spec, case, expected)
    f32 = np.dtype(np.float32)
    assert C.compare(got, expected, f32, tol, scale, _result(), elem_extra=extra)        # max|ref| alone: fails
    assert C.compare(got, expected, f32, tol, scale, _result(), terms, extra) == []
    dropped = ((p[:, :-1] @ v[0, :-1]) / p[:, :-1].sum(axis=1, keepdims=True))[None].astype(np.float32)
    assert C.compare(dropped, expected, f32, tol, scale, _result(), terms, extra)    # one key left out: fails


def test_float16_tolerance_takes_one_rounding_of_the_output_and_not_two():
    """The float16 rows' tolerance (derived from float32's: spec.float16_tolerance) passes a float32 result
    rounded to half to nearest, and fails the same result truncated (round toward zero: up to twice the error),
    and a second rounding in a chain (an intermediate in half) needs roundings=2."""
    from sdcl.registry.spec import U16, float16_tolerance
    rng = np.random.default_rng(3)
    e = rng.standard_normal(4000) * 10.0 ** rng.integers(-3, 3, 4000)
    t32 = Tolerance(1e-6, 1e-6, "float32 test bound")
    t16 = float16_tolerance(t32)
    assert t16.rtol == pytest.approx(1e-6 + U16 * (1 + 1e-6)) and t16.floor == 2.0 ** -25
    y32 = (e * (1 + 5e-7 * rng.standard_normal(e.shape))).astype(np.float32)   # within t32
    scale = float(np.abs(e).max())
    ok = C.compare(y32.astype(np.float16), e, np.dtype(np.float16), t16, scale, _result())
    assert ok == []
    trunc = (y32.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float16)   # exact: toward 0
    assert C.compare(trunc, e, np.dtype(np.float16), t16, scale, _result())
    twice = (y32.astype(np.float16).astype(np.float32) * np.float32(1 + 2.0 ** -12)).astype(np.float16)
    assert C.compare(twice, e, np.dtype(np.float16), float16_tolerance(t32, roundings=2), scale, _result()) == []


def test_float16_unwritten_outputs_are_named():
    """Runtime.empty's 32-bit poison word, seen as two halves (0xDBAD = -245.6, then a NaN): both count as never
    written where the reference differs; a reference that happens to be -245.625 at an even index is no failure."""
    e = np.linspace(1.0, 2.0, 10)
    g = e.astype(np.float16)
    words = g.view(np.uint16)
    words[4], words[5] = POISON & 0xFFFF, POISON >> 16       # one 4-byte word of poison: elements 4 and 5
    problems = C.compare(g, e, np.dtype(np.float16), Tolerance(1e-3, 0.0, "t"), 2.0, _result())
    assert problems[0] == "2 of 10 output element(s) never written (first at flat index 4)"
    e2 = e.copy()
    e2[4] = -245.625
    g2 = e2.astype(np.float16)
    assert C.compare(g2, e2, np.dtype(np.float16), Tolerance(1e-3, 0.0, "t"), 246.0, _result()) == []


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rounded_spacing_is_numpys_at_the_edges(dtype):
    """The ulp measure's gap, taken from the exponent instead of numpy's conversion and np.spacing: the same at
    powers of two and the ties just below them (which round up), subnormals, zero, max, past max, inf and NaN."""
    fi, rng = np.finfo(dtype), np.random.default_rng(0)
    tie = 2.0 ** -(fi.nmant + 2)          # 1 - tie rounds up to 1 in dtype
    edges = [0.0, 5e-324, float(fi.smallest_subnormal), float(fi.tiny)]
    for k in range(int(fi.minexp) - 3, int(fi.maxexp)):
        p = float(np.ldexp(1.0, k))
        edges += [p, p * (1 - tie), np.nextafter(p * (1 - tie), 0), np.nextafter(p * (1 - tie), 2 * p), p * (1 + tie)]
    top = float(np.nextafter(fi.max, fi.dtype.type(0)))
    parts = [np.array(edges),                                           # each part checked in one call, so the
             np.array([top, float(fi.max), np.inf, np.nan, 2.0 * top]),  # edges take the exponent's way
             np.abs(rng.standard_normal(5000) * 10.0 ** rng.integers(-40, 40, 5000))]
    for xs in parts + np.array_split(parts[2], 50):
        with np.errstate(all="ignore"):
            want = np.maximum(np.spacing(xs.astype(dtype)).astype(np.float64), fi.smallest_subnormal)
            abs_max = float(xs.max())
        np.testing.assert_array_equal(C._rounded_spacing(xs, dtype, abs_max), want)   # NaN where numpy's is


def test_half_values_read_through_the_table_are_numpys():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(C._float64(h), h.astype(np.float64))
