"""Hypothesis building blocks for registry rows: awkward sizes and seeded arrays.

Shapes are drawn by Hypothesis (so a failure shrinks to a minimal shape); values come from a NumPy generator
seeded by a drawn integer (fast, and reproducible from the printed example).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

# 1, primes, and sizes one off the usual tile / work-group multiples.
AWKWARD = (1, 2, 3, 5, 7, 13, 17, 31, 33, 63, 65, 127, 129)


def dim(max_size: int = 65) -> st.SearchStrategy:
    """A size: mostly awkward ones, sometimes any size up to max_size."""
    awkward = [d for d in AWKWARD if d <= max_size]
    return st.one_of(st.sampled_from(awkward), st.integers(1, max_size))


def seeds() -> st.SearchStrategy:
    return st.integers(0, 2**32 - 1)


def randn(seed: int, *shapes, scale: float = 1.0) -> list:
    """Standard normal float64 arrays (cast to the dtype under test by the checker)."""
    rng = np.random.default_rng(seed)
    return [scale * rng.standard_normal(s) for s in shapes]


@st.composite
def shape(draw, min_dims: int = 1, max_dims: int = 4, max_size: int = 129, max_elems: int = 100_000):
    """A shape of awkward sizes whose element count stays under max_elems (later dims shrink to fit)."""
    dims, total = [], 1
    for _ in range(draw(st.integers(min_dims, max_dims))):
        d = draw(dim(max(1, min(max_size, max_elems // total))))
        dims.append(d)
        total *= d
    return tuple(dims)


def normalized_rows(x: np.ndarray, row: int, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """x with every run of `row` consecutive elements (C order) shifted and scaled to exactly this mean and biased
    std (a run of one element becomes `mean`). Normalization tests use it to control the conditioning
    |mean| / std of each normalized row, which random rows of 2 or 3 elements otherwise leave unbounded (their
    sample std can be ~0 beside a large mean: then float rounding of the mean dominates any implementation)."""
    r = x.reshape(-1, row)
    centered = r - r.mean(axis=1, keepdims=True)
    sd = np.sqrt((centered ** 2).mean(axis=1, keepdims=True))
    scaled = np.divide(centered, sd, out=np.zeros_like(centered), where=sd > 0)
    return (mean + std * scaled).reshape(x.shape)
