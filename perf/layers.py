"""The layers the layer benchmarks time, declared once (perf/benchmarks/test_bench_layers.py times them; the tests
check their inputs against a real forward pass): a text encoder layer (all of a model's layers have one shape),
every UNet block (down_blocks.i, mid, up_blocks.i; and the first resnet and transformer of down_blocks.0 alone),
every VAE decoder block (mid, up_blocks.i; and the first resnet of up_blocks.0 alone), at the real SD shapes (batch 2
for the text encoder and the UNet, classifier-free guidance; batch 1 for the VAE) and those of the tiny models.

Only the benchmarked layer's weights are random arrays (`layer_weights`); the model's other weights are zero-stride
stand-ins of the right shape (never read by that layer), so a full-size layer costs its own memory only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdcl.reference.configs import get_config
from sdcl.reference.text_encoder import TextEncoder
from sdcl.reference.text_encoder import param_shapes as text_shapes
from sdcl.reference.unet import UNet, _plan
from sdcl.reference.unet import param_shapes as unet_shapes
from sdcl.reference.vae import VAE
from sdcl.reference.vae import param_shapes as vae_shapes
from sdcl.reference.weights import random_tensor

BATCH, CONTEXT = 2, 77


@dataclass(frozen=True)
class Layer:
    name: str
    model: str              # "text", "unet", "vae"
    prefix: str             # the weights the layer reads
    inputs: object          # config -> {name: shape}
    run: object             # (model, plan, **inputs) -> output


def _unet_c(cfg, level=0):
    return cfg.unet.block_out_channels[level]


def _latent(cfg):
    return cfg.unet.sample_size


LAYERS = [
    Layer("text_encoder.layer0", "text", "text_model.encoder.layers.0.",
          lambda c: {"h": (BATCH, CONTEXT, c.text_encoder.hidden_size)},
          lambda m, plan, h: m._layer(h, 0)),
    Layer("unet.down0.resnet0", "unet", "down_blocks.0.resnets.0.",
          lambda c: {"x": (BATCH, _unet_c(c), _latent(c), _latent(c)), "temb": (BATCH, 4 * _unet_c(c))},
          lambda m, plan, x, temb: m._resnet("down_blocks.0.resnets.0.", x, temb)),
    Layer("unet.down0.transformer0", "unet", "down_blocks.0.attentions.0.",
          lambda c: {"x": (BATCH, _unet_c(c), _latent(c), _latent(c)),
                     "ctx": (BATCH, CONTEXT, c.unet.cross_attention_dim)},
          lambda m, plan, x, ctx: m._transformer("down_blocks.0.attentions.0.", x, ctx, plan["down"][0]["heads"])),
    Layer("unet.mid", "unet", "mid_block.",
          lambda c: {"x": (BATCH, _unet_c(c, -1), _latent(c) // 2 ** (len(c.unet.block_out_channels) - 1),
                           _latent(c) // 2 ** (len(c.unet.block_out_channels) - 1)),
                     "temb": (BATCH, 4 * _unet_c(c)), "ctx": (BATCH, CONTEXT, c.unet.cross_attention_dim)},
          lambda m, plan, x, temb, ctx: m._mid_block(x, temb, ctx)),
    *[Layer(f"unet.down_blocks.{i}", "unet", f"down_blocks.{i}.", lambda c, i=i: _down_inputs(c, i),
            lambda m, plan, x, temb, ctx, i=i: m._down_block(i, x, temb, ctx, []))
      for i in range(4)],
    *[Layer(f"unet.up_blocks.{i}", "unet", f"up_blocks.{i}.", lambda c, i=i: _up_inputs(c, i),
            lambda m, plan, x, temb, ctx, i=i, **skips: m._up_block(
                i, x, temb, ctx, [skips["next_skip"]] + [skips[f"skip{j}"] for j in reversed(range(len(skips) - 1))]))
      for i in range(4)],
    Layer("vae.decoder.mid", "vae", "decoder.mid_block.",
          lambda c: {"x": (1, c.vae.block_out_channels[-1], c.vae.sample_size // c.vae_scale,
                           c.vae.sample_size // c.vae_scale)},
          lambda m, plan, x: m._mid(x, "decoder.mid_block")),
    Layer("vae.decoder.up0.resnet0", "vae", "decoder.up_blocks.0.resnets.0.",
          lambda c: {"x": (1, c.vae.block_out_channels[-1], c.vae.sample_size // c.vae_scale,
                           c.vae.sample_size // c.vae_scale)},
          lambda m, plan, x: m._resnet(x, "decoder.up_blocks.0.resnets.0")),
    *[Layer(f"vae.decoder.up_blocks.{i}", "vae", f"decoder.up_blocks.{i}.", lambda c, i=i: _vae_up_inputs(c, i),
            lambda m, plan, x, i=i: m._up_block(x, i))
      for i in range(4)],
]


def _down_inputs(c, i: int) -> dict:
    """down_blocks.i: the previous block's output (conv_in's for i = 0) at latent / 2^i, temb, text context."""
    plan, s = _plan(c.unet), _latent(c) // 2 ** i
    return {"x": (BATCH, plan["down"][i]["resnets"][0][0], s, s), "temb": (BATCH, 4 * _unet_c(c)),
            "ctx": (BATCH, CONTEXT, c.unet.cross_attention_dim)}


def _up_inputs(c, i: int) -> dict:
    """up_blocks.i: the previous block's output (the mid block's for i = 0), the skips its resnets concatenate
    (resnet j's: its input channels less those of x), and next_skip, whose h, w the upsampler resizes to (only its
    shape is read; one channel)."""
    plan, n = _plan(c.unet), len(c.unet.block_out_channels)
    s = _latent(c) // 2 ** (n - 1 - i)
    x_ch = plan["up"][i - 1]["ch"] if i else plan["mid"]["ch"]
    out = {"x": (BATCH, x_ch, s, s), "temb": (BATCH, 4 * _unet_c(c)),
           "ctx": (BATCH, CONTEXT, c.unet.cross_attention_dim)}
    for j, (cin, _) in enumerate(plan["up"][i]["resnets"]):
        out[f"skip{j}"] = (BATCH, cin - (x_ch if j == 0 else plan["up"][i]["ch"]), s, s)
    out["next_skip"] = (BATCH, 1, 2 * s, 2 * s)
    return out


def _vae_up_inputs(c, i: int) -> dict:
    """decoder.up_blocks.i: the previous block's output (the mid block's for i = 0), at latent * 2^i."""
    rev, s = c.vae.block_out_channels[::-1], c.vae.sample_size // c.vae_scale * 2 ** i
    return {"x": (1, rev[i - 1] if i else rev[0], s, s)}

MODELS = {"text": (TextEncoder, text_shapes, "text_encoder"), "unet": (UNet, unet_shapes, "unet"),
          "vae": (VAE, vae_shapes, "vae")}
CONFIGS = [("tiny-sd1", False), ("tiny-sd2", False), ("sd15", True), ("sd21-base", True)]


def layer_weights(cfg, layer: Layer, seed: int = 0) -> dict:
    """Real random weights under layer.prefix, zero-stride stand-ins elsewhere."""
    _, shapes_of, part = MODELS[layer.model]
    shapes = shapes_of(getattr(cfg, part))
    return {k: random_tensor(k, tuple(s), seed) if k.startswith(layer.prefix)
            else np.broadcast_to(np.float32(0), tuple(s)) for k, s in shapes.items()}


def has_block(config: str, layer: Layer) -> bool:
    """Whether the config's model has the layer (the tiny models have fewer blocks)."""
    _, shapes_of, part = MODELS[layer.model]
    return any(k.startswith(layer.prefix) for k in shapes_of(getattr(get_config(config), part)))
