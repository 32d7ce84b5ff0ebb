"""A pipeline Backend on an OpenCL device: the OpenCL ops module and host <-> device transfers."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from opencl_impl import ops as cl_ops
from opencl_impl.runtime import Runtime, select_device
from reference.pipeline import Backend

_RUNTIMES: dict = {}   # device -> Runtime, so stages that name the same device share one context and queue


def runtime_for(selector: str | None = None) -> Runtime:
    device = select_device(selector)
    if device.int_ptr not in _RUNTIMES:
        _RUNTIMES[device.int_ptr] = Runtime(device)
    return _RUNTIMES[device.int_ptr]


def opencl_backend_for(rt: Runtime) -> Backend:
    def to_device(a):
        if isinstance(a, cla.Array):
            return a                   # already there (weights uploaded by the caller)
        a = np.asarray(a)
        return rt.to_device(a) if a.dtype.kind == "f" else a  # token ids and timesteps stay on the host

    def to_host(a):
        return a.get() if isinstance(a, cla.Array) else np.asarray(a)

    return Backend(f"opencl:{rt.info['device']}", cl_ops, to_device=to_device, to_host=to_host, sync=rt.queue.finish)


def opencl_backend(selector: str | None = None) -> Backend:
    return opencl_backend_for(runtime_for(selector))
