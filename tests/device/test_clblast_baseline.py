"""The CLBlast baseline of the GEMM benchmark (sdcl.perf.clblast) computes what it is compared on: the product of the
same layout (B or B^T, batched, beta = 1 adding the residual in C) against a float64 product, on the device under
test; and says why where it cannot run. Skipped where libclblast is not installed (Debian: libclblast1)."""

import numpy as np
import pytest

from sdcl.perf import clblast

needs_clblast = pytest.mark.skipif(bool(clblast.unavailable()), reason=str(clblast.unavailable()))


@needs_clblast
@pytest.mark.parametrize("batch,trans_b,beta", [(1, False, 0.0), (1, True, 1.0), (3, False, 1.0), (3, True, 0.0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_matches_float64(rt, batch, trans_b, beta, dtype):
    if dtype == np.float64 and not rt.info.get("fp64"):
        pytest.skip(f"{rt.info['device']} has no fp64")
    rng = np.random.default_rng(batch + 2 * trans_b)
    m, k, n = 19, 37, 23
    a = rng.standard_normal((batch, m, k)).astype(dtype)
    b = rng.standard_normal((batch, n, k) if trans_b else (batch, k, n)).astype(dtype)
    c0 = rng.standard_normal((batch, m, n)).astype(dtype)
    dc = rt.to_device(c0)
    clblast.gemm(rt.queue, rt.to_device(a).data, rt.to_device(b).data, dc.data, m, n, k, trans_b=trans_b,
                 batch=batch, beta=beta, dtype=dtype)
    rt.queue.finish()
    want = np.matmul(a.astype(np.float64), np.swapaxes(b, 1, 2) if trans_b else b) + beta * c0
    err = np.abs(dc.get() - want).max() / np.abs(want).max()
    assert err < (1e-5 if dtype == np.float32 else 1e-13), err


@needs_clblast
def test_refuses_half(rt):
    with pytest.raises(clblast.ClblastError, match="float32 or float64, not float16"):
        clblast.gemm(rt.queue, None, None, None, 1, 1, 1, dtype=np.float16)


def test_missing_library_says_why(monkeypatch):
    monkeypatch.setattr(clblast, "_LIB", [])
    monkeypatch.setenv("SDCL_CLBLAST_LIB", "/nonexistent/libclblast.so.1")
    why = clblast.unavailable()
    assert why and "CLBlast not found" in why and "/nonexistent/libclblast.so.1" in why
    with pytest.raises(clblast.ClblastError, match="CLBlast not found"):
        clblast.gemm(None, None, None, None, 1, 1, 1)
