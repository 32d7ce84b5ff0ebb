"""The config.json files of a diffusers folder: written from our config, and compared with a named one.

Reading a folder's own config is folder_config's job. When the caller names a built-in `SDConfig` instead, that
config is used, and a folder's config.json is compared with it, field by architectural field: the differences are
reported (as a `UserWarning` by the loader, or as notes in its error message).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

from sdcl.checkpoint.diffusers_folder import DIFFUSERS_FILES
from sdcl.checkpoint.folder_config import read_json
from sdcl.reference.configs import SDConfig

from sdcl.files import write_text

_DIFFUSERS_VERSION = "0.42.1"  # the diffusers these folders were checked against (tests/test_checkpoint.py)


def diffusers_configs(config: SDConfig) -> dict:
    """The config.json contents of a diffusers folder for `config`: {"unet", "vae", "text_encoder",
    "scheduler", "model_index"}. Only what the classes need; everything else takes diffusers' defaults."""
    u, v, t, s = config.unet, config.vae, config.text_encoder, config.scheduler
    n = len(v.block_out_channels)
    heads = u.num_heads if isinstance(u.num_heads, int) else list(u.num_heads)
    return {
        "unet": {"_class_name": "UNet2DConditionModel", "_diffusers_version": _DIFFUSERS_VERSION,
                 "sample_size": u.sample_size, "in_channels": u.in_channels, "out_channels": u.out_channels,
                 "down_block_types": list(u.down_block_types), "up_block_types": list(u.up_block_types),
                 "mid_block_type": "UNetMidBlock2DCrossAttn", "block_out_channels": list(u.block_out_channels),
                 "layers_per_block": u.layers_per_block, "attention_head_dim": heads,
                 "cross_attention_dim": u.cross_attention_dim, "use_linear_projection": u.use_linear_projection,
                 "norm_num_groups": u.norm_num_groups, "norm_eps": u.norm_eps, "act_fn": "silu",
                 "flip_sin_to_cos": u.flip_sin_to_cos, "freq_shift": u.freq_shift, "center_input_sample": False,
                 "downsample_padding": 1, "mid_block_scale_factor": 1},
        "vae": {"_class_name": "AutoencoderKL", "_diffusers_version": _DIFFUSERS_VERSION,
                "in_channels": v.in_channels, "out_channels": v.out_channels, "latent_channels": v.latent_channels,
                "down_block_types": ["DownEncoderBlock2D"] * n, "up_block_types": ["UpDecoderBlock2D"] * n,
                "block_out_channels": list(v.block_out_channels), "layers_per_block": v.layers_per_block,
                "norm_num_groups": v.norm_num_groups, "act_fn": "silu", "sample_size": v.sample_size,
                "scaling_factor": v.scaling_factor},
        "text_encoder": {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **asdict(t)},
        "scheduler": {"_class_name": "DDIMScheduler", "_diffusers_version": _DIFFUSERS_VERSION, **asdict(s),
                      "clip_sample": False},
        "model_index": {"_class_name": "StableDiffusionPipeline", "_diffusers_version": _DIFFUSERS_VERSION,
                        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                        "text_encoder": ["transformers", "CLIPTextModel"], "scheduler": ["diffusers", "DDIMScheduler"],
                        "tokenizer": [None, None], "safety_checker": [None, None],
                        "feature_extractor": [None, None], "requires_safety_checker": False},
    }


# The config.json fields compared with our config when reading a folder: the architecture, not the token ids
# (the real SD text_encoder/config.json files carry CLIPTextConfig's defaults there) nor sample sizes.
_COMPARED_FIELDS = {
    "unet": ("_class_name", "in_channels", "out_channels", "down_block_types", "up_block_types",
             "block_out_channels", "layers_per_block", "attention_head_dim", "cross_attention_dim",
             "use_linear_projection", "norm_num_groups", "norm_eps", "flip_sin_to_cos", "freq_shift"),
    "vae": ("_class_name", "in_channels", "out_channels", "latent_channels", "block_out_channels",
            "layers_per_block", "norm_num_groups", "scaling_factor"),
    "text_encoder": ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings", "hidden_act", "layer_norm_eps"),
}


def config_json_differences(folder: str, config: SDConfig, components) -> list:
    """One line per _COMPARED_FIELDS field in which the folder's config.json files and `config` disagree, or that a
    config.json lacks (then `config`'s value is the one used: the caller warns). A config.json that exists but cannot
    be read or is not a JSON object is a CheckpointError naming it."""
    ours = diffusers_configs(config)
    notes = []
    for comp in components:
        rel = f"{DIFFUSERS_FILES[comp][0]}/config.json"
        path = os.path.join(folder, rel)
        if not os.path.exists(path):
            notes.append(f"{rel} is missing: config {config.name!r} is used for all of it")
            continue
        theirs = read_json(path)
        for name in _COMPARED_FIELDS[comp]:
            if name not in theirs:
                notes.append(f"{rel} has no {name}: config {config.name!r}'s {json.dumps(ours[comp][name])} is used")
            elif json.dumps(theirs[name]) != json.dumps(ours[comp][name]):
                notes.append(f"{rel} has {name}={json.dumps(theirs[name])}, "
                             f"config {config.name!r} {json.dumps(ours[comp][name])}")
    return notes


def write_json(path: str, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")
