"""Hypothesis for the registry's case generators: each row's `fuzz(d)` driven by Hypothesis's choices, so that a
failing case shrinks to a minimal shape. The one place conformance turns a row into a Hypothesis strategy."""

from __future__ import annotations

from hypothesis import strategies as st

from sdcl.registry.spec import OpSpec


class HypothesisDraw:
    """sdcl.registry.fuzz.Draw over a Hypothesis `draw`."""

    def __init__(self, draw, max_size: int | None = None):
        self._draw = draw
        self.max_size = max_size    # cap on sizes (small integer ranges and integer options), e.g. for Oclgrind

    def integers(self, lo: int, hi: int) -> int:
        if self.max_size is not None and hi < 2**16:       # a size, not a seed
            hi = max(lo, min(hi, self.max_size))
        return self._draw(st.integers(lo, hi))

    def choice(self, options):
        options = list(options)
        if self.max_size is not None and all(isinstance(o, int) for o in options):
            options = [o for o in options if o <= self.max_size] or [min(options)]
        return self._draw(st.sampled_from(options))

    def boolean(self) -> bool:
        return self._draw(st.booleans())

    def permutation(self, n: int) -> list:
        return list(self._draw(st.permutations(range(n))))


def cases(spec: OpSpec, max_size: int | None = None) -> st.SearchStrategy:
    """The Hypothesis strategy of a row's fuzzed cases (sizes up to max_size, when given)."""
    return st.composite(lambda draw: spec.fuzz(HypothesisDraw(draw, max_size)))()
