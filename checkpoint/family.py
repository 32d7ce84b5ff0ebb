"""Which model family a checkpoint's tensor shapes point to, said as a hint in error messages.

A few shapes tell SD 1.x from SD 2.x without reading a tensor: the text encoder's layout (CLIP or OpenCLIP),
whether the UNet's proj_in is a linear layer or a 1x1 convolution, and the cross-attention width. `hint`
compares what a file shows with what the config asked for, and names the config the file fits, or else says to
read the checkpoint's own config.
"""

from __future__ import annotations

from sdcl.checkpoint.ldm import text_layout
from sdcl.reference.configs import CONFIGS, SDConfig


def _features_of_config(config: SDConfig) -> dict:
    return {"text encoder": "OpenCLIP" if text_layout(config) == "open_clip" else "CLIP",
            "UNet proj_in": "linear" if config.unet.use_linear_projection else "1x1 conv",
            "cross_attention_dim": config.unet.cross_attention_dim}


def features_of_unet(shapes: dict, prefix: str) -> dict:
    """The UNet features the {key: shape} of a file shows, for keys under `prefix`."""
    f = {}
    for key, shape in shapes.items():
        if key.startswith(prefix) and key.endswith("proj_in.weight") and len(shape) in (2, 4):
            f["UNet proj_in"] = "linear" if len(shape) == 2 else "1x1 conv"
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight") and len(shape) == 2:
            f["cross_attention_dim"] = shape[1]
    return f


def features_of_ldm(shapes: dict) -> dict:
    """The features the {key: shape} of a single-file LDM checkpoint shows."""
    f = features_of_unet(shapes, "model.diffusion_model.")
    if any(k.startswith("cond_stage_model.model.") for k in shapes):
        f["text encoder"] = "OpenCLIP"
    elif any(k.startswith("cond_stage_model.transformer.") for k in shapes):
        f["text encoder"] = "CLIP"
    return f


def hint(config: SDConfig, matches: list, found: dict) -> str:
    """A line suggesting the config the checkpoint fits, or naming how its architecture differs from config's."""
    others = [name for name in matches if name != config.name]
    if others:
        return f"hint: the checkpoint matches config {others[0]!r}; load it with that config"
    wanted = _features_of_config(config)
    differ = {k: v for k, v in found.items() if k in wanted and wanted[k] != v}
    own = "name no config (sdcl generate without --model) to read the checkpoint's own"
    if not differ:
        return f"hint: the checkpoint is not config {config.name!r}: {own}"
    fits = [name for name, c in CONFIGS.items()
            if all(_features_of_config(c).get(k) == v for k, v in found.items())]
    line = ("hint: the checkpoint has " + ", ".join(f"{k} {v}" for k, v in differ.items()) +
            f" where config {config.name!r} has " + ", ".join(f"{k} {wanted[k]}" for k in differ))
    sd2 = found.get("text encoder") == "OpenCLIP" or found.get("UNet proj_in") == "linear"
    line += f": it looks like an SD {'2' if sd2 else '1'}.x checkpoint"
    return line + (f"; try config {' or '.join(repr(n) for n in fits)}" if fits else f"; {own}")
