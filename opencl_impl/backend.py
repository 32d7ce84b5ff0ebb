"""A pipeline Backend on an OpenCL device: the OpenCL ops module and host <-> device transfers."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from opencl_impl import ops as cl_ops
from opencl_impl.runtime import Runtime, select_device
from opencl_impl.selection import Policy, load_db
from reference.pipeline import Backend

_RUNTIMES: dict = {}   # device -> Runtime, so stages that name the same device share one context and queue


def runtime_for(selector: str | None = None) -> Runtime:
    """The device's Runtime, with its selection policy: the tuned database for this device if the repo has one,
    else the most advanced verified variant that handles each shape (opencl_impl/selection.py)."""
    device = select_device(selector)
    if device.int_ptr not in _RUNTIMES:
        rt = Runtime(device)
        rt.policy = Policy(load_db(rt.info), info=rt.info)
        _RUNTIMES[device.int_ptr] = rt
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
