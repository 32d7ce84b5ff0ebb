"""The row types of the op registry: Case, Tolerance, Variant, OpSpec, and the ladder's tiers.

A row (`OpSpec`) declares the reference function, the OpenCL variants, a case generator for fuzzing (random
shapes with sizes 1, primes and sizes that are not multiples of any tile; see sdcl.registry.fuzz), the real
SD 1.5 / SD 2.1-base shapes (explicit examples, and the perf shapes), the tolerance per dtype with its numerical
reason, and the FLOP and byte counts. A `Variant` is the one declaration of an OpenCL implementation: its launcher,
default knobs, tuning space, constraint, device types, needed features, dtypes and ladder tier. Everything above
the registry (runtime, policy, gate, tuner, benchmarks, ladder, dashboard) reads these declarations.

Plain data and small functions: no pyopencl, no Hypothesis.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

DTYPES = ("float32", "float64", "float16")   # float16: arrays stored in half, the arithmetic in float (common.h DATA)
WIDE_DTYPES = ("float32", "float64")         # what a variant implements unless it declares float16 too
U16 = 2.0 ** -11                             # float16's unit roundoff: |fl(x) - x| <= U16 |x| (normal range)

# The ladder's rows, in order: each optimization the project measures, as in the papers' per-technique tables.
# A variant names the tier that introduces it (Variant.tier); `sdcl ladder` allows, at row i, every variant whose
# tier is one of the first i + 1. A tier not listed here (a plugin's own) comes after these, in order of appearance.
TIERS = ("naive", "reductions", "tiled GEMM", "im2col", "im2win", "tiled direct conv", "Winograd", "fused GroupNorm",
         "fused GELU", "partially fused softmax", "FlashAttention", "tensor-core GEMM (3xTF32)", "half storage",
         "tensor-core float16")


# The device features a variant may need (Variant.needs), as sdcl.opencl_impl.devices.device_info reports them.
FEATURES = {
    "nvidia_ptx": "nvidia_ptx (inline NVIDIA PTX: mma.sync on an NVIDIA GPU)",
    "long_loops": "long_loops (loops past 65535 iterations per work-item: Mesa llvmpipe silently ends them, "
                  "gallivm's LP_MAX_TGSI_LOOP_ITERATIONS)",
}


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
    scale is max|ref|, or
    - with atol_scale="input", max|first input|: for ops whose rounding error is absolute in |x| rather than in
      |ref|, e.g. gelu's 1 + erf(x/sqrt 2), which cancels as x -> -inf where ref -> 0;
    - with atol_scale="dot", per element the larger of max|ref| and sqrt(sum_k (a_k b_k)^2), the op's reference
      applied to the squared inputs (for ops bilinear in their inputs: matmul, linear with b^2, conv2d): the
      rounding of a dot product follows the size of its terms and partial sums, and a sum of terms that cancels
      (a small result) keeps the error of the terms. That magnitude is what a sum of those terms with random
      signs reaches, so an atol calibrated on random data relative to max|ref| holds there too;
    - with atol_scale="half_inputs", atol times the "dot" scale (per element the larger of max|ref| and the size of
      the terms its last sum adds, OpSpec.terms) plus, per element, |ref(the inputs rounded to float16) - ref|: for
      variants that declare the rounding of their inputs to half (tensor-core float16), whose effect on the result
      depends on the op's conditioning (attention's exp amplifies the scores' rounding by scale*|q||k|), so the
      allowance is that effect computed exactly and atol bounds the variant's own arithmetic, which, like a dot
      product's, follows the size of the terms summed (attention's p_j v_j, whose sum can cancel)."""

    rtol: float
    atol: float
    reason: str
    atol_scale: str = "ref"     # "ref", "input", "dot" or "half_inputs"
    floor: float = 0.0          # an absolute allowance added to the bound (float16's subnormal rounding)


def float16_tolerance(t32: Tolerance, roundings: int = 1) -> Tolerance:
    """The float16 dtype's tolerance, derived from the float32 one: a float16 variant reads inputs that are exactly
    half values (the reference reads the same), computes in float32 as the float32 variant does (error e32 within
    t32), and rounds its output to half once: |y16 - y32| <= U16 |y32| <= U16 (|ref| + e32), or 2^-25 absolute
    below half's normal range (half its subnormal spacing 2^-24). So |y16 - ref| <= (rtol + U16 (1 + rtol)) |ref|
    + atol (1 + U16) scale + 2^-25. A variant that rounds r values in a chain to half (an unfused op's
    intermediates in half, as a framework's float16 keeps them) declares roundings=r: (1 + U16)^r in place of
    1 + U16, and r 2^-25 (each rounding's absolute part, carried through factors of magnitude <= 1)."""
    grow = (1 + U16) ** roundings
    once = "once" if roundings == 1 else f"{roundings} times in a chain"
    return Tolerance(rtol=t32.rtol + (grow - 1) * (1 + t32.rtol), atol=t32.atol * grow,
                     reason=f"float16 storage: the float32 bound ({t32.reason.rstrip('.')}) and the output rounded to "
                            f"half {once} (U16 = 2^-11 relative, 2^-25 absolute below half's normal range)",
                     atol_scale=t32.atol_scale, floor=roundings * 2.0 ** -25)


@dataclass(frozen=True)
class Variant:
    """An OpenCL implementation of an op, declared once.

    launcher: "module:function" of its host code, called as function(call, *args, **kwargs) with a
    sdcl.opencl_impl.launch.Call (runtime, op, this variant, its complete knobs); "{op}" in it stands for the op's
    name, so one declaration can serve several ops (the GEMM techniques serve matmul, batched_matmul and linear).
    knobs: the -D macros (and host-side knobs) used when nothing is tuned; the launcher always receives every knob
    (these, overridden by the chosen ones), so kernels hold no defaults of their own."""

    name: str
    knobs: dict = field(default_factory=dict)          # the default knob setting
    space: dict = field(default_factory=dict)          # knob -> candidate values, for the tuner
    constraint: Callable | None = None                 # (knobs, device_info) -> bool: may this config build?
    needs: tuple = ()                                  # device features, e.g. ("nvidia_ptx",): skipped with a reason
    applies: Callable | None = None                    # (args, kwargs) -> bool: the shapes it handles (None: all)
    devices: tuple = ()                                # device types it is written for ("CPU", "GPU"; () = any):
                                                       # untuned selection passes over the others
    tolerance: dict | None = None                      # dtype name -> Tolerance, for a variant whose
                                                       # algorithm rounds differently (Winograd); None: the row's
    half_args: tuple = ()                              # positions of the arguments it reads in half storage
                                                       # (float16): checked, tuned and timed with those arguments
                                                       # so stored; the policy picks it only for such calls
    launcher: object = ""                              # "module:function" (see above), or the function itself
    half_compute: bool = False                         # rounds its float32 operands to float16 to compute
                                                       # (tensor-core float16): the policy picks it only in half
                                                       # mode (selection.Policy.half), never for a float32 call
    tier: str = "naive"                                # the ladder row that introduces it (TIERS)
    dtypes: tuple = WIDE_DTYPES                        # the dtypes it implements (others: refused, skipped);
                                                       # "float16" where its kernels read and write half (DATA)

    def runs_on(self, info: dict) -> bool:
        """Whether the policy may pick it on a device of this info: written for its type, and every feature it
        needs present."""
        return (not self.devices or info.get("type") in self.devices) and all(info.get(f) for f in self.needs)

    def row_dtypes(self) -> tuple:
        """The dtypes of its rows in the gate and the tests: float32 and float64 (a dtype it lacks skips with the
        reason), and float16 where it implements that."""
        return WIDE_DTYPES + tuple(d for d in DTYPES if d not in WIDE_DTYPES and d in self.dtypes)

    def launcher_for(self, op: str) -> str:
        return self.launcher.replace("{op}", op) if isinstance(self.launcher, str) else self.launcher

    def complete(self, knobs: dict | None) -> dict:
        """Every knob: the declared defaults overridden by the given ones."""
        return {**self.knobs, **(knobs or {})}

    def configs(self, info: dict | None = None) -> list:
        """Every knob setting in the space that the constraint admits (the default first)."""
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
    fuzz: Callable                                      # (sdcl.registry.fuzz.Draw) -> Case (float64 arrays)
    sd_cases: Callable                                  # () -> list of Case at real SD shapes
    tolerance: dict                                     # "float32" / "float64" -> Tolerance
    flops: Callable                                     # Case -> int
    bytes: Callable                                     # Case -> int (minimum traffic: inputs read + output written)
    output_dtype_follows_input: bool = True
    # Arguments a kernel adds in its epilogue (linear's residual): they leave the product's best kernel and knobs as
    # they are, so a call with them looks up the tuning table's entry for the call without them.
    epilogue_args: tuple = ()
    # (the case's args, kwargs) -> per output element sqrt(sum_j t_j^2) over the terms t_j of the op's last sum, the
    # size its rounding follows (Tolerance "dot" and "half_inputs"); None: the reference on the squared inputs, which
    # is that for ops bilinear in their inputs (matmul, linear, conv2d)
    terms: Callable | None = None

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"{self.name} has no variant {name!r}; it has {[v.name for v in self.variants]}")

    def tolerance_of(self, variant: str, dtype) -> Tolerance:
        """The tolerance a variant is judged by: its own (e.g. Winograd's, with its reason), else the row's; for
        float16, the one declared for float16, else derived from the float32 one (float16_tolerance)."""
        own = next((v.tolerance for v in self.variants if v.name == variant), None) or self.tolerance
        name = np.dtype(dtype).name
        if name == "float16" and name not in own:
            return float16_tolerance(own["float32"])
        return own[name]


def elementwise_bytes(case: Case) -> int:
    """Read every input once, write one output of the first input's size."""
    arrays = case.arrays()
    return sum(a.nbytes for a in arrays) + arrays[0].nbytes
