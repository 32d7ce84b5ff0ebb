"""Reading Stable Diffusion weights: `checkpoint_config`, `load_checkpoint` (an LDM file or a diffusers folder) and
`find_family`.

The config is the checkpoint's own (`checkpoint_config`: a diffusers folder's config.json files, read in full by
folder_config; an LDM file's tensor shapes, with LDM's and the family's values where shapes say nothing, by
ldm_config; notes say where defaults were used), or one the caller names (a built-in config: the checkpoint must
match it; where a folder's config.json describes another architecture a warning says so, and a config.json field
sdcl does not implement is refused either way).

A file must hold every expected tensor with the expected shape and a floating-point dtype, and nothing else
except the keys of the allow-list `IGNORED_KEYS`. Anything else raises `CheckpointError` (a `ValueError`) whose
first line names the file and counts the offending keys, then a hint when there is one (the built-in config the
file fits, or how its architecture differs), then the keys by group (missing / unexpected / wrong shape / not
floating point), each group capped at the first LIST_LIMIT; `CheckpointError.details` holds every key. Headers are
checked before any tensor is read; tensors are then read one at a time and converted to the dtype asked for (float32
by default) from whatever float type the file stores (F64, F32, F16, BF16).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from sdcl.checkpoint.diffusers_config import config_json_differences
from sdcl.checkpoint.diffusers_folder import DIFFUSERS_FILES, close_all, open_folder
from sdcl.checkpoint.expected import COMPONENTS, expected_shapes
from sdcl.checkpoint.family import features_of_ldm, features_of_unet, hint
from sdcl.checkpoint.folder_config import CONFIG_FILES, read_component
from sdcl.checkpoint.ldm import ldm_component, ldm_problems, ldm_table
from sdcl.checkpoint.ldm_config import ldm_config
from sdcl.checkpoint.safetensors_io import SafetensorsFile
from sdcl.reference.configs import CONFIGS, SchedulerConfig, SDConfig
from sdcl.reference.validation import LIST_LIMIT, CheckpointError


@dataclass(frozen=True)
class CheckpointConfig:
    """The config a checkpoint describes itself (`checkpoint_config`): `config`, whose parts the caller did not ask
    for are None; `notes`, one line each, where values came from defaults rather than from the checkpoint, and the
    config.json fields sdcl does not know."""
    config: SDConfig
    notes: tuple
    path: str


def checkpoint_config(path, components=COMPONENTS) -> CheckpointConfig:
    """The config of the checkpoint at `path` (a diffusers folder or an LDM .safetensors file) for `components`,
    read from the checkpoint alone. Raises CheckpointError when a component asked for is absent, when a config.json
    cannot be read or holds a value sdcl does not implement (named), and when an LDM file's shapes fix no config
    sdcl can run. Reads config files and headers only."""
    path, components = os.fspath(path), _components(components)
    if os.path.isdir(path):
        config, notes = _folder_config(path, components)
    else:
        _check_file(path)
        with SafetensorsFile(path) as f:
            name = os.path.splitext(os.path.basename(path))[0]
            config, notes = ldm_config(path, f.shapes, f.metadata, components, name)
    return CheckpointConfig(config, tuple(notes), path)


def load_checkpoint(path, config: SDConfig | CheckpointConfig | None = None, dtype=np.float32,
                    components=COMPONENTS, variant: str | None = None) -> dict:
    """Read Stable Diffusion weights from a single-file LDM checkpoint (a .safetensors file) or a diffusers folder
    (a directory), into {component: {key: array of dtype}} with the in-memory (diffusers) names. `config`: a
    built-in SDConfig the checkpoint must match, the checkpoint's own (`checkpoint_config`'s result), or None (read
    it from the checkpoint here). `components` selects what to read (the rest of the file is not looked at);
    `variant` picks diffusers' `<name>.<variant>.safetensors` (e.g. "fp16"). Raises CheckpointError for anything
    that does not match the config exactly (bar IGNORED_KEYS) and for unreadable files."""
    path = os.fspath(path)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    components = _components(components)
    own = checkpoint_config(path, components) if config is None else config
    if isinstance(own, CheckpointConfig):
        lacking = [c for c in components if getattr(own.config, c) is None]
        if lacking:
            raise ValueError(f"the checkpoint config has no {', '.join(lacking)} part; read it with "
                             f"checkpoint_config(path, components={components})")
        config, own = own.config, True
    else:
        own = False
    if os.path.isdir(path):
        return _load_diffusers(path, config, own, dtype, components, variant)
    _check_file(path)
    return _load_ldm(path, config, own, dtype, components)


def find_family(path) -> str | None:
    """Name of the first config in reference.configs.CONFIGS whose keys and shapes the checkpoint (LDM file or
    diffusers folder) matches exactly, or None. Reads headers only."""
    matches = _matching_configs(os.fspath(path))
    return matches[0] if matches else None


def _components(components) -> tuple:
    components = (components,) if isinstance(components, str) else tuple(components)
    for comp in components:
        if comp not in COMPONENTS:
            raise ValueError(f"unknown component {comp!r}; choose from {', '.join(COMPONENTS)}")
    return components


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file or folder")
    if path.lower().endswith((".ckpt", ".pt", ".pth", ".bin")):
        raise CheckpointError(f"{path}: pickled PyTorch checkpoints are not read (unsafe, and need torch); "
                              "convert it to .safetensors")


def _folder_config(folder: str, components) -> tuple:
    """(SDConfig, notes) from a diffusers folder's config files: the components asked for must have theirs; an
    absent scheduler config means SD's schedule, with a note."""
    parts, notes = {"unet": None, "vae": None, "text_encoder": None}, []
    for comp in components:
        sub = DIFFUSERS_FILES[comp][0]
        if not os.path.isdir(os.path.join(folder, sub)):
            raise CheckpointError(f"{folder}: diffusers folder has no {sub}/ subfolder, and the {comp} is needed here")
        if not os.path.isfile(os.path.join(folder, CONFIG_FILES[comp])):
            raise CheckpointError(f"{folder}: diffusers folder has no {CONFIG_FILES[comp]}, which says the {comp}'s "
                                  "architecture", hint="name the built-in config it matches (sdcl generate --model)")
        parts[comp], more = read_component(folder, comp)
        notes += more
    if os.path.isfile(os.path.join(folder, CONFIG_FILES["scheduler"])):
        scheduler, more = read_component(folder, "scheduler")
        notes += more
    else:
        scheduler = SchedulerConfig()
        notes.append(f"no {CONFIG_FILES['scheduler']}: SD's training schedule is used ({scheduler.beta_schedule} "
                     f"betas {scheduler.beta_start}..{scheduler.beta_end}, {scheduler.prediction_type} prediction)")
    return SDConfig(name=os.path.basename(os.path.normpath(folder)), scheduler=scheduler, **parts), notes


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


def mismatch_error(head: str, groups: list, hint_line: str = "", notes=()) -> CheckpointError:
    """The CheckpointError of a key mismatch. `groups`: (name, heading or "", Problems) per file or component.
    First line: `head` and the counts per group; then the hint; then each group's keys, capped; then the notes
    (capped too). `details` lists every key."""
    counts = "; ".join(f"{name}: {p.summary()}" if name else p.summary() for name, _, p in groups)
    first = f"{head}: {counts}"
    body, full = [], []
    for _, heading, p in groups:
        if heading:
            body.append(f" {heading}:")
            full.append(f" {heading}:")
        body += p.lines("  ")
        full += p.lines("  ", limit=None)
    hint_text = hint_line.removeprefix("hint: ")
    notes = [f"note: {n}" for n in notes]
    shown = notes[:LIST_LIMIT] + ([f"note: and {len(notes) - LIST_LIMIT} more"] if len(notes) > LIST_LIMIT else [])
    message = "\n".join([first] + ([f"hint: {hint_text}"] if hint_text else []) + body + shown)
    return CheckpointError(message, hint=hint_text, details="\n".join([first] + full + notes) + "\n")


def _load_ldm(path: str, config: SDConfig, own: bool, dtype, components) -> dict:
    table = ldm_table(config, components)
    with SafetensorsFile(path) as f:
        problems = ldm_problems(f.shapes, f.dtypes, config, components, table)
        if problems:
            if not any(ldm_component(k) for k in f.shapes):
                line = ("no key has an LDM prefix (model.diffusion_model., first_stage_model., cond_stage_model.); "
                        "a diffusers component file is read by passing its folder's parent")
            elif own:
                line = ("the keys the shapes do not explain belong to no SD 1.x / 2.x module (LoRA, ControlNet, "
                        "another architecture?)")
            else:
                matches = [n for n, c in CONFIGS.items() if not ldm_problems(f.shapes, f.dtypes, c)]
                line = hint(config, matches, features_of_ldm(f.shapes))
            what = "the config its tensor shapes imply" if own else f"config {config.name!r}"
            raise mismatch_error(f"{path}: single-file LDM checkpoint does not match {what}",
                                 [("", "", problems)], line)
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


def _load_diffusers(folder: str, config: SDConfig, own: bool, dtype, components, variant) -> dict:
    notes = []
    if not own:
        for comp in components:      # a field sdcl does not implement is refused whatever config is named
            if os.path.isfile(os.path.join(folder, CONFIG_FILES[comp])):
                read_component(folder, comp)
        notes = config_json_differences(folder, config, components)
    opened = open_folder(folder, components, variant)
    try:
        groups, found = [], {}
        for comp in components:
            p = opened[comp].problems(config)
            if comp == "unet":
                found.update(features_of_unet(opened[comp].shapes, ""))
            if p:
                groups.append((comp, opened[comp].label, p))
        if groups:
            if own:
                line = ("the weights do not have the shapes the folder's config.json files describe: is a "
                        "config.json from another model?")
            else:
                matches = []
                if set(components) == set(COMPONENTS):
                    matches = [n for n, c in CONFIGS.items() if not any(opened[k].problems(c) for k in components)]
                line = hint(config, matches, found)
            what = "its config.json files" if own else f"config {config.name!r}"
            raise mismatch_error(f"{folder}: diffusers folder does not match {what}", groups, line, notes)
        if notes:
            warnings.warn(f"{folder}: config.json differs from config {config.name!r}, which is used: " +
                          "; ".join(notes), stacklevel=3)
        expected = expected_shapes(config, components)
        return {comp: {key: opened[comp].read(key, dtype) for key in expected[comp]} for comp in components}
    finally:
        close_all(opened)
