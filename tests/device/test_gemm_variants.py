"""The GEMM variants (kernels/gemm/*.cl) at EVERY knob setting the tuner may pick on the device under test (a variant
written for another device type, which the policy never picks there, at its default and largest settings).

test_conformance_ops checks each variant at its default knobs on fuzzed and SD shapes; the tuner (sdcl.perf.tuner)
may store any config in `Variant.configs(rt.info)`, so each of those runs here on one awkward shape per op, chosen
to cross every tile edge (M, N, K not multiples of any tile, some < a tile):
- matmul 67x36 @ 36x72: lda, ldb, ldc multiples of 4, so whole tiles take the REAL4 paths and edge tiles the
  bounds-checked ones;
- batched_matmul 3 x (17x5 @ 5x9): odd leading dimensions and batch offsets (scalar paths), K < every KWG;
- linear (5, 13, 33) @ (31, 33)^T + bias + residual: B transposed, bias, the residual epilogue, odd sizes.
One build of a config serves all three ops (the layout is a kernel argument), so the cost is one build per config.
mma_tf32 runs its real PTX where the device has it; elsewhere the tuner cannot pick it, and the OpenCL C emulation
of mma.sync (MMA_EMULATE=1) runs at two configs, which checks the fragment layouts, tiling and tails, not the PTX.
"""

import math

import numpy as np
import pytest

from sdcl.conformance.check import run_case
from sdcl.registry import REGISTRY, Case
from sdcl.registry.fuzz import randn

GEMM_OPS = ("matmul", "batched_matmul", "linear")
# the GEMM techniques: matmul's variants that its declarations send to the gemm launchers
TECHNIQUES = tuple(v.name for v in REGISTRY["matmul"].variants if "variants.gemm:" in str(v.launcher))


def _cases() -> dict:
    return {"matmul": Case("edges_vec", tuple(randn(1, (67, 36), (36, 72)))),
            "batched_matmul": Case("odd_batched", tuple(randn(2, (3, 17, 5), (3, 5, 9)))),
            "linear": Case("odd_bias_residual", *_with_residual(randn(3, (5, 13, 33), (31, 33), (31,), (5, 13, 31))))}


def _with_residual(arrays):
    *args, r = arrays
    return tuple(args), {"residual": r}


def _largest(configs):
    return max(configs, key=lambda k: math.prod(v for v in k.values() if isinstance(v, int)))


def _configs(rt, spec, name):
    """The configs to check, and the knobs added to run them here. Where the device lacks what a variant needs,
    the tuner cannot pick any of its configs; mma_tf32 then runs emulated at its default and its largest tiles.
    A variant written for another device type (tiled_reg on PoCL, cpu_reg on a GPU) runs, but the policy never
    picks it there: its default and largest configs, which still cross every edge and tail path."""
    v = spec.variant(name)
    configs = v.configs(rt.info)
    if v.runs_on(rt.info):
        return configs, {}
    if all(rt.info.get(need) for need in v.needs):
        return [configs[0], _largest(configs)], {}
    if name == "mma_tf32":
        return [configs[0], max(configs, key=lambda k: (k["MWG"] * k["NWG"], k["KWG"]))], {"MMA_EMULATE": 1}
    return [], {}


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_every_tuning_config(rt, technique):
    cases = _cases()
    failures, checked = [], 0
    for op in GEMM_OPS:
        spec = REGISTRY[op]
        configs, extra = _configs(rt, spec, technique)
        for knobs in configs:
            res = run_case(rt, spec, technique, {**knobs, **extra}, cases[op], "float32")
            checked += 1
            if not res.passed:
                failures.append(f"{op} {technique} {knobs}: {res.message}")
    if not checked:
        pytest.skip(f"{rt.info['device']}: {technique} needs what this device lacks")
    assert not failures, f"{len(failures)} of {checked} configs failed:\n" + "\n".join(failures)


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_float64_default_and_largest_tiles(rt, technique):
    """float64 (the knobs tuned in float32 apply to float64 calls too): the default config and the config with the
    most local memory, which the constraints admit counting 8-byte words."""
    if not rt.info["fp64"]:
        pytest.skip(f"{rt.info['device']} has no fp64")
    if "float64" not in REGISTRY["matmul"].variant(technique).dtypes:
        pytest.skip(f"{technique} implements {REGISTRY['matmul'].variant(technique).dtypes} only")
    cases = _cases()
    failures = []
    for op in GEMM_OPS:
        spec = REGISTRY[op]
        configs, extra = _configs(rt, spec, technique)
        if not configs:
            pytest.skip(f"{rt.info['device']}: {technique} needs what this device lacks")
        biggest = max(configs, key=lambda k: (k.get("MWG", 0) + k.get("NWG", 0)) * k.get("KWG", 0) + k.get("TS", 0))
        for knobs in {repr(k): k for k in (configs[0], biggest)}.values():
            res = run_case(rt, spec, technique, {**knobs, **extra}, cases[op], "float64")
            if not res.passed:
                failures.append(f"{op} {technique} {knobs}: {res.message}")
    assert not failures, "\n".join(failures)


def test_mma_tf32_plain_tf32_is_outside_float32_tolerance(rt):
    """SPLIT=1 (TF32 products) is kept out of the tuning space because the float32 tolerance cannot hold it: show
    that it indeed fails it, so the 3xTF32 split (SPLIT=3) is what makes the variant conform."""
    spec = REGISTRY["matmul"]
    extra = {} if rt.info.get("nvidia_ptx") else {"MMA_EMULATE": 1}
    case = Case("k256", tuple(randn(4, (40, 256), (256, 24))))
    tf32 = run_case(rt, spec, "mma_tf32", {"SPLIT": 1, **extra}, case, "float32")
    split = run_case(rt, spec, "mma_tf32", {"SPLIT": 3, **extra}, case, "float32")
    assert not tf32.passed and 1e-4 < tf32.rel_l2 < 2e-3, tf32   # TF32: ~2^-11 relative per operand
    assert split.passed and split.rel_l2 < 1e-6, split


def test_strided_heads_and_bias_along_m(rt):
    """gemm()'s two-level batch strides (heads of a (B, L, H*D) activation, no copy), alpha and a bias along M,
    which no registry op exercises: Q K^T per head, scaled, for every technique at its default knobs."""
    from sdcl.opencl_impl.variants.gemm import gemm

    b, lq, lk, heads, d = 2, 19, 23, 3, 8
    q, k, bias = randn(5, (b, lq, heads * d), (b, lk, heads * d), (lq,))
    q, k, bias = (x.astype(np.float32) for x in (q, k, bias))
    qh = q.astype(np.float64).reshape(b, lq, heads, d).transpose(0, 2, 1, 3)
    kh = k.astype(np.float64).reshape(b, lk, heads, d).transpose(0, 2, 1, 3)
    expected = (0.25 * qh @ kh.transpose(0, 1, 3, 2) + bias[:, None]).reshape(b * heads, lq, lk)
    for technique in TECHNIQUES:
        knobs = {"MMA_EMULATE": 1} if technique == "mma_tf32" and not rt.info.get("nvidia_ptx") else {}
        knobs = REGISTRY["matmul"].variant(technique).complete(knobs)    # gemm() takes every knob
        dq, dk, dbias = rt.to_device(q), rt.to_device(k), rt.to_device(bias)
        out = rt.empty((b * heads, lq, lk))
        gemm(rt, "test", technique, knobs, dq.data, dk.data, out.data, lq, lk, d, lda=heads * d, ldb=heads * d,
             ldc=lk, trans_b=True, bias=dbias.data, bias_axis="m", alpha=0.25, batch=b * heads, batch_inner=heads,
             a_strides=(lq * heads * d, d), b_strides=(lk * heads * d, d), c_strides=(heads * lq * lk, lq * lk))
        got = out.get()
        err = np.abs(got - expected).max() / np.abs(expected).max()
        assert err < 2e-6, f"{technique}: max error {err:.2e} of max|ref|"


def test_mma_tf32_refuses_devices_without_nvidia_ptx(rt):
    """A clear DeviceError, which the tuner also sees as a config that does not build there (KernelBuildError)."""
    from sdcl.opencl_impl.devices import DeviceError
    from sdcl.opencl_impl.dispatch import run_variant
    from sdcl.opencl_impl.runtime import KernelBuildError

    if rt.info.get("nvidia_ptx"):
        pytest.skip(f"{rt.info['device']} runs NVIDIA PTX")
    a, b = (rt.to_device(x.astype(np.float32)) for x in randn(6, (8, 8), (8, 8)))
    with pytest.raises(DeviceError, match="NVIDIA") as err:
        run_variant(rt, "matmul", "mma_tf32", {}, a, b)
    assert isinstance(err.value, KernelBuildError)


def test_mma_tf32_refuses_float64_by_name(rt):
    """Its declaration says float32 only: a float64 call is refused, never handed to another kernel."""
    from sdcl.opencl_impl.dispatch import run_variant

    if not rt.info["fp64"]:
        pytest.skip(f"{rt.info['device']} has no fp64")
    a, b = (rt.to_device(x) for x in randn(6, (8, 8), (8, 8)))
    with pytest.raises(ValueError, match="matmul: variant 'mma_tf32' implements float32, not float64"):
        run_variant(rt, "matmul", "mma_tf32", {"MMA_EMULATE": 1}, a, b)


def test_tiled_reg_prefetch_at_every_config(rt):
    """gemm_tiled_reg prefetches the next tile into registers when the work-group's tile lies wholly inside A and B
    with REAL4-aligned rows and the next k step is whole. The shapes above are too small for the 128-row tiles to
    do so; here M, N > 2 tiles of 128 with edges, K = 68 (two whole steps of 32, then a tail), for B (K, N) and
    for B^T with a bias: every config runs the prefetch path, the direct staging of the tail and the edge tiles
    (every config the tuner may pick here: on a CPU device, the default and the largest, as _configs says)."""
    cases = {"matmul": Case("prefetch_nn", tuple(randn(4, (267, 68), (68, 264)))),
             "linear": Case("prefetch_nt_bias", tuple(randn(5, (2, 133, 68), (132, 68), (132,))))}
    failures = []
    for op, case in cases.items():
        spec = REGISTRY[op]
        for knobs in _configs(rt, spec, "tiled_reg")[0]:
            res = run_case(rt, spec, "tiled_reg", knobs, case, "float32")
            if not res.passed:
                failures.append(f"{op} {knobs}: {res.message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("technique", TECHNIQUES)
@pytest.mark.parametrize("trans_b", [False, True])
def test_residual_epilogue(rt, technique, trans_b):
    """C = A @ B (+ bias over m) + R through gemm() itself, in both B layouts and in a batch whose items are strided
    as C is (linear reaches only B^T with the bias over n; a convolution's GEMM would take B (K, N) and the bias
    over m): every kernel's epilogue adds R at C's layout, the cpu_reg B (K, N) path in its vector store too."""
    from sdcl.opencl_impl.variants.gemm import gemm
    configs, extra = _configs(rt, REGISTRY["matmul"], technique)
    if not configs:
        pytest.skip(f"{rt.info['device']}: {technique} needs what this device lacks")
    rng = np.random.default_rng(7)
    z, m, n, k = 2, 37, 40, 19       # n = 40: two whole vectors of cpu_reg's NR 16 (its vector store), a sliding tail
    a = rng.standard_normal((z, m, k)).astype(np.float32)
    b = rng.standard_normal((z, n, k) if trans_b else (z, k, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    r = rng.standard_normal((z, m, n)).astype(np.float32)
    want = np.matmul(a.astype(np.float64), np.swapaxes(b, 1, 2) if trans_b else b) + bias[:, None] + r
    c = rt.empty((z, m, n), np.float32)
    gemm(rt, "matmul", technique, {**configs[0], **extra}, rt.to_device(a).data, rt.to_device(b).data, c.data, m, n, k,
         lda=k, ldb=k if trans_b else n, ldc=n, trans_b=trans_b, bias=rt.to_device(bias).data, bias_axis="m",
         residual=rt.to_device(r).data, batch=z, a_strides=(m * k, 0), b_strides=(n * k, 0),
         c_strides=(m * n, 0))
    got = c.get()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), np.abs(got - want).max()
