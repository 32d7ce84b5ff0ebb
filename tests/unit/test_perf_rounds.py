"""How many rounds a benchmark gets (sdcl.perf.measure.run): set by a warm round, not by the first call, whose time
is mostly kernel builds (a full-size pipeline's first call on an H100: 42 s, against about 1.1 s warm)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from sdcl.perf.measure import WARMUP_ROUNDS, run


class FakeBenchmark:
    """pytest-benchmark's pedantic, as far as run() uses it: the rounds it was asked for."""

    def pedantic(self, target, rounds, warmup_rounds, iterations, teardown):
        self.rounds, self.warmup_rounds = rounds, warmup_rounds
        for _ in range(rounds + warmup_rounds):
            target()
            teardown()


def fake_runtime():
    return SimpleNamespace(queue=SimpleNamespace(finish=lambda: None), events=[], profile=False,
                           kernel_times=lambda: {"k": 1e-3})


def calls_building_first(first_s: float, warm_s: float):
    n = []

    def call():
        time.sleep(first_s if not n else warm_s)
        n.append(1)
    return call, n


def test_a_first_call_of_kernel_builds_does_not_cut_the_rounds():
    call, n = calls_building_first(first_s=0.5, warm_s=0.01)
    bench = FakeBenchmark()
    timing = run(bench, fake_runtime(), call, budget_s=0.4, min_rounds=1, max_rounds=200)
    assert timing.first_call_s >= 0.5
    # a warm round of 0.01 s leaves room for many rounds in 0.4 s; the first call alone would have given one
    assert bench.rounds >= 5 and bench.warmup_rounds == WARMUP_ROUNDS
    assert len(n) == 1 + 1 + bench.rounds + bench.warmup_rounds


def test_a_heavy_warm_round_goes_straight_to_its_rounds():
    call, _ = calls_building_first(first_s=0.05, warm_s=0.3)
    bench = FakeBenchmark()
    run(bench, fake_runtime(), call, budget_s=0.4, min_rounds=1, max_rounds=200)
    assert bench.rounds == 1 and bench.warmup_rounds == 0
