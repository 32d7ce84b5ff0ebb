"""Writing Stable Diffusion weights: `save_ldm_checkpoint` (one .safetensors file) and `save_diffusers` (a folder).

Both check the weights against the config first (nothing is written for invalid weights) and write exactly the
tensors the models read. Arrays keep their dtype (float16, float32 or float64) unless `dtype=` says otherwise.
"""

from __future__ import annotations

import os

import numpy as np

from sdcl.checkpoint.diffusers_config import diffusers_configs, write_json
from sdcl.checkpoint.diffusers_folder import DIFFUSERS_FILES
from sdcl.checkpoint.expected import COMPONENTS, check_weights, expected_shapes
from sdcl.checkpoint.ldm import ldm_table, text_layout
from sdcl.checkpoint.ldm_config import OPEN_CLIP_LAYERS_KEY
from sdcl.checkpoint.safetensors_io import WRITE_DTYPES, write_safetensors
from sdcl.reference.configs import SDConfig
from sdcl.reference.validation import CheckpointError


def save_ldm_checkpoint(weights: dict, config: SDConfig, path, dtype=None) -> None:
    """Write {component: {key: array}} as a single-file LDM checkpoint (.safetensors) for `config`. Arrays keep
    their dtype unless `dtype` is given. Writes exactly the tensors the models read (ldm_table): no schedule
    buffers, no EMA, and for SD 2.x only the OpenCLIP blocks that run, without text_projection / logit_scale; the
    metadata then says how many run (ldm_config.OPEN_CLIP_LAYERS_KEY: the real files hold one block more)."""
    path = os.fspath(path)
    check_weights(weights, config, what="weights to save")
    arrays = {}
    for key, entry in ldm_table(config).items():
        parts = [_stored(weights[entry.component][k], dtype) for k in entry.parts]
        dts = {a.dtype for a in parts}
        if len(dts) != 1:
            raise CheckpointError(f"{entry.parts} are stacked into {key} but have different dtypes {dts}")
        stacked = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        arrays[key] = stacked.reshape(entry.shape)
    metadata = {"format": "pt"}
    if text_layout(config) == "open_clip":   # the blocks stored all run: no penultimate-layer rule (ldm_config)
        metadata[OPEN_CLIP_LAYERS_KEY] = str(config.text_encoder.num_hidden_layers)
    write_safetensors(path, arrays, metadata)


def save_diffusers(weights: dict, config: SDConfig, folder, dtype=None) -> None:
    """Write {component: {key: array}} as a diffusers folder: the three weight files (in-memory names, the
    transformers 4.x `text_model.` names for the text encoder), their config.json files, a DDIM scheduler
    config and model_index.json (no tokenizer: load one separately). Arrays keep their dtype unless `dtype`."""
    folder = os.fspath(folder)
    check_weights(weights, config, what="weights to save")
    expected = expected_shapes(config)
    configs = diffusers_configs(config)
    os.makedirs(folder, exist_ok=True)
    for comp in COMPONENTS:
        sub, stem = DIFFUSERS_FILES[comp]
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        arrays = {key: _stored(weights[comp][key], dtype) for key in expected[comp]}
        write_safetensors(os.path.join(folder, sub, f"{stem}.safetensors"), arrays, {"format": "pt"})
        write_json(os.path.join(folder, sub, "config.json"), configs[comp])
    write_json(os.path.join(folder, "scheduler", "scheduler_config.json"), configs["scheduler"])
    write_json(os.path.join(folder, "model_index.json"), configs["model_index"])


def _stored(arr, dtype) -> np.ndarray:
    """The array as it is written: in its own dtype, or in `dtype` when given; either must be a float type the
    files take."""
    arr = np.asarray(arr)
    dt = np.dtype(arr.dtype if dtype is None else dtype)
    if dt not in WRITE_DTYPES:
        raise CheckpointError(f"cannot store {dt} in a checkpoint; use float16, float32 or float64")
    return arr.astype(dt, copy=False)
