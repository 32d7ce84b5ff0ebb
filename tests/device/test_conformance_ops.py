"""Every variant of every registry op equals the reference, on every device under test.

Templates over sdcl.registry.REGISTRY, run by the gate's own runner (sdcl.conformance.runner.check_row): adding a
variant or an op adds no test code. `test_fuzzed_shapes` fuzzes with the Hypothesis profile in force (ci unless
SDCL_HYPOTHESIS_PROFILE says otherwise); `test_sd_shapes` runs the real SD shapes (under ci, those up to
CI_SD_FLOP_LIMIT FLOPs). Both at every knob setting of `row_configs` (ci: the defaults and the tuning tables'
settings; dev and thorough: every setting the variant's space admits on the device).
"""

import pytest
from hypothesis import settings

from sdcl.conformance.runner import References, check_row, row_configs, sd_cases
from sdcl.registry import REGISTRY

ROWS = [(op, v.name, d) for op, spec in REGISTRY.items() for v in spec.variants for d in v.row_dtypes()]
IDS = [f"{o}-{v}-{d}" for o, v, d in ROWS]
REFS = References(max_bytes=1 << 30)   # references shared by the rows of this module, as in the gate


def _check(rt, op, variant, dtype, **parts):
    spec, profile = REGISTRY[op], settings._current_profile
    row = check_row(rt, spec, variant, dtype, profile, refs=REFS,
                    configs=row_configs(rt, spec, spec.variant(variant), profile), **parts)
    if row.skipped:
        pytest.skip(row.skipped)
    assert row.passed, row.failure
    return row


@pytest.mark.parametrize("op,variant,dtype", ROWS, ids=IDS)
def test_fuzzed_shapes(rt, op, variant, dtype):
    _check(rt, op, variant, dtype, sd=False)


@pytest.mark.parametrize("op,variant,dtype", ROWS, ids=IDS)
def test_sd_shapes(rt, op, variant, dtype):
    spec = REGISTRY[op]
    if not sd_cases(spec, spec.variant(variant), settings._current_profile):
        pytest.skip(f"no SD-shape case of {op} that {variant} handles is within the profile's FLOP limit; "
                    "run with a dev profile")
    _check(rt, op, variant, dtype, fuzz=False)
