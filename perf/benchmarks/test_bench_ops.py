"""Op benchmarks: every registry op and variant at its real SD 1.5 / 2.1-base shapes (spec.sd_cases()), float32,
beside the torch baseline of the same op at the same shapes, measured in the same rounds.

`-m quick` keeps QUICK_OPS at their smallest SD shape: the CI subset, seconds in all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sdcl.conformance.check import cast_case, device_args
from sdcl.registry import REGISTRY
from sdcl.opencl_impl.dispatch import run_variant
from sdcl.perf import measure

# Cheap ops whose smallest SD case runs in about a millisecond on PoCL: the CI subset.
QUICK_OPS = ("silu", "softmax")


@dataclass(frozen=True)
class OpItem:
    op: str
    variant: str
    case_index: int
    case_name: str
    quick: bool

    @property
    def id(self) -> str:
        return f"{self.op}-{self.variant}-{self.case_name}"


def _items(ops) -> list:
    """One item per (op, variant, SD case); the cases are generated here only for their names and sizes."""
    items = []
    for spec in (REGISTRY[op] for op in ops):
        cases = spec.sd_cases()
        smallest = min(range(len(cases)), key=lambda i: spec.bytes(cases[i])) if cases else None
        for v in spec.variants:
            for i, c in enumerate(cases):
                if v.applies is not None and not v.applies(c.args, c.kwargs):
                    continue  # e.g. Winograd at a 1x1 or stride-2 layer: not a shape it handles
                items.append(OpItem(spec.name, v.name, i, c.name, spec.name in QUICK_OPS and i == smallest))
        del cases
    return items


def pytest_generate_tests(metafunc):
    """Parametrize test_op by the registry. Under `-m quick` only QUICK_OPS are enumerated: generating every SD
    case just to name it (and deselect it) costs seconds."""
    if "item" not in metafunc.fixturenames:
        return
    quick_only = (metafunc.config.getoption("-m") or "").strip() == "quick"
    ops = [op for op in REGISTRY if not quick_only or op in QUICK_OPS]
    metafunc.parametrize("item", [pytest.param(it, id=it.id, marks=[pytest.mark.quick] if it.quick else [])
                                  for it in _items(ops)])


@pytest.mark.op
def test_op(benchmark, rt, peak, torch_device, item, pytestconfig):
    spec = REGISTRY[item.op]
    v = spec.variant(item.variant)
    missing = [n for n in v.needs if not rt.info.get(n)]
    if missing:
        pytest.skip(f"{rt.info['device']} lacks {', '.join(missing)}")
    case = cast_case(spec.sd_cases()[item.case_index], np.float32)

    pool = measure.tracking(rt)
    pool.reset()
    args, kwargs = device_args(rt, spec, v.name, case)
    call = lambda: run_variant(rt, spec.name, v.name, v.knobs, *args, **kwargs)

    tdev, why_not = torch_device
    baseline = None
    if tdev is not None:
        from sdcl.perf.torch_ops import op_call
        baseline = op_call(spec.name, case.args, case.kwargs, tdev)

    timing = measure.run(benchmark, rt, call, baseline, budget_s=measure.budget(pytestconfig),
                         baseline_on_cpu=tdev == "cpu")
    info = measure.summary(timing, measure.wall_rounds(benchmark), spec.flops(case), spec.bytes(case), peak)
    benchmark.extra_info.update(
        kind="op", device=peak["device"], op=spec.name, variant=v.name, knobs=dict(v.knobs),
        case=case.summary(), dtype="float32", peak_alloc_bytes=pool.peak_bytes,
        torch_device=tdev, torch_missing_reason=why_not, **info)

