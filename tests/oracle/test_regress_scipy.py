"""The regression check's Mann-Whitney U against SciPy's, exact and asymptotic, with and without ties."""

import numpy as np
import pytest
from scipy import stats
from sdcl.perf import regress


@pytest.mark.parametrize("n1,n2,shift,ties", [(5, 7, 0.0, False), (12, 15, 0.8, False), (40, 60, 0.3, False),
                                              (20, 25, 0.5, True), (80, 90, 0.1, False)])
def test_mann_whitney_u_matches_scipy(n1, n2, shift, ties):
    rng = np.random.default_rng(n1 * 100 + n2)
    x, y = rng.standard_normal(n1), rng.standard_normal(n2) + shift
    if ties:
        x, y = np.round(x, 1), np.round(y, 1)
    method = "asymptotic" if ties or n1 * n2 > regress.EXACT_LIMIT else "exact"
    for alt in ("greater", "less", "two-sided"):
        u, p = regress.mann_whitney_u(x, y, alt)
        ref = stats.mannwhitneyu(y, x, alternative=alt, method=method)
        assert u == pytest.approx(ref.statistic)
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
