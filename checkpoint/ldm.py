"""The single-file LDM checkpoint's tensor names, mapped to the in-memory (diffusers) names.

The layout of CompVis / Stability's `v1-5-pruned-emaonly.safetensors` and `v2-1_512-ema-pruned.safetensors`:
`model.diffusion_model.*` (UNet: `time_embed`, `input_blocks`, `middle_block`, `output_blocks`, `out`),
`first_stage_model.*` (VAE: `encoder.down.{i}.block.{j}`, `mid.block_1/attn_1/block_2`, `decoder.up.{i}` numbered
by resolution, i.e. in the reverse of diffusers' `up_blocks` order, and the VAE attention's q/k/v/proj_out as
1x1 convolutions), `cond_stage_model.*` (SD 1.x: `cond_stage_model.transformer.text_model.*`, the transformers
names; SD 2.x: OpenCLIP's `cond_stage_model.model.*`, whose `attn.in_proj_weight` stacks q, k and v).

`ldm_table(config)` spells the mapping out tensor by tensor; it is derived from the block structure the config
describes (`_unet_modules`, `_vae_modules`, `_text_modules`), module by module, and checked to cover every key
of `param_shapes` exactly once. Which text-encoder layout a config has follows from its activation: OpenAI's
CLIP ViT-L (SD 1.x) uses quick_gelu, OpenCLIP's ViT-H (SD 2.x) exact gelu.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdcl.checkpoint.expected import COMPONENTS, expected_shapes, is_ignored
from sdcl.checkpoint.safetensors_io import is_float_code
from sdcl.reference.configs import SDConfig
from sdcl.reference.validation import CheckpointError, Problems, find_problems


@dataclass(frozen=True)
class _Module:
    """One module in both namings. `renames` maps the module's sub-path in our naming ('' for the module's own
    parameters) to a template of the LDM sub-name, formatted with {param} (weight / bias); a (template, i) pair
    makes the tensor part i of an LDM tensor stacked along axis 0. renames=None: same names below the module.
    conv1x1: the LDM module is a 1x1 convolution where ours is a linear layer (its 2-D weights gain a 1x1)."""
    ours: str
    ldm: str
    renames: dict | None = None
    conv1x1: bool = False


_UNET_RESNET = {"norm1": "in_layers.0.{param}", "conv1": "in_layers.2.{param}",
                "time_emb_proj": "emb_layers.1.{param}", "norm2": "out_layers.0.{param}",
                "conv2": "out_layers.3.{param}", "conv_shortcut": "skip_connection.{param}"}
_VAE_RESNET = {"norm1": "norm1.{param}", "conv1": "conv1.{param}", "norm2": "norm2.{param}",
               "conv2": "conv2.{param}", "conv_shortcut": "nin_shortcut.{param}"}
_VAE_ATTENTION = {"group_norm": "norm.{param}", "to_q": "q.{param}", "to_k": "k.{param}", "to_v": "v.{param}",
                  "to_out.0": "proj_out.{param}"}
_OPEN_CLIP_TOP = {"embeddings.token_embedding": "token_embedding.{param}",
                  "embeddings.position_embedding": "positional_embedding",  # a bare parameter, no .weight
                  "final_layer_norm": "ln_final.{param}"}
_OPEN_CLIP_BLOCK = {"layer_norm1": "ln_1.{param}", "layer_norm2": "ln_2.{param}",
                    "self_attn.q_proj": ("attn.in_proj_{param}", 0),
                    "self_attn.k_proj": ("attn.in_proj_{param}", 1),
                    "self_attn.v_proj": ("attn.in_proj_{param}", 2),
                    "self_attn.out_proj": "attn.out_proj.{param}",
                    "mlp.fc1": "mlp.c_fc.{param}", "mlp.fc2": "mlp.c_proj.{param}"}

_LDM_PREFIXES = {"model.diffusion_model.": "unet", "first_stage_model.": "vae", "cond_stage_model.": "text_encoder"}


def _has_attention(block_type: str) -> bool:
    if block_type not in ("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"):
        raise CheckpointError(f"no LDM layout known for UNet block type {block_type!r}")
    return block_type.startswith("CrossAttn")


def _unet_modules(config: SDConfig) -> list:
    """The UNet of ldm's openaimodel.py: input_blocks.0 is conv_in; then, per level, one input block per
    resnet (index .0, with its transformer at .1) and one for the downsampler (.0.op) but after the last level;
    middle_block is resnet, transformer, resnet; output_blocks mirror the levels with one more resnet each, the
    upsampler riding on a level's last output block (at .1, or .2 after a transformer)."""
    u, P = config.unet, "model.diffusion_model."
    L, n = u.layers_per_block, len(u.block_out_channels)
    mods = [_Module("time_embedding.linear_1", P + "time_embed.0"),
            _Module("time_embedding.linear_2", P + "time_embed.2"),
            _Module("conv_in", P + "input_blocks.0.0")]
    i = 1
    for b, block_type in enumerate(u.down_block_types):
        for j in range(L):
            mods.append(_Module(f"down_blocks.{b}.resnets.{j}", f"{P}input_blocks.{i}.0", _UNET_RESNET))
            if _has_attention(block_type):
                mods.append(_Module(f"down_blocks.{b}.attentions.{j}", f"{P}input_blocks.{i}.1"))
            i += 1
        if b < n - 1:
            mods.append(_Module(f"down_blocks.{b}.downsamplers.0.conv", f"{P}input_blocks.{i}.0.op"))
            i += 1
    mods += [_Module("mid_block.resnets.0", P + "middle_block.0", _UNET_RESNET),
             _Module("mid_block.attentions.0", P + "middle_block.1"),
             _Module("mid_block.resnets.1", P + "middle_block.2", _UNET_RESNET)]
    o = 0
    for b, block_type in enumerate(u.up_block_types):
        attention = _has_attention(block_type)
        for j in range(L + 1):
            mods.append(_Module(f"up_blocks.{b}.resnets.{j}", f"{P}output_blocks.{o}.0", _UNET_RESNET))
            if attention:
                mods.append(_Module(f"up_blocks.{b}.attentions.{j}", f"{P}output_blocks.{o}.1"))
            if j == L and b < n - 1:
                mods.append(_Module(f"up_blocks.{b}.upsamplers.0.conv",
                                    f"{P}output_blocks.{o}.{2 if attention else 1}.conv"))
            o += 1
    mods += [_Module("conv_norm_out", P + "out.0"), _Module("conv_out", P + "out.2")]
    return mods


def _vae_modules(config: SDConfig) -> list:
    """ldm's AutoencoderKL: encoder.down.{level}.block.{j} / .downsample, mid.block_1 / attn_1 / block_2,
    norm_out; the decoder's up.{level} are numbered by resolution like the encoder's, so diffusers' up_blocks.{k}
    (numbered in execution order, lowest resolution first) is up.{n - 1 - k}."""
    v, P = config.vae, "first_stage_model."
    L, n = v.layers_per_block, len(v.block_out_channels)
    mods = [_Module("quant_conv", P + "quant_conv"), _Module("post_quant_conv", P + "post_quant_conv")]
    for side in ("encoder", "decoder"):
        mods += [_Module(f"{side}.conv_in", f"{P}{side}.conv_in"),
                 _Module(f"{side}.mid_block.resnets.0", f"{P}{side}.mid.block_1", _VAE_RESNET),
                 _Module(f"{side}.mid_block.attentions.0", f"{P}{side}.mid.attn_1", _VAE_ATTENTION, conv1x1=True),
                 _Module(f"{side}.mid_block.resnets.1", f"{P}{side}.mid.block_2", _VAE_RESNET),
                 _Module(f"{side}.conv_norm_out", f"{P}{side}.norm_out"),
                 _Module(f"{side}.conv_out", f"{P}{side}.conv_out")]
    for level in range(n):
        for j in range(L):
            mods.append(_Module(f"encoder.down_blocks.{level}.resnets.{j}", f"{P}encoder.down.{level}.block.{j}",
                                _VAE_RESNET))
        if level < n - 1:
            mods.append(_Module(f"encoder.down_blocks.{level}.downsamplers.0.conv",
                                f"{P}encoder.down.{level}.downsample.conv"))
    for k in range(n):
        level = n - 1 - k
        for j in range(L + 1):
            mods.append(_Module(f"decoder.up_blocks.{k}.resnets.{j}", f"{P}decoder.up.{level}.block.{j}",
                                _VAE_RESNET))
        if k < n - 1:
            mods.append(_Module(f"decoder.up_blocks.{k}.upsamplers.0.conv", f"{P}decoder.up.{level}.upsample.conv"))
    return mods


def text_layout(config: SDConfig) -> str:
    """'clip' (SD 1.x: OpenAI CLIP, stored under transformers' names) or 'open_clip' (SD 2.x: OpenCLIP ViT-H),
    told apart by the activation, the one architectural difference the config records."""
    return "open_clip" if config.text_encoder.hidden_act == "gelu" else "clip"


def _text_modules(config: SDConfig) -> list:
    """SD 1.x keeps the transformers names under cond_stage_model.transformer.; SD 2.x stores OpenCLIP's own
    module tree, transformer.resblocks.{i} with q, k and v stacked in attn.in_proj_weight / in_proj_bias."""
    if text_layout(config) == "clip":
        return [_Module("text_model", "cond_stage_model.transformer.text_model")]
    mods = [_Module("text_model", "cond_stage_model.model", _OPEN_CLIP_TOP)]
    for i in range(config.text_encoder.num_hidden_layers):
        mods.append(_Module(f"text_model.encoder.layers.{i}", f"cond_stage_model.model.transformer.resblocks.{i}",
                            _OPEN_CLIP_BLOCK))
    return mods


_MODULES = {"unet": _unet_modules, "vae": _vae_modules, "text_encoder": _text_modules}


def _ldm_name(key: str, modules: dict):
    """Our key -> (LDM key, part index, conv1x1) through the longest module prefix that owns it; None if none."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        m = modules.get(".".join(parts[:cut]))
        if m is not None:
            break
    else:
        return None
    sub, param = ".".join(parts[cut:-1]), parts[-1]
    if m.renames is None:
        return f"{m.ldm}.{'.'.join(parts[cut:])}", 0, m.conv1x1
    rule = m.renames.get(sub)
    if rule is None:
        return None
    template, part = rule if isinstance(rule, tuple) else (rule, 0)
    return f"{m.ldm}.{template.format(param=param)}", part, m.conv1x1


@dataclass(frozen=True)
class LdmTensor:
    """One tensor of the single-file checkpoint: its name and shape there, and the in-memory arrays it holds:
    `parts` (keys of `component`, with `part_shapes`) concatenated along axis 0 and reshaped to `shape`. The
    reshape only ever appends the 1x1 of a convolution kernel; more than one part only occurs for OpenCLIP's
    stacked q/k/v projection."""
    key: str
    shape: tuple
    component: str
    parts: tuple
    part_shapes: tuple


def ldm_table(config: SDConfig, components=COMPONENTS) -> dict:
    """{LDM key: LdmTensor} for every tensor the single-file checkpoint of `config` holds, built from the models'
    param_shapes and the module correspondence above; every model key is placed exactly once."""
    expected = expected_shapes(config, components)
    table = {}
    for comp in components:
        modules = {m.ours: m for m in _MODULES[comp](config)}
        groups, conv = {}, {}
        for key in expected[comp]:
            named = _ldm_name(key, modules)
            if named is None:
                raise CheckpointError(f"no LDM name for {comp} weight {key!r}: the module map in "
                                      "checkpoint/ldm.py does not cover what param_shapes declares")
            ldm_key, part, conv[ldm_key] = named
            slot = groups.setdefault(ldm_key, {})
            if part in slot:
                raise CheckpointError(f"{comp} weights {slot[part]!r} and {key!r} both map to {ldm_key!r}")
            slot[part] = key
        for ldm_key, slot in groups.items():
            if sorted(slot) != list(range(len(slot))):
                raise CheckpointError(f"{ldm_key!r} is assembled from an incomplete set of parts {slot}")
            keys = tuple(slot[i] for i in range(len(slot)))
            shapes = tuple(expected[comp][k] for k in keys)
            if len(keys) > 1 and (any(len(s) == 0 for s in shapes) or len({s[1:] for s in shapes}) != 1):
                raise CheckpointError(f"cannot stack {keys} of shapes {shapes} into {ldm_key!r}")
            shape = (sum(s[0] for s in shapes),) + shapes[0][1:] if len(keys) > 1 else shapes[0]
            if conv[ldm_key] and len(shape) == 2:
                shape = shape + (1, 1)
            table[ldm_key] = LdmTensor(ldm_key, shape, comp, keys, shapes)
    return table


def ldm_component(key: str):
    """The component an LDM key belongs to, by its prefix; None for a key outside the three."""
    for prefix, comp in _LDM_PREFIXES.items():
        if key.startswith(prefix):
            return comp
    return None


def ldm_problems(shapes: dict, dtypes: dict, config: SDConfig, components=COMPONENTS, table=None) -> Problems:
    """What is wrong with an LDM file's tensors ({key: shape}, {key: safetensors dtype name}) for the
    `components` of `config`; keys of other components and IGNORED_KEYS are not reported."""
    table = ldm_table(config, components) if table is None else table

    def ignore(key):
        comp = ldm_component(key)
        return is_ignored(key, "ldm", config) or (comp is not None and comp not in components)

    return find_problems({k: e.shape for k, e in table.items()}, shapes, dtypes, ignore, is_float_code)
