"""A pipeline Backend on an OpenCL device: the OpenCL ops module and host <-> device transfers."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from opencl_impl import ops as cl_ops
from opencl_impl.runtime import Runtime, device_info, select_device
from reference.pipeline import Backend


@lru_cache(maxsize=None)
def runtime_for(selector: str | None) -> Runtime:
    """One Runtime per selected device, shared by the stages that name the same device."""
    device = select_device(selector)
    for rt in _BY_DEVICE:
        if rt.device.int_ptr == device.int_ptr:
            return rt
    rt = Runtime(device)
    _BY_DEVICE.append(rt)
    return rt


_BY_DEVICE: list = []


def opencl_backend(selector: str | None = None) -> Backend:
    rt = runtime_for(selector)
    info = device_info(rt.device)

    def to_device(a):
        a = np.asarray(a)
        return rt.to_device(a) if a.dtype.kind == "f" else a  # token ids and timesteps stay on the host

    return Backend(f"opencl:{info['device']}", cl_ops, to_device=to_device,
                   to_host=lambda a: a.get() if hasattr(a, "get") else np.asarray(a), sync=rt.queue.finish)
