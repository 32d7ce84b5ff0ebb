"""Regression detection: the newest run of a device against its history, per benchmark, noise-aware.

The rule (docs/PERF.md explains it with an example). For each benchmark of the newest run, against the latest
earlier run of the same device that has it:
1. change = median(new rounds) / median(baseline rounds) - 1, on kernel time (profiling events) when both runs
   recorded it, else on wall time;
2. a one-sided Mann-Whitney U test asks whether the new rounds are stochastically larger than the baseline's
   (rank-based: robust to the outliers timing produces); p < alpha (0.01) is required;
3. the change must exceed max(threshold, noise), where threshold is 5% by default and noise is the run-to-run
   spread of this benchmark on this device: 3 x the scaled median absolute deviation of the earlier runs'
   medians (relative), once there are at least MIN_NOISE_RUNS of them;
4. when both runs merged several processes (`sdcl perf run --processes`, default 2), the processes must not
   overlap: every process median of the new run must be slower than every one of the baseline run by more
   than the same max(threshold, noise). Rounds of one process are not independent: on a shared machine a whole
   process can sit tens of percent off another (the state of the machine changes over seconds), and the rank
   test, which treats every round as independent, calls such a shift significant.
5. when both runs have a torch baseline, round for round, the ratio of our rounds to torch's must have moved the
   same way, by more than the threshold and with p < alpha: a machine that got slower between two runs (other
   processes, clocks) slows torch's rounds too, which the ratio cancels, while a slower kernel of ours does not.
A regression needs all of them; an improvement is the mirror image. Separately, `detect_step` looks for a lasting
shift in the series of run medians (informational: the pairwise rule already flagged it when it happened).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

THRESHOLD = 0.05
ALPHA = 0.01
MIN_NOISE_RUNS = 3
EXACT_LIMIT = 2500        # exact U distribution when n1 * n2 is at most this and there are no ties


# -------------------------------------------------------------------------------------------- Mann-Whitney U

def rankdata(a: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get the average of the ranks they span."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    ranks = np.empty(len(a), dtype=np.float64)
    start = 0
    for end in range(1, len(a) + 1):
        if end == len(a) or s[end] != s[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0   # mean of start+1 .. end
            start = end
    return ranks


@lru_cache(maxsize=256)
def _u_distribution(n1: int, n2: int) -> np.ndarray:
    """P(U = u), u = 0 .. n1*n2, for samples of n1 and n2 distinct values under H0 (all orderings equally likely).

    Recurrence on the largest value: it belongs to the second sample with probability n2/(n1+n2), and then it
    beats all n1 values of the first (U grows by n1); else U is that of (n1-1, n2)."""
    prev = [np.ones(1)] * (n2 + 1)          # row m = 0: U = 0 whatever n
    for m in range(1, n1 + 1):
        row = [np.ones(1)]                  # n = 0: U = 0
        for n in range(1, n2 + 1):
            d = np.zeros(m * n + 1)
            a = prev[n]                     # largest in sample 1: (m-1, n), no U added
            d[: len(a)] += a * (m / (m + n))
            b = row[n - 1]                  # largest in sample 2: (m, n-1), U += m
            d[m: m + len(b)] += b * (n / (m + n))
            row.append(d)
        prev = row
    return prev[n2]


def mann_whitney_u(x, y, alternative: str = "greater") -> tuple:
    """(U, p) for samples x, y. U counts pairs (x_i, y_j) with y_j > x_i (ties count 1/2).

    alternative "greater": y tends to be larger than x; "less": smaller; "two-sided". Exact p for small samples
    without ties, else the normal approximation with tie and continuity corrections (as SciPy does)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u: both samples need at least one value")
    ranks = rankdata(np.concatenate([x, y]))
    u = float(ranks[n1:].sum() - n2 * (n2 + 1) / 2.0)      # U of y
    ties = len(np.unique(np.concatenate([x, y]))) < n1 + n2
    if n1 * n2 <= EXACT_LIMIT and not ties:
        dist = _u_distribution(n1, n2)
        k = int(round(u))
        greater, less = float(dist[k:].sum()), float(dist[: k + 1].sum())
        p = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
        return u, p
    mu = n1 * n2 / 2.0
    _, counts = np.unique(ranks, return_counts=True)
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - float((counts ** 3 - counts).sum()) / (n * (n - 1))))
    if sigma == 0:
        return u, 1.0
    if alternative == "greater":
        z = (u - mu - 0.5) / sigma
        p = 0.5 * math.erfc(z / math.sqrt(2))
    elif alternative == "less":
        z = (u - mu + 0.5) / sigma
        p = 0.5 * math.erfc(-z / math.sqrt(2))
    else:
        z = (abs(u - mu) - 0.5) / sigma
        p = min(1.0, math.erfc(z / math.sqrt(2)))
    return u, p


# --------------------------------------------------------------------------------------------------- the rule

@dataclass
class Finding:
    device: str
    name: str
    verdict: str              # "regression", "improvement", "same", "new" (no earlier run)
    metric: str = ""          # "kernel" or "wall"
    baseline: str = ""        # label of the baseline run (short commit)
    current: str = ""
    base_median: float = float("nan")
    new_median: float = float("nan")
    change: float = float("nan")       # new / base - 1
    p: float = float("nan")            # one-sided Mann-Whitney p in the direction of the change
    required: float = THRESHOLD        # the change needed: max(threshold, noise)
    step: str = ""                     # a lasting shift found in the history, if any
    process_change: float | None = None  # the least change between the two runs' processes (compare())
    torch_change: float | None = None    # the change of ours / torch, round for round (rule 5), where both have torch

    def line(self) -> str:
        short = self.name.split("::")[-1]
        if self.verdict == "new":
            return f"{'new':12} {short}: no earlier run on this device"
        return (f"{self.verdict:12} {short}: {_ms(self.base_median)} -> {_ms(self.new_median)} {self.metric} "
                f"({self.change:+.1%}" + (f", between processes at least {self.process_change:+.1%}"
                                           if self.process_change is not None else "")
                + (f", against torch {self.torch_change:+.1%}" if self.torch_change is not None else "")
                + f", needs >{self.required:.1%}; Mann-Whitney p={self.p:.2g}) "
                f"[{self.baseline} -> {self.current}]" + (f"; {self.step}" if self.step else ""))


def _ms(s: float) -> str:
    return f"{s * 1e3:.4g} ms"


def compare(base: list, new: list, threshold: float = THRESHOLD, alpha: float = ALPHA, noise: float = 0.0,
            base_procs: list = (), new_procs: list = ()) -> dict:
    """The pairwise rule on two sets of rounds: {"verdict", "change", "p", "required", "process_change"}.
    base_procs, new_procs: the per-process medians of each run; with 2 or more on both sides, process_change is
    the smallest change between any baseline process and any new one in the direction of the change (slowest
    baseline vs fastest new for a slowdown), and it must exceed the required change too."""
    mb, mn = float(np.median(base)), float(np.median(new))
    change = mn / mb - 1.0 if mb > 0 else 0.0
    required = max(threshold, noise)
    procs = len(base_procs) >= 2 and len(new_procs) >= 2
    if change > 0:
        _, p = mann_whitney_u(base, new, "greater")
        pc = min(new_procs) / max(base_procs) - 1.0 if procs else change
        verdict = "regression" if change > required and pc > required and p < alpha else "same"
    else:
        _, p = mann_whitney_u(base, new, "less")
        pc = max(new_procs) / min(base_procs) - 1.0 if procs else change
        verdict = "improvement" if -change > required and -pc > required and p < alpha else "same"
    return {"verdict": verdict, "change": change, "p": p, "required": required, "base_median": mb,
            "new_median": mn, "process_change": pc if procs else None}


def noise_band(medians: list) -> float:
    """Run-to-run relative spread of a benchmark: 3 x 1.4826 x MAD / median of earlier run medians (0 if few)."""
    if len(medians) < MIN_NOISE_RUNS:
        return 0.0
    m = np.asarray(medians, dtype=np.float64)
    center = float(np.median(m))
    return 3.0 * 1.4826 * float(np.median(np.abs(m - center))) / center if center > 0 else 0.0


def detect_step(values: list, threshold: float = THRESHOLD, min_size: int = 3) -> tuple | None:
    """A lasting shift in a series (oldest first): (index where the new level starts, relative change) for the
    split with the largest change whose two segments do not overlap and differ by more than threshold."""
    v = np.asarray(values, dtype=np.float64)
    best = None
    for k in range(min_size, len(v) - min_size + 1):
        before, after = v[:k], v[k:]
        if after.min() > before.max() or after.max() < before.min():
            change = float(np.median(after) / np.median(before) - 1.0)
            if abs(change) > threshold and (best is None or abs(change) > abs(best[1])):
                best = (k, change)
    return best


def judge(past: list, new, threshold: float = THRESHOLD, alpha: float = ALPHA, metric: str = "kernel") -> dict:
    """The rule for one benchmark: `new` (a history Result) against `past` (its earlier Results, oldest first,
    at least one): compare() against the latest, with the noise band of all of them, plus detect_step()."""
    base = past[-1]
    m, new_rounds = new.samples(metric)
    m_base, base_rounds = base.samples(m)
    if m_base != m:  # the baseline lacks kernel rounds: compare wall with wall
        m, new_rounds = new.samples("wall")
        _, base_rounds = base.samples("wall")
    past_medians = [float(np.median(r.samples(m)[1])) for r in past]
    out = compare(base_rounds, new_rounds, threshold, alpha, noise_band(past_medians), base.process_medians(m),
                  new.process_medians(m))
    out["metric"] = m
    out["torch_change"] = None
    base_r, new_r = base.torch_ratios(m), new.torch_ratios(m)
    if len(base_r) >= 3 and len(new_r) >= 3:      # rule 5: against torch, round for round
        vs = compare(base_r, new_r, threshold, alpha)
        out["torch_change"] = vs["change"]
        if out["verdict"] != vs["verdict"] and out["verdict"] != "same":
            out["verdict"] = "same"
    out["step"] = detect_step(past_medians + [out["new_median"]], threshold)
    return out


def check(history, device: str | None = None, threshold: float = THRESHOLD, alpha: float = ALPHA,
          metric: str = "kernel") -> list:
    """Findings for the newest run of `device` (of every device when None), one per benchmark."""
    findings = []
    for dev in ([device] if device else history.devices()):
        runs = history.runs(dev)
        if not runs:
            raise ValueError(f"no runs of device {dev!r} in {history.path}; it has: {', '.join(history.devices())}")
        newest, earlier = runs[-1], runs[:-1]
        earlier_results = [(run, history.results(run.id)) for run in earlier]
        for name, res in history.results(newest.id).items():
            past = [(run, rs[name]) for run, rs in earlier_results if name in rs]
            if not past:
                findings.append(Finding(dev, name, "new", current=newest.label))
                continue
            r = judge([p for _, p in past], res, threshold, alpha, metric)
            f = Finding(dev, name, r["verdict"], r["metric"], past[-1][0].label, newest.label, r["base_median"],
                        r["new_median"], r["change"], r["p"], r["required"], process_change=r["process_change"],
                        torch_change=r["torch_change"])
            if r["step"] is not None:
                labels = [run.label for run, _ in past] + [newest.label]
                f.step = f"step of {r['step'][1]:+.1%} from {labels[r['step'][0]]}"
            findings.append(f)
    return findings
