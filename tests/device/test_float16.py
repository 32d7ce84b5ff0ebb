"""The float16 dtype: arrays stored in half between ops, computed in float within each (kernels/common.h DATA). The
variants that implement it are checked against the reference by test_conformance_ops.py like every row; here: the
conversions, what the dispatcher and the policy do with float16 calls, and that the float16 rows can fail."""

import shutil

import numpy as np
import pytest

from sdcl.conformance.runner import check_row
from sdcl.opencl_impl import ops as O
from sdcl.opencl_impl.runtime import Runtime, kernel_dir
from sdcl.opencl_impl.selection import Policy
from sdcl.registry import REGISTRY


def test_astype_from_half_is_exact_for_every_half(rt):
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got = O.astype(rt, rt.to_device(every), np.float32).get()
    assert got.dtype == np.float32
    want = every.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok].view(np.uint32), want[ok].view(np.uint32))   # -0.0 and subnormals too


def test_astype_round_trip_and_refusals(rt):
    x = np.random.default_rng(0).standard_normal((3, 50)).astype(np.float32)
    d = rt.to_device(x)
    assert O.astype(rt, d, np.float32) is d                      # nothing to do
    h = O.astype(rt, d, np.float16)
    np.testing.assert_array_equal(h.get(), x.astype(np.float16))
    np.testing.assert_array_equal(O.astype(rt, h, np.float32).get(), x.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="astype: from float32 to int32"):
        O.astype(rt, d, np.int32)


def test_float16_call_to_a_variant_without_float16_is_refused_by_name(rt):
    from sdcl.opencl_impl.dispatch import run_variant
    spec = REGISTRY["conv2d"]
    lacking = next(v for v in spec.variants if "float16" not in v.dtypes)
    x = rt.to_device(np.ones((1, 2, 6, 6), np.float16))
    w = rt.to_device(np.ones((3, 2, 3, 3), np.float16))
    with pytest.raises(ValueError, match=rf"variant '{lacking.name}' implements .*not float16; the variants of "
                                         r"float16 are \["):
        run_variant(rt, "conv2d", lacking.name, None, x, w, None, 1, 1)


def test_mixed_float16_and_float32_activations_are_refused(rt):
    a = rt.to_device(np.ones((4, 5), np.float16))
    b = rt.to_device(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"add: all inputs must share one dtype, got float16\(4, 5\), float32"):
        O.add(rt, a, b)


def _small(op, rng):
    r = lambda *shape: rng.standard_normal(shape)   # noqa: E731
    return {"linear": ((r(3, 5, 8), r(6, 8), r(6)), {}),
            "conv2d": ((r(1, 4, 7, 7), r(5, 4, 3, 3), r(5)), {"padding": 1}),
            "attention": ((r(2, 9, 16), r(2, 11, 16), r(2, 11, 16), 2), {}),
            "group_norm": ((r(2, 8, 5, 5), 4, r(8), r(8)), {}),
            "softmax": ((r(3, 7),), {}),
            "silu": ((r(4, 9),), {}),
            "add": ((r(4, 9), r(9)), {})}[op]


@pytest.mark.parametrize("op", ["linear", "conv2d", "attention", "group_norm", "softmax", "silu", "add"])
def test_policy_sends_float16_calls_to_float16_variants_only(rt, op):
    """Every candidate the policy may pick for a float16 call implements float16, and the call runs through the
    public op, giving float16."""
    spec = REGISTRY[op]
    if not any("float16" in v.dtypes for v in spec.variants):
        pytest.skip(f"{op}: no variant implements float16 yet")
    args, kwargs = _small(op, np.random.default_rng(0))
    args = [rt.to_device(a.astype(np.float16)) if isinstance(a, np.ndarray) else a for a in args]
    pol = Policy(info=rt.info)
    names = pol._candidates(op, False, "float16")
    assert names and all("float16" in spec.variant(n).dtypes for n in names)
    variant, _ = pol(op, args, kwargs)
    assert "float16" in spec.variant(variant).dtypes
    saved, rt.policy = rt.policy, pol
    try:
        out = getattr(O, op)(rt, *args, **kwargs)
    finally:
        rt.policy = saved
    assert out.dtype == np.float16 and np.all(np.isfinite(out.get()))


def test_a_float16_row_fails_when_the_output_is_rounded_toward_zero(rt, tmp_path):
    """The float16 tolerance allows one rounding of the output to nearest: a common.h whose STORE truncates
    (vstore_half_rtz: up to twice the error) fails silu's float16 row, and the shipped one passes it."""
    spec = REGISTRY["silu"]
    assert check_row(rt, spec, "naive", "float16", "ci", sd=False).passed
    src = (kernel_dir() / "common.h").read_text()
    assert "vstore_half_rte((v), (i), (p))" in src
    (tmp_path / "common.h").write_text(src.replace("vstore_half_rte((v), (i), (p))", "vstore_half_rtz((v), (i), (p))"))
    shutil.copy(kernel_dir() / "elementwise.cl", tmp_path / "elementwise.cl")
    planted = Runtime(rt.device, kernel_path=[tmp_path], context=rt.context, queue=rt.queue)
    row = check_row(planted, spec, "naive", "float16", "ci", sd=False)
    assert not row.passed and "outside rtol" in row.failure
