"""Error measures and the oracle tolerances shared by the tests against torch / diffusers / transformers."""

import numpy as np

# float64 on both sides: only rounding differs, so a formula that is only nearly right fails.
F64_TOL = 1e-10
# float32 on both sides, tiny models: a few ulps (6e-8) per op, accumulated over a few dozen ops and sums of
# up to a few hundred terms, stays well below 1e-5.
F32_TOL = 1e-5


def rel_l2(actual, expected) -> float:
    """||actual - expected||_2 / ||expected||_2, in float64."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
    denom = np.linalg.norm(e)
    return float(np.linalg.norm(a - e) / (denom if denom > 0 else 1.0))


def tol(dtype) -> float:
    return F64_TOL if np.dtype(dtype) == np.float64 else F32_TOL
