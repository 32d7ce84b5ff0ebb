"""Every knob setting the tuner may pick, of every reduction, fused-GEGLU and attention variant, equals the reference.

test_conformance_ops fuzzes each variant at its default knobs; here every config of `Variant.configs(rt.info)`
runs on a few small shapes chosen to hit the tails of its tiles and vectors: sizes 1 and primes, rows and
channels that are not multiples of VEC, groups split into several chunks, query and key counts that cross a
64-row tile (Lk = 77 as in cross-attention), causal masks across tiles and across flash_cpu_reg's chunks of keys
(300 > KC), a softmax along an inner axis, -inf entries and a line of only -inf. float32 for every config; float64
too for the default one.
"""

import numpy as np
import pytest

from sdcl.conformance.check import run_case
from sdcl.registry import REGISTRY, Case
from sdcl.registry.fuzz import normalized_rows, randn
from sdcl.opencl_impl.variants.rowwise import _split

OPS = ("group_norm", "group_norm_silu", "layer_norm", "softmax", "geglu", "attention")


def _group_norm_cases():
    def case(name, seed, shape, groups, affine=True, eps=1e-5, mean=0.0, std=1.0):
        x, w, b = randn(seed, shape, shape[1:2], shape[1:2])
        x = normalized_rows(x, x.size // (shape[0] * groups), mean, std)
        return Case(name, (x, groups, w, b) if affine else (x, groups), {"eps": eps})
    return [case("channels_of_35", 0, (2, 6, 7, 5), 3, mean=3.0),           # S = 35: vector tails per channel
            case("split_groups", 1, (1, 4, 33, 65), 2, std=0.01, mean=-0.02),  # 4290 per group: several chunks
            case("n_c_only", 2, (3, 2), 1, affine=False, eps=1e-3)]         # S = 1


def _layer_norm_cases():
    (x1,) = randn(3, (3, 5, 37))
    x1 = normalized_rows(x1, 37, 300.0, 100.0)
    x2, w2, b2 = randn(4, (15, 131), (131,), (131,))
    return [Case("rows_of_37", (x1,), {"eps": 1e-6}), Case("rows_of_131_affine", (x2, w2, b2)),
            Case("rows_of_1", tuple(randn(5, (2, 1))))]


def _softmax_cases():
    (masked,) = randn(6, (4, 70), scale=3.0)
    masked[np.random.default_rng(6).random(masked.shape) < 0.3] = -np.inf
    masked[2] = -np.inf                                                      # a line of only -inf: NaN
    return [Case("rows_of_4099_near_1e4", (1e4 + randn(7, (3, 4099), scale=3.0)[0],)),
            Case("masked_rows_of_70", (masked,)),
            Case("inner_axis", tuple(randn(8, (3, 37, 5), scale=3.0)), {"axis": 1})]


def _geglu_cases():
    return [Case("f_37", tuple(randn(9, (3, 74)))), Case("f_1", tuple(randn(10, (2, 5, 2)))),
            Case("f_131", tuple(randn(11, (1, 262))))]


def _attention_cases():
    def case(name, seed, b, lq, lk, heads, d, **kw):
        return Case(name, tuple(randn(seed, (b, lq, heads * d), (b, lk, heads * d), (b, lk, heads * d))) + (heads,),
                    kw)
    return [case("cross_lk_77", 12, 2, 65, 77, 2, 13),                     # 2 query tiles of 64, key tail
            case("causal_70", 13, 1, 70, 70, 3, 13, causal=True, scale=0.125),
            case("one_token", 14, 1, 1, 1, 1, 13),
            case("causal_300", 15, 1, 300, 300, 2, 13, causal=True)]            # keys past flash_cpu_reg's chunks


CASES = {"group_norm": _group_norm_cases, "group_norm_silu": _group_norm_cases, "layer_norm": _layer_norm_cases,
         "softmax": _softmax_cases, "geglu": _geglu_cases, "attention": _attention_cases}

PARAMS = [(op, v.name) for op in OPS for v in REGISTRY[op].variants if v.name != "naive"] \
    + [("geglu", "naive")]     # naive geglu is the unfused form (split, gelu, multiply)


@pytest.mark.parametrize("op,variant", PARAMS, ids=[f"{o}-{v}" for o, v in PARAMS])
def test_every_config(rt, op, variant):
    spec = REGISTRY[op]
    v = spec.variant(variant)
    configs = v.configs(rt.info)
    if "nvidia_ptx" in v.needs and not rt.info.get("nvidia_ptx"):   # tensor-core variants: the emulation, 2 configs
        configs = [{**k, "MMA_EMULATE": 1} for k in (configs[0], configs[-1])]
    cases = [c for c in CASES[op]() if v.applies is None or v.applies(c.args, c.kwargs)]
    dtypes = [("float32", configs)] + ([("float64", configs[:1])] if rt.info["fp64"] and "float64" in v.dtypes
                                       else [])
    failures = []
    for dtype, knob_sets in dtypes:
        for knobs in knob_sets:
            for case in cases:
                res = run_case(rt, spec, variant, knobs, case, dtype)
                if not res.passed:
                    failures.append(f"{dtype} {knobs} {case.summary()}: {res.message}")
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:20])


TUNED = [p for p in PARAMS if REGISTRY[p[0]].variant(p[1]).space and not REGISTRY[p[0]].variant(p[1]).devices]


@pytest.mark.parametrize("op,variant", TUNED, ids=[f"{o}-{v}" for o, v in TUNED])
def test_space_has_both_forms(rt, op, variant):
    """The tuner can choose between a GPU-style (VEC 1) and a CPU-style (vectors) setting on this device, for a
    variant written for any device (flash_reg, written for GPUs, has no vector knob)."""
    vecs = {k.get("VEC") for k in REGISTRY[op].variant(variant).configs(rt.info)}
    assert 1 in vecs and max(vecs) >= 8, vecs


@pytest.mark.parametrize("count", [1, 2, 15, 16, 17, 64, 65, 4095, 4097, 40960, 2**20 + 3])
@pytest.mark.parametrize("wg,most", [(4 * 16, 8), (256, 64), (1, 1), (16, 1000)])
def test_group_norm_split_covers_every_element_once(count, wg, most):
    split, chunk = _split(count, wg, most)
    assert 1 <= split <= max(1, most)
    assert (split - 1) * chunk < count <= split * chunk          # no empty chunk, none missing
