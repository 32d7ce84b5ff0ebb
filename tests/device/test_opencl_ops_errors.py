"""The OpenCL ops' input contract and the checker's teeth.

- Bad input raises ValueError naming the op and the shapes, wherever the reference raises for the same input.
- Valid inputs that take unusual host paths (host or integer timesteps, host int32 ids, first-axis slices that
  start at an offset into their buffer) give the reference's answer.
- A planted broken kernel (one that skips the last element, one that writes one element past the end, one that
  reads one element past the end of its input) is caught by sdcl.conformance.check.run_case, on any device: the
  poison and guard regions see it.
"""

import dataclasses

import numpy as np
import pytest

import sdcl.opencl_impl.ops as O
from sdcl.conformance.check import run_case
from sdcl.opencl_impl.launch import groups
from sdcl.reference import ops as R
from sdcl.registry import REGISTRY, Case, Variant

F32 = np.float32


def _arr(*shape, dtype=F32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# (name, op, args builder on host arrays, substrings the message must hold besides the op name)
BAD = [
    ("matmul_inner", "matmul", lambda: (_arr(3, 4), _arr(5, 6)), ["(3, 4)", "(5, 6)"]),
    ("matmul_1d", "matmul", lambda: (_arr(4), _arr(4, 2)), ["(4,)"]),
    ("batched_matmul_batch", "batched_matmul", lambda: (_arr(2, 3, 4), _arr(3, 4, 5)), ["(2, 3, 4)", "(3, 4, 5)"]),
    ("linear_in", "linear", lambda: (_arr(2, 7), _arr(5, 6)), ["(2, 7)", "(5, 6)"]),
    ("linear_bias", "linear", lambda: (_arr(2, 6), _arr(5, 6), _arr(4)), ["(5, 6)", "(4,)"]),
    ("conv2d_channels", "conv2d", lambda: (_arr(1, 3, 8, 8), _arr(4, 2, 3, 3)), ["(1, 3, 8, 8)", "(4, 2, 3, 3)"]),
    ("conv2d_3d", "conv2d", lambda: (_arr(3, 8, 8), _arr(4, 3, 3, 3)), ["(3, 8, 8)"]),
    ("conv2d_too_small", "conv2d", lambda: (_arr(1, 2, 2, 2), _arr(4, 2, 3, 3)), ["(4, 2, 3, 3)"]),
    ("conv2d_bias", "conv2d", lambda: (_arr(1, 2, 5, 5), _arr(4, 2, 3, 3), _arr(3)), ["(3,)"]),
    ("group_norm_groups", "group_norm", lambda: (_arr(2, 6, 4), 4), ["(2, 6, 4)", "num_groups=4"]),
    ("group_norm_weight", "group_norm", lambda: (_arr(2, 6, 4), 3, _arr(4)), ["(2, 6, 4)", "(4,)"]),
    ("layer_norm_weight", "layer_norm", lambda: (_arr(2, 6), _arr(5)), ["(2, 6)", "(5,)"]),
    ("geglu_odd", "geglu", lambda: (_arr(2, 7),), ["(2, 7)"]),
    ("attention_heads", "attention", lambda: (_arr(1, 4, 6), _arr(1, 5, 6), _arr(1, 5, 6), 4), ["(1, 4, 6)", "H=4"]),
    ("attention_kv", "attention", lambda: (_arr(1, 4, 6), _arr(1, 5, 6), _arr(1, 3, 6), 2), ["(1, 3, 6)"]),
    ("attention_causal_lengths", "attention", lambda: (_arr(1, 4, 6), _arr(1, 5, 6), _arr(1, 5, 6), 2, True),
     ["Lq == Lk", "(1, 4, 6)"]),
    ("add_broadcast", "add", lambda: (_arr(2, 4), _arr(3)), ["(2, 4)", "(3,)"]),
    ("mul_b_larger", "mul", lambda: (_arr(4), _arr(2, 4)), ["(4,)", "(2, 4)"]),
    ("concat_shapes", "concat", lambda: ([_arr(2, 3), _arr(3, 3)], 1), ["(2, 3)", "(3, 3)"]),
    ("concat_axis", "concat", lambda: ([_arr(2, 3), _arr(2, 3)], 2), ["axis 2", "(2, 3)"]),
    ("upsample_3d", "upsample_nearest2x", lambda: (_arr(2, 3, 4),), ["(2, 3, 4)"]),
    ("permute_axes", "permute", lambda: (_arr(2, 3, 4), (0, 2, 2)), ["(0, 2, 2)", "(2, 3, 4)"]),
    ("token_embedding_tables", "token_embedding",
     lambda: (np.zeros((2, 3), np.int64), _arr(10, 8), _arr(2, 8)), ["(2, 3)", "(10, 8)", "(2, 8)"]),
    ("token_embedding_id_range", "token_embedding",
     lambda: (np.array([[0, 10]]), _arr(10, 8), _arr(4, 8)), ["[0, 10)"]),
    ("token_embedding_float_ids", "token_embedding",
     lambda: (np.zeros((2, 3)), _arr(10, 8), _arr(4, 8)), ["float64", "(2, 3)"]),
    ("timestep_embedding_2d", "timestep_embedding", lambda: (np.zeros((2, 1), F32), 8), ["(2, 1)"]),
    ("mixed_dtypes", "add", lambda: (_arr(2, 3), _arr(2, 3, dtype=np.float64)), ["float32(2, 3)",
                                                                              "float64(2, 3)"]),
]


def _to_device(rt, a):
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return rt.to_device(a)
    if isinstance(a, list):
        return [_to_device(rt, x) for x in a]
    return a


@pytest.mark.parametrize("name,op,build,parts", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_op_and_shapes(rt, name, op, build, parts):
    args = build()
    with pytest.raises(ValueError):          # the reference rejects it too: the contract is the same
        getattr(R, op)(*args)
    with pytest.raises(ValueError) as err:
        getattr(O, op)(rt, *[_to_device(rt, a) for a in args])
    msg = str(err.value)
    assert msg.startswith(f"{op}: "), msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_host_array_is_rejected_with_its_type(rt):
    with pytest.raises(ValueError, match=r"silu: expected pyopencl arrays, got ndarray"):
        O.silu(rt, _arr(3))
    with pytest.raises(ValueError, match=r"linear: expected pyopencl arrays, got ndarray"):
        O.linear(rt, rt.to_device(_arr(2, 3)), _arr(4, 3))


def test_integer_device_array_is_rejected(rt):
    with pytest.raises(ValueError, match=r"gelu: expected float32, float64 or float16, got int32 \(shape \(3,\)\)"):
        O.gelu(rt, rt.to_device(np.arange(3, dtype=np.int32)))


# ------------------------------------------------------------------------------- valid inputs, unusual paths

def _close(got, ref, rtol):
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, got.dtype, ref.shape, ref.dtype)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("timesteps", [np.array([0, 1, 999]), np.array([3.0, 999.0], F32),
                                       np.array([17, 500], np.int32), np.array([0.5, 999.0])],
                         ids=["host_int64", "host_float32", "host_int32", "host_float64"])
def test_timestep_embedding_host_timesteps(rt, timesteps):
    # The UNet passes host timesteps: the result is float32 (float64 for float64 timesteps), as the reference's.
    # Error bound: the argument t f carries ~4 t eps (registry row), 2.4e-4 for t < 1000 in float32.
    ref = R.timestep_embedding(timesteps, 33, True, 1.0)
    got = O.timestep_embedding(rt, timesteps, 33, True, 1.0).get()
    _close(got, ref, 3e-4 if ref.dtype == np.float32 else 1e-12)


def test_timestep_embedding_integer_device_timesteps(rt):
    t = np.array([1, 250, 999], dtype=np.int64)
    got = O.timestep_embedding(rt, rt.to_device(t), 320).get()
    _close(got, R.timestep_embedding(t, 320), 3e-4)


def test_token_embedding_int32_host_ids(rt):
    ids = np.array([[0, 5, 9], [9, 1, 2]], dtype=np.int32)
    tok, pos = _arr(10, 8), _arr(4, 8, seed=1)
    got = O.token_embedding(rt, ids, rt.to_device(tok), rt.to_device(pos)).get()
    _close(got, R.token_embedding(ids, tok, pos), 6e-8)    # one rounded addition


def test_first_axis_slices_at_an_offset(rt):
    # x[1:] of a device array starts at a byte offset into its parent buffer (pyopencl refuses .data on it);
    # the models slice the CFG batch and the VAE's quant_conv weight this way.
    a, b = _arr(3, 5, 7), _arr(3, 5, 7, seed=1)
    da, db = rt.to_device(a), rt.to_device(b)
    _close(O.add(rt, da[1:], db[2:]).get(), R.add(a[1:], b[2:]), 6e-8)
    w = _arr(6, 7, seed=2)
    dw = rt.to_device(w)
    _close(O.linear(rt, da[1:], dw[3:]).get(), R.linear(a[1:], w[3:]), 1e-5)
    _close(O.permute(rt, da[2:], (2, 0, 1)).get(), R.permute(a[2:], (2, 0, 1)), 0)


# ------------------------------------------------------------------------------- planted broken kernels

_PLANTED = {
    # skips the last element: y[n-1] keeps the poison
    "skip_last": """
__kernel void silu_planted(__global const REAL *x, __global REAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n - 1) y[i] = x[i] / ((REAL)1 + exp(-x[i]));
}
""",
    # writes every element and then one element past the end
    "one_past_end": """
__kernel void silu_planted(__global const REAL *x, __global REAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) y[i] = x[i] / ((REAL)1 + exp(-x[i]));
    if (i == n - 1) y[n] = 0;
}
""",
    # reads one element past the end of its input: the last output takes x[n] into account (0 * NaN is NaN;
    # the compiler may not fold 0 * v to 0 without -cl-fast-relaxed-math / -cl-finite-math-only)
    "reads_past_end": """
__kernel void silu_planted(__global const REAL *x, __global REAL *y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) y[i] = x[i] / ((REAL)1 + exp(-x[i])) + (REAL)0 * x[i + 1];
}
""",
}


def _planted_spec(tmp_path, kind: str):
    """The silu row with one more variant, declared here (its launcher a function, not a "module:function" name),
    running a planted kernel from tmp_path."""
    src = tmp_path / f"silu_{kind}.cl"
    src.write_text("#ifdef REAL_IS_DOUBLE\n#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n#endif\n" + _PLANTED[kind])

    def launch(call, x):
        rt = call.rt
        y = rt.empty(x.shape, x.dtype)
        knl = rt.kernel(str(src), "silu_planted", call.knobs, x.dtype)   # an absolute path: found as it is
        rt.launch("silu", knl, (groups(x.size, 64),), None, x.data, y.data, np.int64(x.size))
        return y

    spec = REGISTRY["silu"]
    return dataclasses.replace(spec, variants=spec.variants + (Variant(f"planted_{kind}", launcher=launch),))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,expected", [("skip_last", "never written"), ("one_past_end", "out-of-bounds"),
                                           ("reads_past_end", "read outside an input's bounds")])
@pytest.mark.parametrize("size", [1, 63, 129])
def test_planted_kernel_is_caught(rt, tmp_path, kind, expected, dtype, size):
    if dtype == "float64" and not rt.info["fp64"]:
        pytest.skip(f"{rt.info['device']} has no fp64")
    case = Case("planted", (np.linspace(-3, 3, size),))
    res = run_case(rt, _planted_spec(tmp_path, kind), f"planted_{kind}", {}, case, dtype)
    assert not res.passed
    assert expected in res.message, res.message


def test_the_real_kernel_passes_the_same_case(rt):
    # The control for the planted tests: the same case passes with the shipped kernel.
    res = run_case(rt, REGISTRY["silu"], "naive", {}, Case("planted", (np.linspace(-3, 3, 129),)), "float32")
    assert res.passed, res.message


def test_planted_variants_stay_out_of_the_registry():
    assert [v.name for v in REGISTRY["silu"].variants] == ["naive", "vec"]     # the declared ones, no planted_*
