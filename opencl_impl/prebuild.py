"""Kernels built ahead, in parallel: the first call of a model no longer builds its programs one by one.

`collect(rt, fn, *args)` runs the host code of a call with the runtime's launches switched off (Runtime.collecting):
every launcher still picks its variant and knobs and asks for its kernel, so the programs the call would build are
noted instead of built (a launcher that must size its launch from a built kernel gets it built on the spot).
`build(jobs)` then builds them all in threads (an OpenCL build runs outside Python's lock), into the runtime's
program cache and pyopencl's binary cache, with a progress bar if asked. The pass launches nothing and reads no
value back, so what it allocates holds garbage nobody reads; like a recording (sdcl.opencl_impl.replay) it relies on
what a call launches depending on shapes, not values. A program that fails to build is reported where the call
first needs it, as without prebuilding.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np


def collect(rt, fn, *args) -> list:
    """[(rt, file, defines, dtype)]: the programs fn(*args) would build on rt that are not built yet. An error of
    the pass itself is left for the real call to raise."""
    if rt.collecting is not None or rt.recording is not None:
        raise RuntimeError("prebuild: the runtime is already collecting or recording")
    rt.collecting = {}
    try:
        fn(*args)
    except Exception:       # noqa: BLE001  (the real call raises it, where it belongs)
        pass
    finally:
        found, rt.collecting = rt.collecting, None
    return [(rt, *spec) for spec in found.values()]


def build(jobs: list, threads: int | None = None, progress: bool = False) -> int:
    """Build every (rt, file, defines, dtype) of jobs, in threads; returns how many were built."""
    seen, todo = set(), []
    for rt, file, defines, dtype in jobs:
        key = (id(rt), file, tuple(sorted((defines or {}).items())), str(dtype))
        if key not in seen:
            seen.add(key)
            todo.append((rt, file, defines, dtype))
    if not todo:
        return 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="building kernels", unit="program")
    with ThreadPoolExecutor(threads or min(32, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(_build_one, *job) for job in todo]
        for f in as_completed(futures):
            f.result()
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return len(todo)


def _build_one(rt, file, defines, dtype) -> None:
    try:
        rt.program(file, defines, dtype)
    except Exception:       # noqa: BLE001  (kept in rt.failed_builds; raised where the call needs the kernel)
        pass


def pipeline(pipe, height: int, width: int, dtype=np.float32, progress: bool = False) -> int:
    """Build ahead, in parallel, every program a text-to-image call of `pipe` (reference.pipeline.StableDiffusion)
    at this size will use: its text encoder, UNet step and VAE decode, each stage on its own device (stages on the
    NumPy reference need nothing). Returns how many programs were built."""
    cfg, s = pipe.config, pipe.config.vae_scale
    h, w = height // s, width // s
    dt = np.dtype(dtype) if np.dtype(dtype) in (np.float64, np.float16) else np.dtype(np.float32)
    jobs = []
    te = getattr(pipe.text_encoder, "model", pipe.text_encoder)     # as the UNet below: a replayed one's model
    rt = getattr(te.ops, "rt", None)
    if rt is not None:
        jobs += collect(rt, te, pipe.tokenizer(["", ""]))
    unet = getattr(pipe.unet, "model", pipe.unet)        # a replayed UNet's own model: collecting records nothing
    rt = getattr(unet.ops, "rt", None)
    if rt is not None:
        ctx = rt.empty((2, pipe.tokenizer.context_length, cfg.unet.cross_attention_dim), dt)
        jobs += collect(rt, unet, rt.empty((2, cfg.unet.in_channels, h, w), dt), np.array([999, 999]), ctx)
    vae = getattr(pipe.vae, "model", pipe.vae)
    rt = getattr(vae.ops, "rt", None)
    if rt is not None:
        jobs += collect(rt, vae.decode, rt.empty((1, cfg.vae.latent_channels, h, w), dt))
    return build(jobs, progress=progress)
