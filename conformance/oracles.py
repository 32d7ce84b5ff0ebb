"""The independent implementations built from our configs: diffusers' UNet2DConditionModel and AutoencoderKL,
transformers' CLIPTextModel. Used by the oracle tests and by the torch baseline rows of perf and the ladder.

Test and perf dependencies only (torch, diffusers, transformers), imported when called.
"""

from __future__ import annotations

from sdcl.reference.configs import TextEncoderConfig, UNetConfig, VAEConfig


def unet_kwargs(cfg: UNetConfig) -> dict:
    return dict(sample_size=cfg.sample_size, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                down_block_types=tuple(cfg.down_block_types), up_block_types=tuple(cfg.up_block_types),
                block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                attention_head_dim=cfg.num_heads,  # diffusers' name for the number of heads (see configs.py)
                cross_attention_dim=cfg.cross_attention_dim, use_linear_projection=cfg.use_linear_projection,
                norm_num_groups=cfg.norm_num_groups, norm_eps=cfg.norm_eps, flip_sin_to_cos=cfg.flip_sin_to_cos,
                freq_shift=cfg.freq_shift)


def vae_kwargs(cfg: VAEConfig) -> dict:
    n = len(cfg.block_out_channels)
    return dict(in_channels=cfg.in_channels, out_channels=cfg.out_channels, latent_channels=cfg.latent_channels,
                down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                norm_num_groups=cfg.norm_num_groups, sample_size=cfg.sample_size, scaling_factor=cfg.scaling_factor)


def clip_text_config(cfg: TextEncoderConfig, attn_implementation: str | None = "sdpa"):
    """transformers' CLIPTextConfig with our numbers. sdpa, not eager: transformers' eager CLIP attention runs
    its softmax in float32 even for float64 tensors. None leaves transformers' default (for saved configs)."""
    from transformers import CLIPTextConfig
    extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    return CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings, hidden_act=cfg.hidden_act,
        layer_norm_eps=cfg.layer_norm_eps, bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id, attention_dropout=0.0, **extra)


def diffusers_unet(cfg: UNetConfig):
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(**unet_kwargs(cfg)).eval()


def diffusers_vae(cfg: VAEConfig):
    from diffusers import AutoencoderKL
    return AutoencoderKL(**vae_kwargs(cfg)).eval()


def clip_text_model(cfg: TextEncoderConfig):
    from transformers import CLIPTextModel
    return CLIPTextModel(clip_text_config(cfg)).eval()
