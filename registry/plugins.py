"""Out-of-tree variants: a user's package adds variants to the registry's ops without any edit to sdcl.

A plugin is a Python module (or package) with
    VARIANTS = {"add": [Variant(...), ...], ...}   # op name -> the variants it adds, each declared once
    KERNELS = Path(__file__).parent / "kernels"     # optional: its folder of OpenCL sources
Its variants are then the registry's like the built-in ones: the gate (fuzzed and SD shapes, every knob setting),
the tuner, the selection policy, the benchmarks, the ladder (a tier sdcl does not list comes after its own) and
the dashboard read them. Its launchers ("module:function" or the function itself) receive the same `Call`; its
kernel folder is searched after sdcl's own (so `#include "common.h"` finds sdcl's helpers, and a plugin cannot
replace a built-in kernel file by accident).

Found two ways:
- installed: an entry point in the group `sdcl.variants` naming the module (pyproject.toml:
  `[project.entry-points."sdcl.variants"] name = "package"`), loaded when the registry is first imported;
- by path: `sdcl --plugin PATH` (or `SDCL_PLUGINS`, os.pathsep-separated, which worker processes inherit), PATH a
  module file or a package folder.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

GROUP = "sdcl.variants"
ENV = "SDCL_PLUGINS"

KERNEL_DIRS: list = []      # the loaded plugins' kernel folders, searched after sdcl's kernels/
LOADED: dict = {}           # plugin module name -> where it came from ("entry point x", or the path)


class PluginError(ValueError):
    """A plugin that cannot be loaded or declares what the registry cannot take; the message names the plugin."""


def _module_from_path(path: str):
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        init = p / "__init__.py"
        if not init.is_file():
            raise PluginError(f"plugin {path}: a folder without __init__.py (a plugin is a module file or a package)")
        name, location, search = p.name, init, [str(p)]
    elif p.is_file() and p.suffix == ".py":
        name, location, search = p.stem, p, None
    else:
        raise PluginError(f"plugin {path}: no such module file or package folder")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, location, submodule_search_locations=search)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # so that its "module:function" launchers resolve
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise PluginError(f"plugin {path}: importing it failed: {type(e).__name__}: {e}") from None
    return module


def add_variants(rows: dict, module, label: str) -> None:
    """Add a plugin module's VARIANTS to `rows` (op name -> OpSpec) in place, and its KERNELS to KERNEL_DIRS."""
    from sdcl.registry.spec import Variant
    declared = getattr(module, "VARIANTS", None)
    if not isinstance(declared, dict) or not declared:
        raise PluginError(f"plugin {label}: declares no VARIANTS (a dict: op name -> list of Variant)")
    for op, variants in declared.items():
        if op not in rows:
            raise PluginError(f"plugin {label}: op {op!r} is not in the registry; its ops are {sorted(rows)}")
        variants = list(variants)
        for v in variants:
            if not isinstance(v, Variant):
                raise PluginError(f"plugin {label}: {op}: {v!r} is not a sdcl.registry.Variant")
            if any(v.name == old.name for old in rows[op].variants):
                raise PluginError(f"plugin {label}: {op} already has a variant {v.name!r}; name yours otherwise")
        rows[op] = dataclasses.replace(rows[op], variants=rows[op].variants + tuple(variants))
    kernels = getattr(module, "KERNELS", None)
    if kernels is not None:
        if not Path(kernels).is_dir():
            raise PluginError(f"plugin {label}: KERNELS {kernels} is not a folder")
        if Path(kernels) not in KERNEL_DIRS:
            KERNEL_DIRS.append(Path(kernels))


def load_path(rows: dict, path: str) -> None:
    """Load the plugin at `path` into `rows` (once), and name it in SDCL_PLUGINS for worker processes."""
    key = str(Path(path).expanduser().resolve())
    module = _module_from_path(path)
    if module.__name__ in LOADED:        # loaded already: by this path, or installed and named by path too
        return
    add_variants(rows, module, path)
    LOADED[module.__name__] = key
    listed = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    if key not in [str(Path(p).expanduser().resolve()) for p in listed]:
        os.environ[ENV] = os.pathsep.join(listed + [key])


def load_all(rows: dict) -> None:
    """Every installed plugin (entry points of GROUP), then those SDCL_PLUGINS names."""
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        label = f"{ep.name} (entry point {ep.value} of {GROUP})"
        try:
            module = ep.load()
        except Exception as e:
            raise PluginError(f"plugin {label}: importing it failed: {type(e).__name__}: {e}") from None
        add_variants(rows, module, label)
        LOADED[module.__name__] = f"entry point {ep.value}"
    for path in os.environ.get(ENV, "").split(os.pathsep):
        if path:
            load_path(rows, path)
