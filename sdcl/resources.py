"""Where sdcl's data lives: the kernel sources and the shipped tuning tables (package data), and the user's folders
(tuning results, the kernel binary cache).

The repository keeps `kernels/` and `tuning/` at its top level; a wheel installs them as `sdcl/kernels` and
`sdcl/tuning` (pyproject.toml maps them). Neither folder is a Python package, so a checkout on `sys.path` never
shadows another distribution's `kernels`. `package_data_dir` finds them in both kinds of install.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


_MARKERS = {"kernels": "common.h", "tuning": "default.json"}


def package_data_dir(name: str) -> Path:
    """The folder of sdcl's package data `name` ("kernels", "tuning"): `sdcl/<name>` in a wheel install; in an
    editable install or a checkout, the repository folder beside `sdcl/` (setuptools' editable finder maps only
    folders that hold Python modules)."""
    marker = _MARKERS[name]          # a folder of that name without it is something else (e.g. a cache in the cwd)
    spec = importlib.util.find_spec(f"sdcl.{name}")
    if spec is not None and spec.submodule_search_locations:
        for folder in map(Path, spec.submodule_search_locations):
            if (folder / marker).is_file():
                return folder
    beside = Path(__file__).resolve().parent.parent / name
    if (beside / marker).is_file():
        return beside
    raise FileNotFoundError(f"sdcl's {name}/ folder is missing from this installation (looked for sdcl/{name} and "
                            f"{beside}): reinstall sdcl")


def kernel_dir() -> Path:
    """The OpenCL C sources shipped with sdcl (kernels/)."""
    return package_data_dir("kernels")


def shipped_tuning_dir() -> Path:
    """The tuning tables shipped with sdcl (tuning/: default.json and one compact table per measured device)."""
    return package_data_dir("tuning")


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "sdcl"


def user_tuning_dir() -> Path:
    """Where `sdcl tune` writes and where the policy looks first: $SDCL_TUNING_DIR, else <cache>/sdcl/tuning.
    Never the installed package."""
    env = os.environ.get("SDCL_TUNING_DIR")
    return Path(env).expanduser() if env else _user_cache() / "tuning"


def kernel_cache_dir() -> Path:
    """pyopencl's binary cache of built kernels: $SDCL_CACHE_DIR/kernels, else <cache>/sdcl/kernels."""
    env = os.environ.get("SDCL_CACHE_DIR")
    return (Path(env).expanduser() if env else _user_cache()) / "kernels"
