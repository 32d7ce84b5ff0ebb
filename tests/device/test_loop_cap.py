"""The loop cap of Mesa's llvmpipe (rusticl, Clover): a work-item's loops end, silently, after 65535 trips in all.
Launchers whose loop trips grow with the shape (gemm cpu_reg's narrow path, the naive attention, im2win, the tiled
attention kernels: flash, flash_reg, softmax_fused) bound them
and refuse a launch past the cap on such a device; the dispatcher then runs the naive kernel; the gate leaves the
refused shapes out of the row, by name, instead of failing a correct kernel or passing a wrong answer.

On PoCL the cap is simulated (the runtime's long_loops flag off); on llvmpipe itself a subprocess shows that the
bound sits where the answers go wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from sdcl.conformance import runner
from sdcl.conformance.runner import check_row
from sdcl.opencl_impl import ops
from sdcl.opencl_impl.dispatch import run_variant
from sdcl.opencl_impl.runtime import LOOP_CAP, LoopCapError, Runtime
from sdcl.opencl_impl.selection import policy_for
from sdcl.reference import ops as ref
from sdcl.registry import REGISTRY, Case


@pytest.fixture
def capped(rt):
    """A runtime on the device under test that behaves as if its loops ended after LOOP_CAP trips."""
    r = Runtime(rt.device)
    r.info = {**r.info, "long_loops": False}
    return r


def test_naive_attention_past_the_cap_is_refused_by_name(capped):
    rng = np.random.default_rng(0)
    q, k = (capped.to_device(rng.standard_normal((1, n, 16)).astype(np.float32)) for n in (4, 2000))
    with pytest.raises(LoopCapError, match=f"attention naive: up to 100032 .* after {LOOP_CAP}"):
        run_variant(capped, "attention", "naive", {}, q, k, k, 1)
    short = capped.to_device(rng.standard_normal((1, 100, 16)).astype(np.float32))
    run_variant(capped, "attention", "naive", {}, q, short, short, 1)       # 100 keys: within the cap


def test_the_dispatcher_runs_naive_where_the_pick_would_pass_the_cap(capped):
    # conv2d im2win at 1024 channels, 3x3: 1024 * (1 + 9 * 9) trips per work-item > 65535
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 1024, 4, 4)), rng.standard_normal((8, 1024, 3, 3)) * 0.03
    capped.policy = policy_for(capped, {"conv2d": "im2win"})
    with pytest.raises(LoopCapError, match="conv2d im2win"):
        run_variant(capped, "conv2d", "im2win", {}, capped.to_device(x.astype(np.float32)),
                    capped.to_device(w.astype(np.float32)), padding=1)
    got = ops.conv2d(capped, capped.to_device(x.astype(np.float32)), capped.to_device(w.astype(np.float32)),
                     padding=1).get()
    want = ref.conv2d(x, w, padding=1)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_where_naive_refuses_too_the_dispatcher_runs_another_variant(capped):
    # SD 2.x's 4096-token self-attention at head dim 64: flash (the pick) and naive loop past the cap; gemm's GEMMs
    # and softmax do not
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((1, n, 64)) for n in (16, 4096, 4096))
    capped.policy = policy_for(capped, {"attention": "flash"})
    for variant in ("flash", "naive"):
        with pytest.raises(LoopCapError):
            run_variant(capped, "attention", variant, {}, *(capped.to_device(x.astype(np.float32)) for x in (q, k, v)), 1)
    got = ops.attention(capped, *(capped.to_device(x.astype(np.float32)) for x in (q, k, v)), 1).get()
    want = ref.attention(q, k, v, 1)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_the_gate_leaves_refused_shapes_out_by_name(capped, monkeypatch):
    rng = np.random.default_rng(2)
    short, long_ = (Case(f"keys{n}", (rng.standard_normal((1, 4, 16)),) + tuple(rng.standard_normal((1, n, 16))
                                                                              for _ in range(2)), {"heads": 1})
                    for n in (100, 2000))
    monkeypatch.setattr(runner, "sd_cases", lambda *a, **k: [short, long_])
    row = check_row(capped, REGISTRY["attention"], "naive", "float32", "ci", fuzz=False)
    assert row.verdict == "pass" and row.cases == 1, row
    assert "1 shape(s) not run, refused by the launcher: keys2000(float32[1, 4, 16]" in row.notes, row.notes
    assert "100032" in row.notes


@pytest.mark.parametrize("variant", ["flash", "flash_reg", "softmax_fused"])
def test_tiled_attention_past_the_cap_is_refused_by_name(capped, variant):
    """Found by the thorough profile on llvmpipe: flash_reg at SD 2.x's 4096-token self-attention (head dim 64) came
    back with 7 of 8 outputs unwritten and the rest wrong; its key-tile loop runs once per tile of keys."""
    rng = np.random.default_rng(3)
    q = capped.to_device(rng.standard_normal((1, 16, 64)).astype(np.float32))
    long_ = capped.to_device(rng.standard_normal((1, 4096, 64)).astype(np.float32))
    with pytest.raises(LoopCapError, match=f"attention {variant}.*16 x 4096 keys, head dim 64.* after {LOOP_CAP}"):
        run_variant(capped, "attention", variant, {}, q, long_, long_, 1)
    k, v = rng.standard_normal((2, 1, 40, 64))       # 40 keys: within the cap, and right
    got = run_variant(capped, "attention", variant, {}, q, capped.to_device(k.astype(np.float32)),
                      capped.to_device(v.astype(np.float32)), 1).get()
    want = ref.attention(q.get().astype(np.float64), k, v, 1)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


_LLVMPIPE = """
import numpy as np, pyopencl as cl
from sdcl.opencl_impl.devices import select_device
from sdcl.opencl_impl.runtime import LoopCapError, Runtime
from sdcl.opencl_impl.variants.gemm import gemm
from sdcl.registry import REGISTRY
rt = Runtime(select_device("rusticl"))
knobs = REGISTRY["matmul"].variant("cpu_reg").complete({})
def wrong(m, k, n, check=True):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    c = rt.empty((m, n), np.float32)
    if not check:
        rt.check_loops = lambda what, trips: None
    try:
        gemm(rt, "matmul", "cpu_reg", knobs, rt.to_device(a.astype(np.float32)).data,
             rt.to_device(b.astype(np.float32)).data, c.data, m, n, k, lda=k, ldb=n, ldc=n)
    except LoopCapError:
        return "refused"
    finally:
        rt.check_loops = Runtime.check_loops.__get__(rt)
    ref = a @ b
    return int((np.abs(c.get() - ref) > 1e-3 * np.abs(ref).max()).sum())
print(wrong(13, 500, 14), wrong(13, 600, 14), wrong(13, 600, 14, check=False), wrong(13, 600, 16))
"""


def _has_llvmpipe() -> bool:
    res = subprocess.run([sys.executable, "-c", "import pyopencl as cl; print([d.name for p in cl.get_platforms() "
                          "if p.name == 'rusticl' for d in p.get_devices()])"], capture_output=True, text=True,
                         env={**os.environ, "RUSTICL_ENABLE": "llvmpipe"})
    return "llvmpipe" in res.stdout


@pytest.mark.skipif(not _has_llvmpipe(), reason="Mesa's rusticl on llvmpipe is not installed (mesa-opencl-icd)")
def test_on_llvmpipe_the_bound_sits_where_answers_go_wrong():
    # gemm cpu_reg's narrow path (B narrower than NR = 16): 8 rows x 14 columns x (K + 1) trips. K = 500: 56120,
    # right; K = 600: 67320, refused, and wrong when launched anyway; B 16 wide takes the vector path: right
    res = subprocess.run([sys.executable, "-c", _LLVMPIPE], capture_output=True, text=True,
                         env={**os.environ, "RUSTICL_ENABLE": "llvmpipe"})
    assert res.returncode == 0, res.stderr[-2000:]
    fine, refused, launched, wide = res.stdout.split()
    assert (fine, refused, wide) == ("0", "refused", "0") and int(launched) > 0, res.stdout


_LLVMPIPE_FLASH_REG = """
import numpy as np
from sdcl.opencl_impl.devices import select_device
from sdcl.opencl_impl.dispatch import run_variant
from sdcl.opencl_impl.runtime import LoopCapError, Runtime
from sdcl.reference import ops as ref
rt = Runtime(select_device("rusticl"))
def wrong(lk, check=True):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, n, 64)) for n in (64, lk, lk))
    if not check:
        rt.check_loops = lambda what, trips: None
    try:
        got = run_variant(rt, "attention", "flash_reg", {}, *(rt.to_device(x.astype(np.float32)) for x in (q, k, v)), 1)
    except LoopCapError:
        return "refused"
    finally:
        rt.check_loops = Runtime.check_loops.__get__(rt)
    want = ref.attention(q, k, v, 1)
    return int((np.abs(got.get() - want) > 1e-4 * np.abs(want).max()).sum())
print(wrong(232), wrong(458), wrong(458, check=False))
"""


@pytest.mark.skipif(not _has_llvmpipe(), reason="Mesa's rusticl on llvmpipe is not installed (mesa-opencl-icd)")
def test_on_llvmpipe_flash_reg_is_refused_before_its_answers_go_wrong():
    # flash_reg's default tiles at head dim 64 (its key tile shrunk to 8 keys for llvmpipe's 32 KiB of local memory):
    # 232 keys within the bound, right; 458 keys refused, and wrong when launched anyway (the bound counts every
    # loop, none unrolled, so it refuses some lengths llvmpipe would still finish: 384 keys came back right)
    res = subprocess.run([sys.executable, "-c", _LLVMPIPE_FLASH_REG], capture_output=True, text=True,
                         env={**os.environ, "RUSTICL_ENABLE": "llvmpipe"})
    assert res.returncode == 0, res.stderr[-2000:]
    fine, refused, launched = res.stdout.split()
    assert (fine, refused) == ("0", "refused") and int(launched) > 0, res.stdout


def test_naive_group_norm_past_the_cap_is_refused_by_name(capped):
    """Found by the thorough profile on llvmpipe: the VAE decoder's norm at 512x512 (4 channels x 262144 per group)
    with WG 32 made 98304 trips a work-item in its three passes, and every output past the cap came back
    unwritten."""
    # one group of 700000: 3 passes x 21875 trips at WG 32, plus two trees of bit_length(32) = 6 steps: 65637
    x = capped.to_device(np.ones((1, 1, 1, 700000), np.float32))
    with pytest.raises(LoopCapError, match="group_norm naive .* up to 65637 loop iterations"):
        run_variant(capped, "group_norm", "naive", {"WG": 32}, x, 1)
    y = run_variant(capped, "group_norm", "naive", {"WG": 256}, x, 1)    # 3 x 2735 trips: runs
    np.testing.assert_allclose(y.get(), ref.group_norm(np.ones((1, 1, 1, 700000), np.float32), 1), atol=1e-6)
