"""Hypothesis for the registry's case generators: each row's `fuzz(d)` driven by Hypothesis's choices, so that a
failing case shrinks to a minimal shape. The one place conformance turns a row into a Hypothesis strategy."""

from __future__ import annotations

from hypothesis import strategies as st

from sdcl.registry.spec import OpSpec


class HypothesisDraw:
    """sdcl.registry.fuzz.Draw over a Hypothesis `draw`."""

    def __init__(self, draw):
        self._draw = draw

    def integers(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))

    def choice(self, options):
        return self._draw(st.sampled_from(list(options)))

    def boolean(self) -> bool:
        return self._draw(st.booleans())

    def permutation(self, n: int) -> list:
        return list(self._draw(st.permutations(range(n))))


def cases(spec: OpSpec) -> st.SearchStrategy:
    """The Hypothesis strategy of a row's fuzzed cases."""
    return st.composite(lambda draw: spec.fuzz(HypothesisDraw(draw)))()
