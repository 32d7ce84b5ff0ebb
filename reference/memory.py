"""How much memory a pipeline run needs at least, from its configuration and image size alone: the weights, and the
largest activation tensors the models cannot do without. A lower bound (the kernels' scratch, attention scores and
other intermediates come on top, and depend on the variants chosen), used to refuse, before anything is built or
allocated, a run that no device or host can hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdcl.reference import text_encoder, unet, vae
from sdcl.reference.configs import SDConfig


@dataclass(frozen=True)
class Footprint:
    weights: int        # bytes of the three models' weights
    largest: int        # bytes of the largest single activation (one buffer)
    peak: int           # bytes held at least at once: the weights, and a layer's input and output at the largest

    def describe(self) -> str:
        return (f"at least {_gib(self.peak)} ({_gib(self.weights)} of weights, a largest activation of "
                f"{_gib(self.largest)})")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def weight_bytes(config: SDConfig, itemsize: int = 4) -> int:
    shapes = {**text_encoder.param_shapes(config.text_encoder), **unet.param_shapes(config.unet),
              **vae.param_shapes(config.vae)}
    return sum(math.prod(s) for s in shapes.values()) * itemsize


def largest_activation(config: SDConfig, height: int, width: int) -> int:
    """Elements of the largest activation tensor of a UNet step (batch 2, classifier-free guidance) and of the VAE
    decode (batch 1) at this image size."""
    s = config.vae_scale
    h, w = height // s, width // s
    plan = unet._plan(config.unet)
    unet_max = max(2 * cin * (h >> i) * (w >> i) for i, blk in enumerate(plan["down"])
                   for cin, _ in blk["resnets"])
    unet_max = max(unet_max, max(2 * cin * (h >> (len(plan["up"]) - 1 - i)) * (w >> (len(plan["up"]) - 1 - i))
                                 for i, blk in enumerate(plan["up"]) for cin, _ in blk["resnets"]))
    channels = list(config.vae.block_out_channels)[::-1]           # the decoder's up blocks, deepest first
    vae_max = 0
    for i, c in enumerate(channels):
        rh, rw = h << i, w << i
        cin = channels[i - 1] if i else channels[0]
        vae_max = max(vae_max, max(c, cin) * rh * rw)               # the block's input and its resnets
        if i < len(channels) - 1:
            vae_max = max(vae_max, c * 4 * rh * rw)                 # its upsampler's output, twice the size
    return max(unet_max, vae_max, 3 * height * width)


def footprint(config: SDConfig, height: int, width: int, itemsize: int = 4) -> Footprint:
    weights = weight_bytes(config, itemsize)
    largest = largest_activation(config, height, width) * itemsize
    return Footprint(weights, largest, weights + 2 * largest)
