"""Stable Diffusion's VAE (diffusers `AutoencoderKL` with DownEncoderBlock2D / UpDecoderBlock2D), written once
against an ops namespace (see docs/ARCHITECTURE.md).

Architecture, for block_out_channels = (C0, ..., Cn-1), layers_per_block = L, latent channels Z:

  encoder: conv_in 3x3 -> down block i (L resnets to Ci, then, except in the last block, a stride-2 3x3 conv on
           the input zero-padded by one row at the bottom and one column at the right) -> mid block -> GroupNorm,
           SiLU -> conv_out 3x3 to 2Z channels;  quant_conv 1x1 (2Z -> 2Z): the first Z channels are the mean of
           the latent distribution, the last Z its log-variance.
  decoder: post_quant_conv 1x1 (Z -> Z) -> conv_in 3x3 -> mid block -> up block i (L + 1 resnets to the reversed
           channels, then, except in the last block, nearest 2x upsampling and a 3x3 conv) -> GroupNorm, SiLU ->
           conv_out 3x3.
  resnet:  x + conv2(silu(norm2(conv1(silu(norm1(x)))))), x through a 1x1 conv_shortcut when channels change.
  mid:     resnet -> attention -> resnet; attention is single-head self-attention over the H*W positions,
           x + to_out(attn(to_q(n), to_k(n), to_v(n))) with n = group_norm(x) seen as (N, H*W, C).
  Every GroupNorm has eps 1e-6 and cfg.norm_num_groups groups; every resnet / attention output scale is 1.

API (as diffusers): `decode(z)` takes the UNSCALED latent, i.e. what the UNet produces divided by
`cfg.scaling_factor` (the pipeline does that division: `vae.decode(latents / vae.scaling_factor)`), and returns
the image, nominally in [-1, 1] and not clamped. `encode(image)` takes an image in [-1, 1] and returns
`(mean, logvar)` of the latent distribution, also unscaled: the pipeline multiplies a latent (the mean, or
mean + exp(logvar / 2) * noise) by `scaling_factor`. diffusers' DiagonalGaussianDistribution clamps logvar to
[-30, 20] before using it; there is no clamp op, so the raw logvar is returned and the caller clamps it.
Calling the model, `vae(z)`, decodes.
"""

from __future__ import annotations

import numpy as np

from sdcl.reference import ops as _reference_ops
from sdcl.reference.configs import VAEConfig
from sdcl.reference.validation import check_shapes  # the shared missing / unexpected / mis-shaped report
from sdcl.reference.weights import random_weights

NORM_EPS = 1e-6


# ---------------------------------------------------------------------------------------------- parameter table

def _conv(shapes: dict, key: str, cin: int, cout: int, k: int) -> None:
    shapes[f"{key}.weight"] = (cout, cin, k, k)
    shapes[f"{key}.bias"] = (cout,)


def _norm(shapes: dict, key: str, c: int) -> None:
    shapes[f"{key}.weight"] = (c,)
    shapes[f"{key}.bias"] = (c,)


def _resnet(shapes: dict, key: str, cin: int, cout: int) -> None:
    _norm(shapes, f"{key}.norm1", cin)
    _conv(shapes, f"{key}.conv1", cin, cout, 3)
    _norm(shapes, f"{key}.norm2", cout)
    _conv(shapes, f"{key}.conv2", cout, cout, 3)
    if cin != cout:
        _conv(shapes, f"{key}.conv_shortcut", cin, cout, 1)


def _mid(shapes: dict, key: str, c: int) -> None:
    _resnet(shapes, f"{key}.resnets.0", c, c)
    a = f"{key}.attentions.0"
    _norm(shapes, f"{a}.group_norm", c)
    for proj in ("to_q", "to_k", "to_v", "to_out.0"):
        shapes[f"{a}.{proj}.weight"] = (c, c)
        shapes[f"{a}.{proj}.bias"] = (c,)
    _resnet(shapes, f"{key}.resnets.1", c, c)


def param_shapes(cfg: VAEConfig) -> dict:
    """Every key the VAE reads (diffusers AutoencoderKL state_dict names) with its shape."""
    boc = tuple(cfg.block_out_channels)
    n, z = len(boc), cfg.latent_channels
    s: dict = {}
    # encoder
    _conv(s, "encoder.conv_in", cfg.in_channels, boc[0], 3)
    cin = boc[0]
    for i, cout in enumerate(boc):
        for j in range(cfg.layers_per_block):
            _resnet(s, f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else cout, cout)
        if i < n - 1:
            _conv(s, f"encoder.down_blocks.{i}.downsamplers.0.conv", cout, cout, 3)
        cin = cout
    _mid(s, "encoder.mid_block", boc[-1])
    _norm(s, "encoder.conv_norm_out", boc[-1])
    _conv(s, "encoder.conv_out", boc[-1], 2 * z, 3)
    _conv(s, "quant_conv", 2 * z, 2 * z, 1)
    # decoder
    _conv(s, "post_quant_conv", z, z, 1)
    _conv(s, "decoder.conv_in", z, boc[-1], 3)
    _mid(s, "decoder.mid_block", boc[-1])
    rev = boc[::-1]
    cin = rev[0]
    for i, cout in enumerate(rev):
        for j in range(cfg.layers_per_block + 1):
            _resnet(s, f"decoder.up_blocks.{i}.resnets.{j}", cin if j == 0 else cout, cout)
        if i < n - 1:
            _conv(s, f"decoder.up_blocks.{i}.upsamplers.0.conv", cout, cout, 3)
        cin = cout
    _norm(s, "decoder.conv_norm_out", boc[0])
    _conv(s, "decoder.conv_out", boc[0], cfg.out_channels, 3)
    return s


def init_weights(cfg: VAEConfig, seed: int = 0, dtype=np.float32) -> dict:
    return random_weights(param_shapes(cfg), seed=seed, dtype=dtype)


# ------------------------------------------------------------------------------------------------------- model

class VAE:
    """AutoencoderKL on an ops namespace. weights: flat dict keyed by diffusers names (see param_shapes)."""

    def __init__(self, cfg: VAEConfig, weights: dict, ops=_reference_ops):
        check_shapes(param_shapes(cfg), weights, "VAE weights")
        self.cfg = cfg
        self.w = weights
        self.ops = ops
        self.scaling_factor = cfg.scaling_factor
        self.groups = cfg.norm_num_groups

    # building blocks ------------------------------------------------------------------------------------------

    def _conv(self, x, key: str, stride: int = 1, padding=1, residual=None):
        return self.ops.conv2d(x, self.w[f"{key}.weight"], self.w[f"{key}.bias"], stride=stride, padding=padding,
                               residual=residual)

    def _norm_silu(self, x, key: str):
        o = self.ops
        return o.group_norm_silu(x, self.groups, self.w[f"{key}.weight"], self.w[f"{key}.bias"], eps=NORM_EPS)

    def _resnet(self, x, key: str):
        h = self._conv(self._norm_silu(x, f"{key}.norm1"), f"{key}.conv1")
        h = self._norm_silu(h, f"{key}.norm2")
        if f"{key}.conv_shortcut.weight" in self.w:
            x = self._conv(x, f"{key}.conv_shortcut", padding=0)
        return self._conv(h, f"{key}.conv2", residual=x)      # conv2 adds the (projected) input

    def _attention(self, x, key: str):
        o, w = self.ops, self.w
        n, c, hh, ww = x.shape
        h = o.group_norm(x, self.groups, w[f"{key}.group_norm.weight"], w[f"{key}.group_norm.bias"], eps=NORM_EPS)
        h = o.permute(h.reshape(n, c, hh * ww), (0, 2, 1))  # (N, HW, C)
        q, k, v = (o.linear(h, w[f"{key}.{p}.weight"], w[f"{key}.{p}.bias"]) for p in ("to_q", "to_k", "to_v"))
        del h
        h = o.attention(q, k, v, heads=1)
        del q, k, v
        h = o.linear(h, w[f"{key}.to_out.0.weight"], w[f"{key}.to_out.0.bias"])
        h = o.permute(h, (0, 2, 1)).reshape(n, c, hh, ww)
        return o.add(x, h)

    def _mid(self, x, key: str):
        x = self._resnet(x, f"{key}.resnets.0")
        x = self._attention(x, f"{key}.attentions.0")
        return self._resnet(x, f"{key}.resnets.1")

    def _up_block(self, x, i: int):
        """decoder.up_blocks.i: layers_per_block + 1 resnets, then (all but the last block) 2x nearest + 3x3 conv."""
        for j in range(self.cfg.layers_per_block + 1):
            x = self._resnet(x, f"decoder.up_blocks.{i}.resnets.{j}")
        if i < len(self.cfg.block_out_channels) - 1:
            x = self._conv(self.ops.upsample_nearest2x(x), f"decoder.up_blocks.{i}.upsamplers.0.conv")
        return x

    # public API -----------------------------------------------------------------------------------------------

    def decode(self, z):
        """Unscaled latent (N, latent_channels, h, w) -> image (N, out_channels, h * 2^(n-1), w * 2^(n-1))."""
        cfg = self.cfg
        if len(z.shape) != 4 or z.shape[1] != cfg.latent_channels:
            raise ValueError(f"VAE.decode: expected latents (N, {cfg.latent_channels}, h, w), got shape {z.shape}")
        n = len(cfg.block_out_channels)
        x = self._conv(z, "post_quant_conv", padding=0)
        x = self._conv(x, "decoder.conv_in")
        x = self._mid(x, "decoder.mid_block")
        for i in range(n):
            x = self._up_block(x, i)
        x = self._norm_silu(x, "decoder.conv_norm_out")
        return self._conv(x, "decoder.conv_out")

    __call__ = decode

    def encode(self, image):
        """Image (N, in_channels, H, W) -> (mean, logvar), each (N, latent_channels, H >> (n-1), W >> (n-1)).

        Unscaled (multiply a latent by scaling_factor for the UNet); logvar is not clamped (see module doc)."""
        cfg = self.cfg
        if len(image.shape) != 4 or image.shape[1] != cfg.in_channels:
            raise ValueError(f"VAE.encode: expected images (N, {cfg.in_channels}, H, W), got shape {image.shape}")
        n, zc = len(cfg.block_out_channels), cfg.latent_channels
        x = self._conv(image, "encoder.conv_in")
        for i in range(n):
            for j in range(cfg.layers_per_block):
                x = self._resnet(x, f"encoder.down_blocks.{i}.resnets.{j}")
            if i < n - 1:  # zero pad (top 0, bottom 1, left 0, right 1), then a stride-2 valid conv
                x = self._conv(x, f"encoder.down_blocks.{i}.downsamplers.0.conv", stride=2, padding=(0, 1, 0, 1))
        x = self._mid(x, "encoder.mid_block")
        x = self._norm_silu(x, "encoder.conv_norm_out")
        x = self._conv(x, "encoder.conv_out")
        # quant_conv's output channels are [mean | logvar]; activations may only be sliced on the batch axis, so
        # the 1x1 conv runs as two convs on the halves of its weight (sliced on the weight's first axis).
        wq, bq = self.w["quant_conv.weight"], self.w["quant_conv.bias"]
        mean = self.ops.conv2d(x, wq[:zc], bq[:zc])
        logvar = self.ops.conv2d(x, wq[zc:], bq[zc:])
        return mean, logvar
