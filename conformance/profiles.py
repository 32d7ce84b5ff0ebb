"""Hypothesis profiles: `ci` (derandomized, fits the CI budget), `dev`, `thorough` (thousands per op), and `oclgrind`
(a few tiny cases per row, for a simulator that interprets every work-item: no SD shapes, sizes up to TINY_MAX_SIZE,
the default knobs and the smallest tiles of the variant's space, so that full tiles and tails both run).

Select with pytest's `--hypothesis-profile NAME` or `sdcl conformance --profile NAME`.
"""

from hypothesis import HealthCheck, Phase, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
               print_blob=True)

settings.register_profile("ci", max_examples=12, derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("thorough", max_examples=2000, phases=tuple(Phase), **_COMMON)
settings.register_profile("oclgrind", max_examples=4, derandomize=True, database=None, **_COMMON)

# Largest size a fuzzer may draw, per profile (None: the row's own limits).
TINY_MAX_SIZE = 17
MAX_SIZE = {"oclgrind": TINY_MAX_SIZE}

# SD-shape examples (large arrays): under ci (and dev, for knob settings other than the default) only those under
# this many FLOPs run; under oclgrind none (sdcl.conformance.runner.sd_cases).
CI_SD_FLOP_LIMIT = 2e9
