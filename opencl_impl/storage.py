"""Half storage of a model's weights: the matrices that linear and conv2d read, as float16 on the host (uploaded as
such, or streamed), the rest (norms, biases, embedding tables) as they are.

The OpenCL ops read a float16 weight with their half-storage variants only (Variant.half_args in the registry;
selection.Policy picks them for exactly those calls), accumulating in float: half the weight memory and traffic,
at the registry's half-storage tolerance. `half_mode(rt)` puts the runtime's policy in half mode, where the variants
that compute in float16 (tensor-core float16 attention: Variant.half_compute) serve the model's float32 calls too.
"""

from __future__ import annotations

import numpy as np

HALF_MAX = float(np.finfo(np.float16).max)   # 65504
_NOT_MATRICES = ("token_embedding", "position")   # embedding tables (token_embedding reads them), not GEMM operands


def is_gemm_weight(key: str, a) -> bool:
    """Whether a weight is a linear (2-D) or conv2d (4-D) weight matrix."""
    return a.ndim in (2, 4) and key.endswith("weight") and not any(s in key for s in _NOT_MATRICES)


def half_weights(weights: dict) -> dict:
    """The weights with every linear / conv2d weight rounded to float16 (round to nearest even). A weight whose
    magnitude exceeds half's range (65504) would become inf: ValueError naming it."""
    out = {}
    for key, a in weights.items():
        if is_gemm_weight(key, a):
            big = float(np.max(np.abs(a), initial=0.0))
            if not big <= HALF_MAX:
                raise ValueError(f"half storage: weight {key} {a.shape} has magnitude {big:g}, beyond half's range "
                                 f"({HALF_MAX:g})")
            a = np.asarray(a, dtype=np.float16)
        out[key] = a
    return out


def half_mode(rt, on: bool = True) -> bool:
    """The runtime's policy in half mode (on) or back in float32 (off): with half mode on, the variants that round
    their float32 operands to float16 to compute (Variant.half_compute: on NVIDIA, attention's flash_mma_f16) are
    candidates for every call, as the half-storage ones are for the calls that pass half weights. A runtime without
    a policy runs naive kernels, and stays so. Returns the mode it was in (to restore it)."""
    if rt.policy is None:
        return False
    was, rt.policy.half = rt.policy.half, on
    return was
