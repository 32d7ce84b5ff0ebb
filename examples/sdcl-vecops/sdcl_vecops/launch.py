"""Host code of the vec variants: fold the broadcast as sdcl's naive kernels do, launch one work-item per VEC
outputs. `binary_launcher` makes a launcher for any kernel file of the same signature (the planted twin's)."""

from __future__ import annotations

import numpy as np

from sdcl.opencl_impl.launch import Call, buffer, groups
from sdcl.opencl_impl.shapes import fold_broadcast


def binary_launcher(op: str, file: str):
    def launch(call: Call, a, b):
        rt, k = call.rt, call.knobs
        dims, strides = fold_broadcast(a.shape, b.shape)
        y = rt.empty(a.shape, a.dtype)
        if y.size:
            knl = rt.kernel(file, f"{op}_vec", {"VEC": k["VEC"], "WG": k["WG"]}, a.dtype)
            items = -(-y.size // k["VEC"])
            rt.launch(op, knl, (groups(items, k["WG"]),), (k["WG"],), buffer(rt, a), buffer(rt, b), y.data,
                      np.int64(y.size), *(np.int64(d) for d in dims[1:]), *(np.int64(s) for s in strides))
        return y
    return launch


add = binary_launcher("add", "vecops.cl")
mul = binary_launcher("mul", "vecops.cl")
