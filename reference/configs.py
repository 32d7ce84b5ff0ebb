"""Model configurations: the architecture as data.

Field names follow the diffusers / transformers configs where one exists, so that a test can build the
independent oracle from the same numbers. `CONFIGS` holds the full-size SD 1.5 and SD 2.1-base models and tiny
models of the same two shape families for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class TextEncoderConfig:
    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12        # layers that run; SD 2.x runs 23 of OpenCLIP's 24 (the penultimate output)
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"     # SD 1.x CLIP ViT-L: quick_gelu; SD 2.x OpenCLIP ViT-H: gelu
    layer_norm_eps: float = 1e-5
    bos_token_id: int = 49406
    eos_token_id: int = 49407
    pad_token_id: int = 49407          # SD 1.x pads with the end token, SD 2.x with 0 ("!")


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple = (320, 640, 1280, 1280)
    down_block_types: tuple = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    layers_per_block: int = 2
    # heads per block (an int for all blocks, or one per down block). diffusers names this field
    # attention_head_dim for historical reasons, but uses it as the number of heads.
    num_heads: int | tuple = 8
    cross_attention_dim: int = 768
    use_linear_projection: bool = False  # SD 2.x: linear proj_in/proj_out; SD 1.x: 1x1 convolutions
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    sample_size: int = 64

    def heads(self, block: int) -> int:
        return self.num_heads if isinstance(self.num_heads, int) else self.num_heads[block]


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215
    sample_size: int = 512


@dataclass(frozen=True)
class SchedulerConfig:
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    steps_offset: int = 1
    set_alpha_to_one: bool = False
    prediction_type: str = "epsilon"   # or "v_prediction" (SD 2.x 768-v)
    timestep_spacing: str = "leading"


@dataclass(frozen=True)
class SDConfig:
    """A whole model. A config read from a checkpoint (sdcl.checkpoint.checkpoint_config) has None for the parts the
    caller did not ask for."""
    name: str
    text_encoder: TextEncoderConfig
    unet: UNetConfig
    vae: VAEConfig
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    @property
    def vae_scale(self) -> int:
        """Pixels per latent cell: 2 ** (number of VAE down blocks - 1)."""
        return 2 ** (len(self.vae.block_out_channels) - 1)


SD15 = SDConfig(
    name="sd15",
    text_encoder=TextEncoderConfig(),
    unet=UNetConfig(),
    vae=VAEConfig(),
)

SD21_BASE = SDConfig(
    name="sd21-base",
    text_encoder=TextEncoderConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                   num_attention_heads=16, hidden_act="gelu", pad_token_id=0),
    unet=UNetConfig(num_heads=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True),
    vae=VAEConfig(),
)

# Tiny models of the same two families: every block type, skip connection, attention flavour and padding rule,
# at a size that runs in milliseconds.
_TINY_UNET = UNetConfig(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=2,
                        norm_num_groups=8, sample_size=8)
_TINY_VAE = VAEConfig(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, sample_size=16)

TINY_SD1 = SDConfig(
    name="tiny-sd1",
    text_encoder=TextEncoderConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
    unet=replace(_TINY_UNET, num_heads=2, cross_attention_dim=32),
    vae=_TINY_VAE,
)

TINY_SD2 = SDConfig(
    name="tiny-sd2",
    text_encoder=TextEncoderConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   hidden_act="gelu", pad_token_id=0),
    unet=replace(_TINY_UNET, num_heads=(2, 4), cross_attention_dim=32, use_linear_projection=True),
    vae=_TINY_VAE,
)

CONFIGS = {c.name: c for c in (SD15, SD21_BASE, TINY_SD1, TINY_SD2)}


def get_config(name: str) -> SDConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; choose one of {', '.join(CONFIGS)}") from None
