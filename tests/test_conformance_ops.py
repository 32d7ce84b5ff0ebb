"""Every variant of every registry op equals the reference, on every device under test.

Templates over conformance.registry.REGISTRY: adding a variant or an op adds no test code.
"""

import numpy as np
import pytest
from hypothesis import assume, given, note, settings

from sdcl.conformance.check import run_case
from sdcl.conformance.profiles import CI_SD_FLOP_LIMIT
from sdcl.registry import REGISTRY

DTYPES = ("float32", "float64")
VARIANTS = [(op, v.name) for op, spec in REGISTRY.items() for v in spec.variants]


def _skip_reason(rt, spec, variant, dtype):
    if dtype == "float64" and not rt.info["fp64"]:
        return f"{rt.info['device']} has no fp64"
    for need in spec.variant(variant).needs:
        if not rt.info.get(need):
            return f"{rt.info['device']} lacks {need}"
    return None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,variant", VARIANTS, ids=[f"{o}-{v}" for o, v in VARIANTS])
def test_fuzzed_shapes(rt, op, variant, dtype):
    spec = REGISTRY[op]
    reason = _skip_reason(rt, spec, variant, dtype)
    if reason:
        pytest.skip(reason)
    v = spec.variant(variant)
    knobs = v.knobs

    @given(case=spec.strategy())
    def check(case):
        note(case.summary())
        assume(v.applies is None or v.applies(case.args, case.kwargs))  # e.g. Winograd: 3x3 stride 1 only
        res = run_case(rt, spec, variant, knobs, case, dtype)
        assert res.passed, f"{case.summary()}: {res.message} (max_abs {res.max_abs:.3g}, rel_l2 {res.rel_l2:.3g})"

    check()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,variant", VARIANTS, ids=[f"{o}-{v}" for o, v in VARIANTS])
def test_sd_shapes(rt, op, variant, dtype):
    spec = REGISTRY[op]
    reason = _skip_reason(rt, spec, variant, dtype)
    if reason:
        pytest.skip(reason)
    v = spec.variant(variant)
    cases = [c for c in spec.sd_cases() if v.applies is None or v.applies(c.args, c.kwargs)]
    if settings._current_profile == "ci":
        cases = [c for c in cases if spec.flops(c) <= CI_SD_FLOP_LIMIT]
    if not cases:
        pytest.skip(f"every SD-shape case of {op} is over {CI_SD_FLOP_LIMIT:g} FLOP; run with a dev profile")
    failures = []
    for case in cases:
        res = run_case(rt, spec, variant, v.knobs, case, dtype)
        if not res.passed:
            failures.append(f"{case.summary()}: {res.message}")
    assert not failures, "\n".join(failures)
