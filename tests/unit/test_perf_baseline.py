"""The torch baseline on the CPU (sdcl.perf.measure): each round keeps the faster of torch's thread count and one
thread, so that a machine whose cores other processes hold does not turn torch's parallel regions into waits."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from sdcl.perf.measure import Timing, _time_baseline, summary  # noqa: E402


@pytest.fixture
def two_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def test_the_faster_thread_count_is_kept_and_torch_threads_are_restored(two_threads):
    calls = []

    def stalled_when_parallel():      # as on a loaded machine: the parallel call waits for a descheduled thread
        calls.append(torch.get_num_threads())
        time.sleep(0.02 if torch.get_num_threads() > 1 else 0.001)

    seconds, one = _time_baseline(stalled_when_parallel, single_too=True)
    assert calls == [2, 1] and one and seconds < 0.01
    assert torch.get_num_threads() == 2


def test_an_idle_machine_keeps_torch_threads(two_threads):
    def faster_when_parallel():
        time.sleep(0.001 if torch.get_num_threads() > 1 else 0.02)

    seconds, one = _time_baseline(faster_when_parallel, single_too=True)
    assert not one and seconds < 0.01
    assert _time_baseline(faster_when_parallel, single_too=False)[1] is False


def test_the_summary_says_how_often_one_thread_won():
    t = Timing(kernel=[1e-3] * 4, torch=[2e-3] * 4, torch_one_thread=[True, True, False, True])
    out = summary(t, [1.5e-3] * 4, None, None, None)
    assert out["torch_one_thread_share"] == 0.75 and out["torch_median_s"] == 2e-3
    assert "torch_one_thread_share" not in summary(Timing(kernel=[1e-3], torch=[2e-3], torch_one_thread=[False]),
                                                   [1e-3], None, None, None)
