"""Case generators of the registry rows: awkward sizes and seeded arrays, drawn through a small `Draw` interface.

A row's `fuzz(d)` builds one Case from the choices `d` makes: `d.integers`, `d.choice`, `d.boolean`,
`d.permutation`. Two implementations make those choices:
- sdcl.conformance.strategies.HypothesisDraw: Hypothesis draws them, so a failure shrinks to a minimal shape
  (the gate and the tests);
- RandomDraw here: a seeded NumPy generator (quick samples with no test dependency, e.g. the tuner's checks).
Shapes come from the choices; values from a NumPy generator seeded by a drawn integer (fast, and reproducible from
the printed example).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

# 1, primes, and sizes one off the usual tile / work-group multiples.
AWKWARD = (1, 2, 3, 5, 7, 13, 17, 31, 33, 63, 65, 127, 129)


class Draw(Protocol):
    def integers(self, lo: int, hi: int) -> int: ...           # lo <= n <= hi
    def choice(self, options: Sequence): ...                    # one of options
    def boolean(self) -> bool: ...
    def permutation(self, n: int) -> list: ...                  # a permutation of range(n)


class RandomDraw:
    """Draw's choices from a seeded NumPy generator."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def integers(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi, endpoint=True))

    def choice(self, options: Sequence):
        return options[int(self.rng.integers(len(options)))]

    def boolean(self) -> bool:
        return bool(self.rng.integers(2))

    def permutation(self, n: int) -> list:
        return [int(i) for i in self.rng.permutation(n)]


def dim(d: Draw, max_size: int = 65) -> int:
    """A size: half the time an awkward one, else any size up to max_size (shrinks towards the awkward 1)."""
    if not d.boolean():
        return d.choice([s for s in AWKWARD if s <= max_size] or [1])
    return d.integers(1, max_size)


def dims(d: Draw, most: int, max_size: int) -> tuple:
    """0 to `most` sizes (a shape's leading or spatial axes)."""
    return tuple(dim(d, max_size) for _ in range(d.integers(0, most)))


def seed_of(d: Draw) -> int:
    return d.integers(0, 2**32 - 1)


def shape(d: Draw, min_dims: int = 1, max_dims: int = 4, max_size: int = 129, max_elems: int = 100_000) -> tuple:
    """A shape of awkward sizes whose element count stays under max_elems (later dims shrink to fit)."""
    out, total = [], 1
    for _ in range(d.integers(min_dims, max_dims)):
        s = dim(d, max(1, min(max_size, max_elems // total)))
        out.append(s)
        total *= s
    return tuple(out)


def randn(seed: int, *shapes, scale: float = 1.0) -> list:
    """Standard normal float64 arrays (cast to the dtype under test by the checker)."""
    rng = np.random.default_rng(seed)
    return [scale * rng.standard_normal(s) for s in shapes]


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
