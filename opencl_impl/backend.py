"""A pipeline Backend on an OpenCL device: the device's ops namespace and host <-> device transfers."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from sdcl.opencl_impl.devices import select_device
from sdcl.opencl_impl.ops import DeviceOps
from sdcl.opencl_impl.replay import replayed
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.selection import policy_for
from sdcl.reference.pipeline import Backend

_RUNTIMES: dict = {}   # device -> Runtime, so stages that name the same device share one context and queue


def runtime_for(selector: str | None = None) -> Runtime:
    """The device's Runtime (one per device in this process), with its selection policy: the tuning table for this
    device (the user's tuning folder, then the shipped tables), else the most advanced verified variant that handles
    each shape (sdcl.opencl_impl.selection)."""
    device = select_device(selector)
    if device.int_ptr not in _RUNTIMES:
        rt = Runtime(device)
        rt.policy = policy_for(rt)
        _RUNTIMES[device.int_ptr] = rt
    return _RUNTIMES[device.int_ptr]


def opencl_backend_for(rt: Runtime, replay: bool = True, keep_derived: bool = False) -> Backend:
    """The device as a pipeline stage; with replay, the sampler loop's UNet is recorded at its first step and its
    launches replayed at the others, the text encoder recorded at its first prompt and the VAE decoder at its first
    image, each replayed for the next ones (sdcl.opencl_impl.replay); keep_derived: replay.replayed's."""
    def to_device(a):
        if isinstance(a, cla.Array):
            return a                   # already there (weights uploaded by the caller)
        a = np.asarray(a)
        return rt.to_device(a) if a.dtype.kind == "f" else a  # token ids and timesteps stay on the host

    def to_host(a):
        return a.get() if isinstance(a, cla.Array) else np.asarray(a)

    return Backend(f"opencl:{rt.info['device']}", DeviceOps(rt), to_device=to_device, to_host=to_host,
                   sync=rt.queue.finish,
                   in_loop=(lambda model: replayed(rt, model, keep_derived)) if replay else (lambda m: m))


def opencl_backend(selector: str | None = None, replay: bool = True, keep_derived: bool = False) -> Backend:
    return opencl_backend_for(runtime_for(selector), replay, keep_derived)
