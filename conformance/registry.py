"""The op registry: one row per op, read by conformance, perf, the tuner and the docs.

A row (`OpSpec`) declares the reference function, the OpenCL variants with their tuning spaces, a Hypothesis
strategy for inputs (random shapes with sizes 1, primes and sizes that are not multiples of any tile), the real
SD 1.5 / SD 2.1-base shapes (explicit examples, and the perf shapes), the tolerance per dtype with its
numerical reason, and the FLOP and byte counts. Rows live in the family modules `conformance/ops_*.py`; this
module defines the row types and collects them in `REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Case:
    """One named input: positional args (arrays, lists of arrays, scalars) and keyword args."""

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def summary(self) -> str:
        def show(a):
            if isinstance(a, np.ndarray):
                return f"{a.dtype.name}{list(a.shape)}"
            if isinstance(a, (list, tuple)) and a and isinstance(a[0], np.ndarray):
                return "[" + ", ".join(show(x) for x in a) + "]"
            return repr(a)
        parts = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"

    def arrays(self) -> list:
        out = []
        for a in list(self.args) + list(self.kwargs.values()):
            if isinstance(a, np.ndarray):
                out.append(a)
            elif isinstance(a, (list, tuple)):
                out.extend(x for x in a if isinstance(x, np.ndarray))
        return out


@dataclass(frozen=True)
class Tolerance:
    """Pass when every element satisfies |got - ref| <= rtol * |ref| + atol * scale (ref in float64), where
    scale is max|ref|, or with atol_scale="input" max|first input|: for ops whose rounding error is absolute in
    |x| rather than in |ref|, e.g. gelu's 1 + erf(x/sqrt 2), which cancels as x -> -inf where ref -> 0."""

    rtol: float
    atol: float
    reason: str
    atol_scale: str = "ref"     # "ref" or "input"


@dataclass(frozen=True)
class Variant:
    """An OpenCL implementation of an op: launcher name in opencl_impl.ops, default knobs, tuning space."""

    name: str
    knobs: dict = field(default_factory=dict)          # the -D macros used when nothing is tuned
    space: dict = field(default_factory=dict)          # knob -> candidate values, for the tuner
    constraint: Callable | None = None                 # (knobs, device_info) -> bool: may this config build?
    needs: tuple = ()                                  # device features, e.g. ("fp64",): skipped with a reason
    applies: Callable | None = None                    # (args, kwargs) -> bool: the shapes it handles (None: all)
    devices: tuple = ()                                # device types it is written for ("CPU", "GPU"; () = any):
                                                       # untuned selection passes over the others
    tolerance: dict | None = None                      # "float32" / "float64" -> Tolerance, for a variant whose
                                                       # algorithm rounds differently (Winograd); None: the row's
    half_args: tuple = ()                              # positions of the arguments it reads in half storage
                                                       # (float16): checked, tuned and timed with those arguments
                                                       # so stored; the policy picks it only for such calls

    def runs_on(self, info: dict) -> bool:
        """Whether the policy may pick it on a device of this info: written for its type, and every feature it
        needs present."""
        return (not self.devices or info.get("type") in self.devices) and all(info.get(f) for f in self.needs)

    def configs(self, info: dict | None = None) -> list:
        """Every knob setting in the space that the constraint admits (the default first)."""
        import itertools
        names = sorted(self.space)
        out = [dict(self.knobs)]
        for values in itertools.product(*(self.space[n] for n in names)):
            k = {**self.knobs, **dict(zip(names, values))}
            if k not in out and (self.constraint is None or self.constraint(k, info or {})):
                out.append(k)
        return out


@dataclass(frozen=True)
class OpSpec:
    name: str
    reference: Callable
    variants: tuple                                     # of Variant
    strategy: Callable                                  # () -> hypothesis strategy of Case (float64 arrays)
    sd_cases: Callable                                  # () -> list of Case at real SD shapes
    tolerance: dict                                     # "float32" / "float64" -> Tolerance
    flops: Callable                                     # Case -> int
    bytes: Callable                                     # Case -> int (minimum traffic: inputs read + output written)
    output_dtype_follows_input: bool = True

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"{self.name} has no variant {name!r}; it has {[v.name for v in self.variants]}")


def elementwise_bytes(case: Case) -> int:
    """Read every input once, write one output of the first input's size."""
    arrays = case.arrays()
    return sum(a.nbytes for a in arrays) + arrays[0].nbytes


def _collect() -> dict:
    from conformance import ops_elementwise, ops_linalg, ops_norm  # noqa: F401  (families register rows)
    rows = {}
    for module in (ops_linalg, ops_norm, ops_elementwise):
        for spec in module.ROWS:
            if spec.name in rows:
                raise ValueError(f"op {spec.name} declared twice in the registry")
            rows[spec.name] = spec
    return rows


REGISTRY: dict = _collect()
