"""What a checkpoint must hold for a config: the models' keys and shapes, and the keys loading may skip.

In memory a model is `{"unet": {...}, "vae": {...}, "text_encoder": {...}}`: flat dicts of NumPy arrays keyed by
the diffusers / transformers names that `reference.unet.param_shapes`, `reference.vae.param_shapes` and
`reference.text_encoder.param_shapes` declare (docs/ARCHITECTURE.md). Those three functions are the only source
of the expected keys and shapes. `IGNORED_KEYS` is the one allow-list of keys real files carry that inference
does not read; any other key a file holds beyond the expected ones is an error.
"""

from __future__ import annotations

import fnmatch

import numpy as np

from sdcl.reference import text_encoder, unet, vae
from sdcl.reference.configs import SDConfig
from sdcl.reference.validation import CheckpointError, find_problems

COMPONENTS = ("unet", "vae", "text_encoder")


# component -> the reference model's param_shapes, called with the config's part of the same name
_PARAM_SHAPES = {"unet": unet.param_shapes, "vae": vae.param_shapes, "text_encoder": text_encoder.param_shapes}


def expected_shapes(config: SDConfig, components=COMPONENTS) -> dict:
    """{component: {key: shape}}: what the models read, from their own param_shapes."""
    out = {}
    for comp in components:
        if comp not in _PARAM_SHAPES:
            raise ValueError(f"unknown component {comp!r}; choose from {', '.join(COMPONENTS)}")
        shapes = _PARAM_SHAPES[comp](getattr(config, comp))
        out[comp] = {k: tuple(int(d) for d in s) for k, s in shapes.items()}
    return out


def check_weights(weights: dict, config: SDConfig, components=COMPONENTS, what: str = "weights") -> None:
    """Raise CheckpointError listing everything wrong with an in-memory {component: {key: array}} for `config`."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"{what}: expected a dict {{component: {{key: array}}}}, got {type(weights).__name__}")
    absent = [c for c in components if c not in weights]
    if absent:
        raise CheckpointError(f"{what}: missing component(s) {', '.join(absent)}; expected {', '.join(components)}")
    expected = expected_shapes(config, components)
    report = []
    for comp in components:
        arrays = weights[comp]
        p = find_problems(expected[comp], {k: tuple(np.shape(a)) for k, a in arrays.items()},
                          {k: getattr(a, "dtype", None) for k, a in arrays.items()})
        if p:
            report.append(f" {comp}:")
            report += p.lines("  ")
    if report:
        raise CheckpointError(f"{what} do not match config {config.name!r}:\n" + "\n".join(report))


# Keys real checkpoints carry that Stable Diffusion inference does not read: the ONE list of what loading skips
# silently. (scope, fnmatch pattern, why). scope "ldm" is the single-file checkpoint; "unet" / "vae" /
# "text_encoder" are the files of a diffusers folder (patterns match the in-memory name). In patterns,
# {n_layers} is the number of text-encoder layers the config runs.
IGNORED_KEYS = (
    # ldm's LatentDiffusion registers its DDPM schedule as buffers; our schedulers rebuild it from SchedulerConfig.
    ("ldm", "betas", "DDPM schedule buffer"),
    ("ldm", "alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "alphas_cumprod_prev", "DDPM schedule buffer"),
    ("ldm", "sqrt_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "sqrt_one_minus_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "log_one_minus_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "sqrt_recip_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "sqrt_recipm1_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "posterior_variance", "DDPM schedule buffer"),
    ("ldm", "posterior_log_variance_clipped", "DDPM schedule buffer"),
    ("ldm", "posterior_mean_coef1", "DDPM schedule buffer"),
    ("ldm", "posterior_mean_coef2", "DDPM schedule buffer"),
    ("ldm", "logvar", "training-loss weights over timesteps, present in some checkpoints"),
    ("ldm", "lvlb_weights", "training-loss weights over timesteps, present in some checkpoints"),
    # The EMA copy of the UNet (flattened names, model_ema.diffusion_modelinput_blocks00weight) in the non-pruned
    # files, and the EMA counters model_ema.decay / model_ema.num_updates the pruned files keep. The in-file
    # model.diffusion_model.* weights are what is loaded.
    ("ldm", "model_ema.*", "EMA bookkeeping"),
    # The autoencoder's training loss (LPIPS, discriminator): LatentDiffusion deletes it, but checkpoints with a
    # VAE merged in by key copying carry it.
    ("ldm", "first_stage_model.loss.*", "VAE training loss"),
    # transformers < 4.31 saved CLIP's position_ids buffer (arange(77), int64).
    ("ldm", "cond_stage_model.transformer.text_model.embeddings.position_ids", "CLIP position_ids buffer"),
    ("text_encoder", "text_model.embeddings.position_ids", "CLIP position_ids buffer"),
    # OpenCLIP's contrastive head, unused for conditioning.
    ("ldm", "cond_stage_model.model.text_projection", "OpenCLIP contrastive projection"),
    ("ldm", "cond_stage_model.model.logit_scale", "OpenCLIP contrastive temperature"),
    # SD 2.x conditions on the penultimate layer of OpenCLIP's 24: the 24th block is stored but never run.
    ("ldm", "cond_stage_model.model.transformer.resblocks.{n_layers}.*", "OpenCLIP block after the last one run"),
)


def is_ignored(key: str, scope: str, config: SDConfig) -> bool:
    """Whether IGNORED_KEYS lets a file of `scope` ("ldm", or a diffusers component) carry `key`."""
    n_layers = config.text_encoder.num_hidden_layers
    return any(s == scope and fnmatch.fnmatchcase(key, pattern.format(n_layers=n_layers))
               for s, pattern, _ in IGNORED_KEYS)
