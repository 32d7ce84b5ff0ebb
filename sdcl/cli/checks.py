"""Argument checks shared by the subcommands, run before any expensive work. Each failure is a BadInput naming the
option and the value given."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from sdcl.errors import BadInput, EnvironmentProblem

# argparse types raise ArgumentTypeError, whose message argparse prints after "argument --option: ".


def nonempty(text: str) -> str:
    """argparse type: a non-empty string (an empty path or selector would silently mean 'none')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty")
    return text


def integer(lo: int | None = None, hi: int | None = None):
    """argparse type: an int in [lo, hi]."""
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value
    return check


def finite(lo: float | None = None, hi: float | None = None):
    """argparse type: a finite float (NaN and infinities give NaN latents: a black image), in [lo, hi]."""
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}], got {value:g}")
        return value
    return check


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_folder(path, option: str) -> Path:
    """A folder that exists, or can be made, and can be written into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"{option} {path}: exists and is not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise BadInput(f"{option} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {path}: {base} is not writable")
    return path


def output_file(path, option: str, suffixes) -> Path:
    """A file to write: a known suffix, not a folder, in a folder that exists and can be written into."""
    path = Path(path)
    if not str(path).strip():
        raise BadInput(f"{option} is empty")
    if path.is_dir():
        raise BadInput(f"{option} {path}: is a folder; give a file name")
    if path.suffix.lower() not in suffixes:
        raise BadInput(f"{option} {path}: unknown image type {path.suffix or '(no suffix)'!r}",
                       hint="use one of " + ", ".join(sorted(suffixes)))
    parent = path.absolute().parent
    if not parent.exists():
        base = _nearest_existing(parent)
        raise BadInput(f"{option} {path}: the folder {parent} does not exist"
                       + (f" ({base} is a file)" if base.is_file() else ""))
    if not parent.is_dir():
        raise BadInput(f"{option} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {path}: the folder {parent} is not writable")
    return path


def writable_file(path, option: str) -> Path:
    """A file to write, of any type: not a folder, in a folder that exists and can be written into."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{option} {path}: is a folder; give a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise BadInput(f"{option} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {path}: the folder {parent} is not writable")
    return path


def existing(path, option: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{option} {path}: no such file or folder")
    return path


def check_memory(config, size: int, itemsize: int, devices: dict | None) -> None:
    """Refuse a run whose weights and largest activations cannot fit (sdcl.reference.memory: a lower bound): on each
    OpenCL device of `devices` (stage -> cl.Device), its global memory and its largest allocation; with no devices
    (the NumPy reference), the host's memory."""
    from sdcl.reference.memory import footprint
    need = footprint(config, size, size, itemsize)
    if not devices:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need.peak > total:
            raise EnvironmentProblem(f"{config.name} at {size}x{size} needs {need.describe()} of host memory; this "
                                     f"host has {total / 2**30:.1f} GiB", hint="a smaller --size")
        return
    for stage, dev in devices.items():
        glob, alloc = dev.global_mem_size, dev.max_mem_alloc_size
        if need.largest > alloc or need.peak > glob:
            raise EnvironmentProblem(
                f"{config.name} at {size}x{size} needs {need.describe()} on {dev.name.strip()} ({stage}); it has "
                f"{glob / 2**30:.2f} GiB of global memory and allocates at most {alloc / 2**30:.2f} GiB at once",
                hint="a smaller --size, or --storage half, or another --device")
