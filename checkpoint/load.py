"""Reading Stable Diffusion weights: `load_checkpoint` (an LDM file or a diffusers folder) and `find_family`.

A file must hold every expected tensor with the expected shape and a floating-point dtype, and nothing else
except the keys of the allow-list `IGNORED_KEYS`. Anything else raises `CheckpointError` (a `ValueError`) whose
message names the file and lists every offending key, grouped (missing / unexpected / wrong shape / not
floating point), with a hint when the file fits another known config. Headers are checked before any tensor is
read; tensors are then read one at a time and converted to the dtype asked for (float32 by default) from
whatever float type the file stores (F64, F32, F16, BF16).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from sdcl.checkpoint.diffusers_config import config_json_differences
from sdcl.checkpoint.diffusers_folder import close_all, open_folder
from sdcl.checkpoint.expected import COMPONENTS, expected_shapes
from sdcl.checkpoint.family import features_of_ldm, features_of_unet, hint
from sdcl.checkpoint.ldm import ldm_component, ldm_problems, ldm_table
from sdcl.checkpoint.safetensors_io import SafetensorsFile
from sdcl.reference.configs import CONFIGS, SDConfig
from sdcl.reference.validation import CheckpointError


def load_checkpoint(path, config: SDConfig, dtype=np.float32, components=COMPONENTS,
                    variant: str | None = None) -> dict:
    """Read Stable Diffusion weights for `config` from a single-file LDM checkpoint (a .safetensors file) or a
    diffusers folder (a directory), into {component: {key: array of dtype}} with the in-memory (diffusers)
    names. `components` selects what to read (the rest of the file is not looked at); `variant` picks
    diffusers' `<name>.<variant>.safetensors` (e.g. "fp16"). Raises CheckpointError for anything that does not
    match `config` exactly (bar IGNORED_KEYS) and for unreadable files."""
    path = os.fspath(path)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    components = (components,) if isinstance(components, str) else tuple(components)
    for comp in components:
        if comp not in COMPONENTS:
            raise ValueError(f"unknown component {comp!r}; choose from {', '.join(COMPONENTS)}")
    if os.path.isdir(path):
        return _load_diffusers(path, config, dtype, components, variant)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file or folder")
    if path.lower().endswith((".ckpt", ".pt", ".pth", ".bin")):
        raise CheckpointError(f"{path}: pickled PyTorch checkpoints are not read (unsafe, and need torch); "
                              "convert it to .safetensors")
    return _load_ldm(path, config, dtype, components)


def find_family(path) -> str | None:
    """Name of the first config in reference.configs.CONFIGS whose keys and shapes the checkpoint (LDM file or
    diffusers folder) matches exactly, or None. Reads headers only."""
    matches = _matching_configs(os.fspath(path))
    return matches[0] if matches else None


def _matching_configs(path: str) -> list:
    if os.path.isdir(path):
        opened = open_folder(path, COMPONENTS, None)
        try:
            return [name for name, cfg in CONFIGS.items()
                    if not any(opened[c].problems(cfg) for c in COMPONENTS)]
        finally:
            close_all(opened)
    with SafetensorsFile(path) as f:
        return [name for name, cfg in CONFIGS.items() if not ldm_problems(f.shapes, f.dtypes, cfg)]


def _load_ldm(path: str, config: SDConfig, dtype, components) -> dict:
    table = ldm_table(config, components)
    with SafetensorsFile(path) as f:
        problems = ldm_problems(f.shapes, f.dtypes, config, components, table)
        if problems:
            matches = [n for n, c in CONFIGS.items() if not ldm_problems(f.shapes, f.dtypes, c)]
            line = hint(config, matches, features_of_ldm(f.shapes))
            if not any(ldm_component(k) for k in f.shapes):
                line = ("hint: no key has an LDM prefix (model.diffusion_model., first_stage_model., "
                        "cond_stage_model.); a diffusers component file is read by passing its folder's parent")
            raise CheckpointError(f"{path}: single-file LDM checkpoint does not match config {config.name!r}:\n" +
                                  "\n".join(problems.lines() + ([line] if line else [])))
        loaded = {comp: {} for comp in components}
        for entry in table.values():
            arr = f.read(entry.key, dtype)
            rows = np.cumsum([s[0] for s in entry.part_shapes])[:-1]
            pieces = np.split(arr, rows, axis=0) if len(entry.parts) > 1 else [arr]
            for key, shape, piece in zip(entry.parts, entry.part_shapes, pieces):
                loaded[entry.component][key] = piece.reshape(shape)
            del arr, pieces
    expected = expected_shapes(config, components)
    return {comp: {k: loaded[comp][k] for k in expected[comp]} for comp in components}


def _load_diffusers(folder: str, config: SDConfig, dtype, components, variant) -> dict:
    opened = open_folder(folder, components, variant)
    try:
        report, found = [], {}
        for comp in components:
            p = opened[comp].problems(config)
            if comp == "unet":
                found.update(features_of_unet(opened[comp].shapes, ""))
            if p:
                report.append(f" {opened[comp].label}:")
                report += p.lines("  ")
        notes = config_json_differences(folder, config, components)
        if report:
            matches = []
            if set(components) == set(COMPONENTS):
                matches = [n for n, c in CONFIGS.items() if not any(opened[k].problems(c) for k in components)]
            line = hint(config, matches, found)
            raise CheckpointError(f"{folder}: diffusers folder does not match config {config.name!r}:\n" +
                                  "\n".join(report + ([line] if line else []) + [f"note: {n}" for n in notes]))
        if notes:
            warnings.warn(f"{folder}: config.json differs from config {config.name!r}, which is used: " +
                          "; ".join(notes), stacklevel=3)
        expected = expected_shapes(config, components)
        return {comp: {key: opened[comp].read(key, dtype) for key in expected[comp]} for comp in components}
    finally:
        close_all(opened)
