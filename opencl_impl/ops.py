"""The OpenCL ops: the same names and signatures as reference/ops.py, on pyopencl arrays.

Each public function checks its inputs and dispatches to a variant launcher. A launcher is registered with
`@variant(op, name)` and has the signature `launcher(rt, knobs, *args, **kwargs)`, where `rt` is the
`Runtime` that owns the arrays and `knobs` the build-time parameters (`-D` macros) chosen for it. Which variant
runs is the runtime's choice (`Runtime.choose`), "naive" unless a policy says otherwise; conformance and perf call
a named variant directly through `run_variant`.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from opencl_impl.runtime import Runtime, runtime_of

VARIANTS: dict = {}   # op -> {variant name -> launcher}


def variant(op: str, name: str):
    def register(fn):
        VARIANTS.setdefault(op, {})[name] = fn
        return fn
    return register


def run_variant(op: str, name: str, knobs: dict, *args, **kwargs):
    """Run one named variant of an op with the given knobs (conformance and perf use this)."""
    rt = runtime_of(_first_array(args))
    return VARIANTS[op][name](rt, knobs or {}, *args, **kwargs)


def _first_array(args) -> cla.Array:
    for a in args:
        if isinstance(a, cla.Array):
            return a
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], cla.Array):
            return a[0]
    raise ValueError("expected at least one pyopencl array argument")


def _dispatch(op: str, *args, **kwargs):
    rt = runtime_of(_first_array(args))
    name, knobs = rt_choose(rt, op, args)
    return VARIANTS[op][name](rt, knobs, *args, **kwargs)


def rt_choose(rt: Runtime, op: str, args) -> tuple:
    """The (variant, knobs) to run: the runtime's policy for this op if it has one, else the naive kernel."""
    policy = getattr(rt, "policy", None)
    if policy is not None:
        return policy(op, args)
    return "naive", {}


def _float_inputs(op: str, *arrays) -> np.dtype:
    """Same contract as the reference: float arrays of one dtype, contiguous; returns that dtype."""
    present = [a for a in arrays if a is not None]
    for a in present:
        if not isinstance(a, cla.Array):
            raise ValueError(f"{op}: expected pyopencl arrays, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"{op}: expected float32 or float64, got {a.dtype} (shape {a.shape})")
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: expected a contiguous array (shape {a.shape}, strides {a.strides})")
    if len({a.dtype for a in present}) > 1:
        raise ValueError(f"{op}: all inputs must share one dtype, got "
                         + ", ".join(f"{a.dtype}{a.shape}" for a in present))
    return present[0].dtype


def _groups(n: int, local: int) -> int:
    """n rounded up to a multiple of the work-group size (kernels bounds-check the tail)."""
    return (n + local - 1) // local * local


# ------------------------------------------------------------------------------------------------- activations

def silu(x):
    _float_inputs("silu", x)
    return _dispatch("silu", x)


@variant("silu", "naive")
def _silu_naive(rt: Runtime, knobs: dict, x):
    y = rt.empty(x.shape, x.dtype)
    knl = rt.kernel("silu.cl", "silu_naive", knobs, x.dtype)
    rt.launch("silu", knl, (_groups(x.size, 256),), None, x.data, y.data, np.int64(x.size))
    return y
