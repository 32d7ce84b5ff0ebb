"""A single-file LDM checkpoint's config, inferred from its tensor shapes: `ldm_config`.

The shapes fix the channel counts (block_out_channels, in / out / latent channels, cross_attention_dim, the text
encoder's width, feed-forward size, vocabulary and context length), the number of blocks and of layers per block,
which UNet blocks have attention, SD 1.x's 1x1-convolution or SD 2.x's linear proj_in, and the text encoder's layout
(OpenAI CLIP or OpenCLIP). What they cannot fix comes from LDM's code, which has one value, or from the family's
defaults, and a note says which:

  LDM's code    GroupNorm of 32 groups (eps 1e-5 in the UNet, 1e-6 in the VAE), cos-first timestep sinusoids, no
                frequency shift;
  the family    the UNet's heads: SD 1.x (1x1-conv proj_in) 8 per block, SD 2.x (linear proj_in) one per 64
                channels; the text encoder's 64-channel heads and activation (CLIP ViT-L quick_gelu, OpenCLIP ViT-H
                gelu), its pad token, the number of OpenCLIP blocks that run (SD 2.x: all but the last, the
                penultimate layer's output); the VAE's scaling_factor 0.18215; the image size 512; SD's training
                schedule with epsilon prediction (an SD 2.x 768-v file predicts v: no LDM file records that).

A file written by sdcl (save_ldm_checkpoint) stores only the OpenCLIP blocks that run and says how many in its
metadata (OPEN_CLIP_LAYERS_KEY).
"""

from __future__ import annotations

from sdcl.checkpoint.ldm import ldm_component
from sdcl.reference import text_encoder, unet, vae
from sdcl.reference.configs import SchedulerConfig, SDConfig, TextEncoderConfig, UNetConfig, VAEConfig
from sdcl.reference.validation import CheckpointError

OPEN_CLIP_LAYERS_KEY = "sdcl.open_clip_layers_run"

_UNET, _VAE = "model.diffusion_model.", "first_stage_model."
_CLIP, _OPEN_CLIP = "cond_stage_model.transformer.text_model.", "cond_stage_model.model."
_PREFIXES = {"unet": _UNET, "vae": _VAE, "text_encoder": "cond_stage_model."}
_PARAM_SHAPES = {"unet": unet.param_shapes, "vae": vae.param_shapes, "text_encoder": text_encoder.param_shapes}
LDM_GROUPS = 32          # ldm's normalization(): GroupNorm32(32, channels)
SD1_HEADS = 8            # v1-inference.yaml: num_heads 8
HEAD_CHANNELS = 64       # v2-inference.yaml: num_head_channels 64; CLIP ViT-L/14 and OpenCLIP ViT-H/14 text: 64
IMAGE_SIZE = 512         # v1 and v2 (512-base) inference yamls: image_size 64 latents
_NAME_IT = "name the built-in config it was made for (sdcl generate --model NAME)"


class _Shapes:
    """The file's {key: shape}, with lookups that name what inference needed and did not find."""

    def __init__(self, path: str, shapes: dict):
        self.path, self.shapes = path, shapes

    def has(self, key: str) -> bool:
        return key in self.shapes

    def need(self, key: str, ndim: int) -> tuple:
        shape = self.shapes.get(key)
        if shape is None or len(shape) != ndim:
            got = "no such tensor" if shape is None else f"shape {tuple(shape)}"
            self.cannot(f"{key} should be a {ndim}-D tensor ({got})")
        return tuple(shape)

    def count(self, pattern: str) -> int:
        """How many consecutive indices i from 0 have a key matching pattern.format(i=i) as a prefix."""
        i = 0
        while any(k.startswith(pattern.format(i=i)) for k in self.shapes):
            i += 1
        return i

    def refuse(self, what: str, why: str):
        raise CheckpointError(f"{self.path}: {what} is not supported: {why}")

    def cannot(self, why: str):
        raise CheckpointError(f"{self.path}: cannot infer the config from the tensor shapes: {why}", hint=_NAME_IT)


def _unet(s: _Shapes) -> tuple:
    P = _UNET
    c0, cin = s.need(P + "input_blocks.0.0.weight", 4)[:2]
    levels, i = [[]], 1
    while any(k.startswith(f"{P}input_blocks.{i}.") for k in s.shapes):
        if s.has(f"{P}input_blocks.{i}.0.op.weight"):
            levels.append([])
        else:
            cout = s.need(f"{P}input_blocks.{i}.0.in_layers.2.weight", 4)[0]
            levels[-1].append((cout, s.has(f"{P}input_blocks.{i}.1.proj_in.weight")))
        i += 1
    layers = {len(lv) for lv in levels}
    if 0 in layers:
        s.cannot(f"a UNet level without resnets (input_blocks up to {i - 1})")
    if len(layers) != 1:
        s.refuse(f"a UNet with {[len(lv) for lv in levels]} resnets per level", "sdcl's UNet has the same number in "
                 "every level")
    boc = []
    for b, lv in enumerate(levels):
        if len({c for c, _ in lv}) != 1 or len({a for _, a in lv}) != 1:
            s.refuse(f"UNet level {b} mixing channel counts or attention", "SD's levels are uniform")
        boc.append(lv[0][0])
    n, L = len(boc), layers.pop()
    down = tuple("CrossAttnDownBlock2D" if lv[0][1] else "DownBlock2D" for lv in levels)
    up = tuple("CrossAttnUpBlock2D" if s.has(f"{P}output_blocks.{b * (L + 1)}.1.proj_in.weight") else "UpBlock2D"
               for b in range(n))
    if any(".transformer_blocks.1." in k for k in s.shapes if k.startswith(P)):
        s.refuse("a UNet with 2 or more transformer blocks per attention", "SD has one")
    temb = s.need(P + "time_embed.0.weight", 2)[0]
    if temb != 4 * c0:
        s.refuse(f"a UNet time embedding of {temb} channels", f"SD's has 4 x {c0}")
    proj_in = P + "middle_block.1.proj_in.weight"
    linear = len(s.shapes.get(proj_in, ())) == 2     # SD 2.x: linear (C, C); SD 1.x: 1x1 conv (C, C, 1, 1)
    if not linear:
        s.need(proj_in, 4)
    cross = s.need(P + "middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2)[1]
    out = s.need(P + "out.2.weight", 4)[0]
    with_attention = [c for c, t in zip(boc, down) if t.startswith("CrossAttn")] + [boc[-1]]
    if linear:
        if any(c % HEAD_CHANNELS for c in with_attention):
            s.cannot(f"the UNet's heads: SD 2.x's have {HEAD_CHANNELS} channels, which do not divide "
                     f"block_out_channels {list(boc)}")
        heads = tuple(c // HEAD_CHANNELS for c in boc)
        note = f"unet heads {list(heads)}: SD 2.x's {HEAD_CHANNELS}-channel heads (its proj_in is linear)"
    else:
        if any(c % SD1_HEADS for c in with_attention):
            s.cannot(f"the UNet's heads: SD 1.x's {SD1_HEADS} do not divide block_out_channels {list(boc)}")
        heads = SD1_HEADS
        note = f"unet heads {SD1_HEADS} per block: SD 1.x's (its proj_in is a 1x1 convolution)"
    cfg = UNetConfig(in_channels=cin, out_channels=out, block_out_channels=tuple(boc), down_block_types=down,
                     up_block_types=up, layers_per_block=L, num_heads=heads, cross_attention_dim=cross,
                     use_linear_projection=linear, norm_num_groups=LDM_GROUPS, norm_eps=1e-5, flip_sin_to_cos=True,
                     freq_shift=0, sample_size=IMAGE_SIZE // 8)
    return cfg, note


def _vae(s: _Shapes) -> tuple:
    P = _VAE
    cin = s.need(P + "encoder.conv_in.weight", 4)[1]
    n = s.count(P + "encoder.down.{i}.block.0.")
    if n == 0:
        s.need(P + "encoder.down.0.block.0.conv1.weight", 4)
    counts = [s.count(f"{P}encoder.down.{i}.block.{{i}}.") for i in range(n)]
    if len(set(counts)) != 1:
        s.refuse(f"a VAE with {counts} resnets per level", "sdcl's VAE has the same number in every level")
    boc = tuple(s.need(f"{P}encoder.down.{i}.block.0.conv1.weight", 4)[0] for i in range(n))
    z = s.need(P + "decoder.conv_in.weight", 4)[1]
    out = s.need(P + "decoder.conv_out.weight", 4)[0]
    cfg = VAEConfig(in_channels=cin, out_channels=out, latent_channels=z, block_out_channels=boc,
                    layers_per_block=counts[0], norm_num_groups=LDM_GROUPS, scaling_factor=0.18215,
                    sample_size=IMAGE_SIZE)
    return cfg, f"vae scaling_factor {cfg.scaling_factor}: SD's"


def _text(s: _Shapes, metadata: dict) -> tuple:
    if any(k.startswith(_OPEN_CLIP) for k in s.shapes):
        P = _OPEN_CLIP
        vocab, d = s.need(P + "token_embedding.weight", 2)
        positions = s.need(P + "positional_embedding", 2)[0]
        blocks = s.count(P + "transformer.resblocks.{i}.")
        ff = s.need(P + "transformer.resblocks.0.mlp.c_fc.weight", 2)[0]
        stated = metadata.get(OPEN_CLIP_LAYERS_KEY)
        if stated is not None and stated.isdigit() and 0 < int(stated) <= blocks:
            layers, run = int(stated), f"{stated} OpenCLIP blocks run (the file's sdcl metadata says so)"
        elif blocks >= 2:
            layers, run = blocks - 1, (f"{blocks - 1} of the file's {blocks} OpenCLIP blocks run: SD 2.x's "
                                       "penultimate layer")
        else:
            s.refuse(f"an OpenCLIP text encoder of {blocks} block(s)", "SD 2.x runs all but the last of 2 or more")
        act, pad, family = "gelu", 0, "OpenCLIP ViT-H's, SD 2.x"
    else:
        P = _CLIP
        vocab, d = s.need(P + "embeddings.token_embedding.weight", 2)
        positions = s.need(P + "embeddings.position_embedding.weight", 2)[0]
        layers = s.count(P + "encoder.layers.{i}.")
        ff = s.need(P + "encoder.layers.0.mlp.fc1.weight", 2)[0]
        act, pad, family, run = "quick_gelu", 49407, "OpenAI CLIP ViT-L's, SD 1.x", ""
    if d % HEAD_CHANNELS:
        s.cannot(f"the text encoder's heads: CLIP's have {HEAD_CHANNELS} channels, which do not divide its width {d}")
    if vocab != TextEncoderConfig.vocab_size:
        s.refuse(f"a text encoder of {vocab} tokens", f"sdcl's tokenizer is CLIP's BPE, "
                 f"{TextEncoderConfig.vocab_size} tokens")
    cfg = TextEncoderConfig(vocab_size=vocab, hidden_size=d, intermediate_size=ff, num_hidden_layers=layers,
                            num_attention_heads=d // HEAD_CHANNELS, max_position_embeddings=positions,
                            hidden_act=act, layer_norm_eps=1e-5, pad_token_id=pad)
    note = (f"text encoder heads {d // HEAD_CHANNELS} ({HEAD_CHANNELS} channels each), {act}, pad token id {pad}: "
            f"{family}")
    return cfg, note + (f"; {run}" if run else "")


def present_components(shapes: dict) -> list:
    """The components an LDM file holds keys of."""
    found = {ldm_component(k) for k in shapes}
    return [c for c in ("unet", "vae", "text_encoder") if c in found]


def ldm_config(path: str, shapes: dict, metadata: dict, components, name: str) -> tuple:
    """(SDConfig, notes) for `components` of the LDM file whose {key: shape} is `shapes`; parts not asked for are
    None. A component the file lacks, or shapes that fix no config sdcl can run, are a CheckpointError."""
    s = _Shapes(path, shapes)
    absent = [c for c in components if c not in present_components(shapes)]
    if absent:
        prefixes = ", ".join(f"{_PREFIXES[c]}*" for c in absent)
        none = not present_components(shapes)
        raise CheckpointError(f"{path}: the file holds no {' or '.join(absent)} (no {prefixes} keys)",
                              hint="a diffusers component file is read by passing its folder's parent" if none
                              else None)
    parts, notes = {"unet": None, "vae": None, "text_encoder": None}, []
    for comp, infer in (("unet", _unet), ("vae", _vae), ("text_encoder", lambda s: _text(s, metadata))):
        if comp in components:
            parts[comp], note = infer(s)
            notes.append(note)
    notes.append(f"GroupNorm of {LDM_GROUPS} groups, cos-first timestep sinusoids: LDM's code; image size "
                 f"{IMAGE_SIZE} and SD's training schedule, epsilon prediction (an SD 2.x 768-v file predicts v, "
                 "which no LDM file records: convert it to a diffusers folder)")
    for comp, part in parts.items():
        if part is not None:
            try:
                _PARAM_SHAPES[comp](part)
            except ValueError as e:
                s.cannot(f"LDM's values give no {comp} sdcl can build: {e}")
    return SDConfig(name=name, scheduler=SchedulerConfig(), **parts), notes
