"""CLBlast, the tuned OpenCL BLAS a user would reach for, as a GEMM baseline on the same device, context and queue.

Bound through its C API with ctypes (Debian's `libclblast1`; another build: SDCL_CLBLAST_LIB=/path/libclblast.so),
so nothing is compiled and no Python package is needed. `gemm` runs C_z = A_z @ B_z (B_z optionally stored
transposed, as linear's weight) for z < batch on pyopencl buffers, row-major, through CLBlastXgemm or
CLBlastXgemmStridedBatched; with `beta` 1, C is added to (a residual already in C). CLBlast picks its kernels from
its own database of tuned devices and falls back to its defaults for a device it has not seen (PoCL's EPYC, an
H200): that is what a user gets without running its tuner.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np

_ROW_MAJOR, _NO, _YES = 101, 111, 112     # CLBlastLayoutRowMajor, CLBlastTransposeNo / Yes (clblast_c.h)
_LIB: list = []                           # [CDLL or the reason it could not be loaded], loaded once
_OPENCL: list = []                        # [the OpenCL ICD loader], for releasing CLBlast's events
_FNS: dict = {}                           # CLBlast function name -> its ctypes function, signature declared


class ClblastError(RuntimeError):
    """CLBlast is not installed, or a call returned an error status."""


def _load():
    if not _LIB:
        names = [os.environ["SDCL_CLBLAST_LIB"]] if os.environ.get("SDCL_CLBLAST_LIB") else \
            [n for n in (ctypes.util.find_library("clblast"), "libclblast.so.1", "libclblast.so") if n]
        errors = []
        for name in names:
            try:
                _LIB.append(ctypes.CDLL(name))
                break
            except OSError as e:
                errors.append(str(e))
        else:
            _LIB.append(f"CLBlast not found ({'; '.join(errors) or 'no libclblast on the library path'}): "
                        f"install Debian's libclblast1 or set SDCL_CLBLAST_LIB")
    return _LIB[0]


def unavailable() -> str | None:
    """Why CLBlast cannot be used here, or None."""
    lib = _load()
    return lib if isinstance(lib, str) else None


def _fn(dtype, batched: bool):
    lib = _load()
    if isinstance(lib, str):
        raise ClblastError(lib)
    real = {np.dtype(np.float32): ("S", ctypes.c_float), np.dtype(np.float64): ("D", ctypes.c_double)}.get(
        np.dtype(dtype))
    if real is None:
        raise ClblastError(f"CLBlast GEMM baseline: float32 or float64, not {np.dtype(dtype).name}")
    letter, scalar = real
    name = f"CLBlast{letter}gemm{'StridedBatched' if batched else ''}"
    if name not in _FNS:        # its C signature, declared once
        fn = getattr(lib, name)
        size, mem, ptr = ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
        operand = [mem, size, size] + ([size] if batched else [])        # buffer, offset, ld (, stride)
        fn.argtypes = ([ctypes.c_int] * 3 + [size] * 3 + [scalar] + operand * 2 + [scalar] + operand
                       + ([size] if batched else []) + [ptr, ptr])
        fn.restype = ctypes.c_int
        _FNS[name] = fn
    return _FNS[name], scalar


def gemm(queue, a, b, c, m: int, n: int, k: int, *, trans_b: bool = False, batch: int = 1, beta: float = 0.0,
         dtype=np.float32) -> None:
    """C_z = A_z @ B_z (+ beta C_z) for z < batch on packed row-major buffers (cl.Buffer): A (m, k), B (k, n) or,
    with trans_b, (n, k), C (m, n), the batch items one after another. Enqueued on `queue`; returns when enqueued."""
    fn, scalar = _fn(dtype, batch > 1)
    ldb = k if trans_b else n
    q = ctypes.c_void_p(queue.int_ptr)
    event = ctypes.c_void_p()
    operands = [(a.int_ptr, 0, k, m * k), (b.int_ptr, 0, ldb, k * n), (c.int_ptr, 0, n, m * n)]
    if batch == 1:
        operands = [o[:3] for o in operands]
    status = fn(_ROW_MAJOR, _NO, _YES if trans_b else _NO, m, n, k, scalar(1.0), *operands[0], *operands[1],
                scalar(beta), *operands[2], *([batch] if batch > 1 else []), ctypes.byref(q), ctypes.byref(event))
    if status != 0:
        raise ClblastError(f"CLBlast {fn.__name__} ({m}x{k} @ {k}x{n}, batch {batch}) returned status {status} "
                           f"(clblast_c.h's CLBlastStatusCode)")
    if event.value:
        _release_event(event)


def _release_event(event) -> None:
    """CLBlast hands back an event the caller owns; release it (timing is by wall clock around the queue)."""
    if not _OPENCL:
        lib = ctypes.CDLL(ctypes.util.find_library("OpenCL") or "libOpenCL.so.1")
        lib.clReleaseEvent.argtypes = [ctypes.c_void_p]
        _OPENCL.append(lib)
    _OPENCL[0].clReleaseEvent(event)
