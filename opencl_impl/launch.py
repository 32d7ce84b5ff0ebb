"""What every launcher uses: the `Call` it is given, and the helpers that size NDRanges and pass buffers and scalars.

A launcher is the host code of one variant, named by its registry declaration (Variant.launcher) and called as
`launcher(call, *args, **kwargs)` with the op's own arguments (device arrays, scalars).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from sdcl.opencl_impl.runtime import Runtime
from sdcl.registry.spec import Variant

FLAT_WG = 64        # flat NDRanges are rounded up to this; the driver picks the work-group size
TILE_2D = 16        # 2-D NDRanges (the naive matmul, linear) are rounded up to this in each dimension


@dataclass(frozen=True)
class Call:
    """One launch request: the runtime that owns the arrays, the op, the variant's declaration and every one of its
    knobs (its declared defaults overridden by the chosen ones: launchers and kernels hold no defaults)."""

    rt: Runtime
    op: str
    variant: Variant
    knobs: dict

    def kernel(self, file: str, name: str, defines: dict | None = None, dtype=np.float32) -> "cl.Kernel":
        return self.rt.kernel(file, name, defines, dtype)


def groups(n: int, local: int) -> int:
    """n rounded up to a multiple of the work-group size (kernels bounds-check the tail)."""
    return (n + local - 1) // local * local


def buffer(rt: Runtime, a: cla.Array) -> "cl.Buffer":
    """The buffer a kernel reads for a contiguous array. A slice along the first axis (x[1:], the second half of a
    CFG batch) starts at an offset into its parent buffer; it is copied to an array of its own first."""
    if not a.offset:
        return a.data
    copy = rt.empty(a.shape, a.dtype)
    if a.nbytes:
        rt.copy(copy.data, a.base_data, a.offset, a.nbytes)
    return copy.data


def launch_flat(rt: Runtime, op: str, knl, n: int, *args) -> None:
    """One work-item per element of a flat range of n (rounded up to FLAT_WG; kernels bounds-check the tail)."""
    if n:
        rt.launch(op, knl, (groups(n, FLAT_WG),), None, *args)


def real(dtype, value: float):
    """A kernel scalar argument of type REAL (float for the float16 dtype, which computes in float)."""
    return compute_type(dtype).type(value)


def compute_type(dtype) -> np.dtype:
    """The dtype a kernel computes in (REAL) for arrays of this dtype: float32 for float16 (stored in half), else
    the dtype itself. Scratch that a launcher keeps between its kernels (scores, partial sums) is of this type."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def i32(*values) -> tuple:
    return tuple(np.int32(v) for v in values)


def pick(knobs: dict, *names) -> dict:
    """The knobs a kernel is built with, out of all of a variant's (some are read by the host only)."""
    return {n: knobs[n] for n in names}
