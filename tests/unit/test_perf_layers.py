"""The layer benchmarks feed each block the shapes it gets in a real forward pass (sdcl.perf.layers builds
them from the config's plan; here they are recorded from the reference models' own forward, tiny configs, NumPy)."""

from __future__ import annotations

import numpy as np
import pytest

from sdcl.reference.configs import get_config
from sdcl.reference.unet import UNet
from sdcl.reference.unet import init_weights as unet_weights
from sdcl.reference.vae import VAE
from sdcl.reference.vae import init_weights as vae_weights

from sdcl.perf import layers


def _shape(a) -> tuple:
    return tuple(a.shape)


@pytest.mark.parametrize("model", ["tiny-sd1", "tiny-sd2"])
def test_unet_block_inputs_are_those_of_a_forward_pass(model, monkeypatch):
    cfg = get_config(model)
    seen = {}
    down, up = UNet._down_block, UNet._up_block

    def rec_down(self, i, x, temb, ctx, skips):
        seen[f"unet.down_blocks.{i}"] = {"x": _shape(x), "temb": _shape(temb), "ctx": _shape(ctx)}
        return down(self, i, x, temb, ctx, skips)

    def rec_up(self, i, x, temb, ctx, skips):
        n = len(self.plan["up"][i]["resnets"])
        got = {"x": _shape(x), "temb": _shape(temb), "ctx": _shape(ctx)}
        got.update({f"skip{j}": _shape(skips[-1 - j]) for j in range(n)})    # popped last first
        if self.plan["up"][i]["sample"]:
            got["next_skip_hw"] = _shape(skips[-1 - n])[2:]
        seen[f"unet.up_blocks.{i}"] = got
        return up(self, i, x, temb, ctx, skips)
    monkeypatch.setattr(UNet, "_down_block", rec_down)
    monkeypatch.setattr(UNet, "_up_block", rec_up)

    s, rng = cfg.unet.sample_size, np.random.default_rng(0)
    unet = UNet(cfg.unet, unet_weights(cfg.unet, seed=0))
    unet(rng.standard_normal((layers.BATCH, cfg.unet.in_channels, s, s)).astype(np.float32), 999,
         rng.standard_normal((layers.BATCH, layers.CONTEXT, cfg.unet.cross_attention_dim)).astype(np.float32))

    names = [layer.name for layer in layers.LAYERS if layer.name.startswith(("unet.down_blocks", "unet.up_blocks"))]
    checked = [n for n in names if n in seen]
    assert sorted(checked) == sorted(seen)      # every block of the model is benchmarked
    for layer in layers.LAYERS:
        if layer.name not in seen:
            continue
        want = layer.inputs(cfg)
        if "next_skip" in want:
            hw = want.pop("next_skip")[2:]
            assert seen[layer.name].pop("next_skip_hw", hw) == hw, layer.name
        assert want == seen[layer.name], layer.name


@pytest.mark.parametrize("model", ["tiny-sd1", "tiny-sd2"])
def test_vae_block_inputs_are_those_of_a_forward_pass(model, monkeypatch):
    cfg = get_config(model)
    seen = {}
    up = VAE._up_block

    def rec_up(self, x, i):
        seen[f"vae.decoder.up_blocks.{i}"] = {"x": _shape(x)}
        return up(self, x, i)
    monkeypatch.setattr(VAE, "_up_block", rec_up)
    s = cfg.vae.sample_size // cfg.vae_scale
    VAE(cfg.vae, vae_weights(cfg.vae, seed=0)).decode(
        np.random.default_rng(0).standard_normal((1, cfg.vae.latent_channels, s, s)).astype(np.float32))
    blocks = {layer.name: layer for layer in layers.LAYERS if layer.name.startswith("vae.decoder.up_blocks")}
    assert set(seen) <= set(blocks) and len(seen) == len(cfg.vae.block_out_channels)
    for name, got in seen.items():
        assert blocks[name].inputs(cfg) == got, name
