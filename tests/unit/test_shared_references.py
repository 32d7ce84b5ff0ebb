"""The gate's workers checking the knob settings of one row share their SD cases' float64 references through a
folder: each computed once, by the first process to need it, while the others wait and then read it (16 workers
computing SD 2.x's 4096-token float64 attention reference at once, 5.4 GB each, ran a 128 GiB host out of memory)."""

from __future__ import annotations

import threading
import time

import numpy as np

from sdcl.conformance import runner
from sdcl.conformance.runner import References
from sdcl.registry import REGISTRY, Case


def test_an_sd_reference_is_computed_once_for_every_process_sharing_the_folder(tmp_path, monkeypatch):
    spec = REGISTRY["silu"]
    case = Case("sd", (np.linspace(-3, 3, 1000).reshape(10, 100),), {})
    calls = []

    def slow_reference(spec, case, dtype):      # long enough that both threads ask before either has saved it
        calls.append(dtype)
        time.sleep(0.5)
        return np.tanh(case.args[0])            # any array: what matters is who computes it and what the others read

    monkeypatch.setattr(runner, "reference_output", slow_reference)
    workers = [References(shared=str(tmp_path)) for _ in range(2)]     # two processes' caches, one folder
    for refs in workers:                        # the case is one of the SD cases each holds
        refs._sd_source, refs._sd, refs._sd_digests = object(), [case], {id(case): None}
    got = [None, None]
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, workers[i].get(spec, case, "float32")))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1, calls
    np.testing.assert_array_equal(got[0], np.tanh(case.args[0]))
    np.testing.assert_array_equal(got[1], got[0])
    # a fuzzed case (not one of the held SD cases) is computed by each process and not written to the folder
    fuzzed = Case("random", (np.ones((2, 3)),), {})
    workers[0].get(spec, fuzzed, "float32")
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npy"))) == 1
