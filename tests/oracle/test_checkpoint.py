"""sdcl.checkpoint (checkpoint/): safetensors weights in the single-file LDM layout and the diffusers folder layout.

Oracles are independent of the code under test:
- the LDM name mapping is checked against diffusers' own single-file loader: `UNet2DConditionModel.from_single_file`
  and `AutoencoderKL.from_single_file` (offline: `config=` a local folder whose config.json files the test
  writes from diffusers models built from the config numbers, `local_files_only=True`), and for the text
  encoder diffusers' `create_diffusers_clip_model_from_ldm`, which is what `StableDiffusionPipeline.from_single_file`
  runs for CLIP (SD 1.x) and OpenCLIP (SD 2.x) checkpoints. Everything works offline; nothing is skipped.
- at full size (SD 1.5, SD 2.1-base) without materialising weights: every LDM tensor is a zero-stride torch view
  whose values encode (tensor id, row), diffusers' conversion functions (`convert_ldm_unet_checkpoint`,
  `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`) run on them, and
  their output must name exactly the parameters of the diffusers / transformers models (built on the meta
  device), with the shapes, source tensors and rows our table states;
- diffusers folders: `save_pretrained` output of diffusers / transformers models must load to their state_dicts,
  and our folders must load into diffusers / transformers with no missing or unexpected key;
- files written by the safetensors library (not by us) feed the round trips and error tests.
"""

from __future__ import annotations

import json
import os
import shutil
import types
import warnings

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file
from transformers import CLIPTextConfig, CLIPTextModel

from sdcl import checkpoint as ck
from sdcl.checkpoint import CheckpointError
from sdcl.conformance.oracles import clip_text_config, unet_kwargs, vae_kwargs
from sdcl.reference.configs import SD15, SD21_BASE, TINY_SD1, TINY_SD2
from sdcl.reference.weights import random_weights

TINY = {"tiny-sd1": TINY_SD1, "tiny-sd2": TINY_SD2}


# ------------------------------------------------------------------------------------------------ helpers

def _unet_kwargs(cfg):
    return unet_kwargs(cfg.unet)


def _vae_kwargs(cfg):
    return vae_kwargs(cfg.vae)


def _clip_config(cfg):
    return clip_text_config(cfg.text_encoder, attn_implementation=None)


def _torch_models(cfg, seed=0):
    torch.manual_seed(seed)
    return {"unet": UNet2DConditionModel(**_unet_kwargs(cfg)), "vae": AutoencoderKL(**_vae_kwargs(cfg)),
            "text_encoder": CLIPTextModel(_clip_config(cfg))}


def _state(comp, model):
    """A torch model's state_dict as numpy, under the in-memory names (transformers 5 drops `text_model.`)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    if comp == "text_encoder":
        sd = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in sd.items()}
    return sd


def _weights(cfg, seed=0, dtype=np.float32):
    shapes = ck.expected_shapes(cfg)
    return {c: random_weights(shapes[c], seed=seed + i, dtype=dtype) for i, c in enumerate(ck.COMPONENTS)}


def _assert_same(actual: dict, expected: dict):
    """Same components, same keys, bitwise-equal arrays of the same dtype."""
    assert set(actual) == set(expected)
    for comp in expected:
        assert set(actual[comp]) == set(expected[comp]), (
            comp, sorted(set(actual[comp]) ^ set(expected[comp]))[:5])
        for k, v in expected[comp].items():
            a = actual[comp][k]
            assert a.dtype == v.dtype and a.shape == v.shape, (comp, k, a.dtype, v.dtype, a.shape, v.shape)
            assert a.tobytes() == v.tobytes(), (comp, k)


def _config_folder(cfg, folder):
    """diffusers-format config.json files written by diffusers / transformers themselves (not by sdcl.checkpoint)."""
    m = _torch_models(cfg)
    m["unet"].save_config(os.path.join(folder, "unet"))
    m["vae"].save_config(os.path.join(folder, "vae"))
    _clip_config(cfg).save_pretrained(os.path.join(folder, "text_encoder"))
    return str(folder)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """For each tiny config: its weights and an LDM file written by save_ldm_checkpoint."""
    out = {}
    for name, cfg in TINY.items():
        w = _weights(cfg, seed=10)
        path = tmp_path_factory.mktemp(name) / "model.safetensors"
        ck.save_ldm_checkpoint(w, cfg, path)
        out[name] = (cfg, w, str(path))
    return out


def _rewrite(src, dst, edit):
    """Load an LDM file with the safetensors library, let edit(dict) change it, save it with the library."""
    d = np_load_file(src)
    edit(d)
    np_save_file(d, str(dst))
    return str(dst)


def _raises(path, cfg, **kw) -> str:
    with pytest.raises(CheckpointError) as e:
        ck.load_checkpoint(path, cfg, **kw)
    return str(e.value)


def _error(path, cfg, **kw) -> CheckpointError:
    with pytest.raises(CheckpointError) as e:
        ck.load_checkpoint(path, cfg, **kw)
    return e.value


# ------------------------------------------------------------------------------------------ LDM vs diffusers

@pytest.mark.parametrize("name", TINY)
def test_ldm_file_matches_diffusers_single_file_loader(name, tiny_files, tmp_path):
    cfg, w, path = tiny_files[name]
    cfgdir = _config_folder(cfg, tmp_path / "configs")
    unet = UNet2DConditionModel.from_single_file(path, config=cfgdir, subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_single_file(path, config=cfgdir, subfolder="vae", local_files_only=True)
    text = sfu.create_diffusers_clip_model_from_ldm(CLIPTextModel, torch_load_file(path), config=cfgdir,
                                                    subfolder="text_encoder", local_files_only=True)
    ours = ck.load_checkpoint(path, cfg)
    expected = {"unet": _state("unet", unet), "vae": _state("vae", vae), "text_encoder": _state("text_encoder", text)}
    _assert_same(ours, expected)
    _assert_same(w, expected)


def _symbolic(table):
    """LDM key -> zero-stride float64 torch tensor of the LDM shape whose value is id * 1e5 + row."""
    ids = {k: i + 1 for i, k in enumerate(sorted(table))}
    out = {}
    for key, e in table.items():
        rows = torch.arange(e.shape[0], dtype=torch.float64) + ids[key] * 1e5
        out[key] = rows.reshape((e.shape[0],) + (1,) * (len(e.shape) - 1)).expand(*e.shape)
    return out, ids


def _meta_shapes(cfg):
    with torch.device("meta"):
        m = {"unet": UNet2DConditionModel(**_unet_kwargs(cfg)), "vae": AutoencoderKL(**_vae_kwargs(cfg)),
             "text_encoder": CLIPTextModel(_clip_config(cfg))}
    shapes = {}
    for comp, model in m.items():
        sd = model.state_dict()
        if comp == "text_encoder":
            sd = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in sd.items()}
        shapes[comp] = {k: tuple(v.shape) for k, v in sd.items()}
    return shapes


@pytest.mark.parametrize("cfg", [SD15, SD21_BASE], ids=lambda c: c.name)
def test_full_size_ldm_table_matches_diffusers_conversion(cfg):
    table = ck.ldm_table(cfg)
    ldm, ids = _symbolic(table)
    if cfg is SD21_BASE:
        # what the real v2-1 file carries beyond what runs: OpenCLIP's 24th block and the contrastive head
        n = cfg.text_encoder.num_hidden_layers
        for key in [k for k in table if f"resblocks.{n - 1}." in k]:
            ldm[key.replace(f"resblocks.{n - 1}.", f"resblocks.{n}.")] = ldm[key]
        ldm["cond_stage_model.model.text_projection"] = torch.zeros(1024, 1024, dtype=torch.float64)
    n_levels = len(cfg.vae.block_out_channels)
    vae_config = {"down_block_types": ["DownEncoderBlock2D"] * n_levels,
                  "up_block_types": ["UpDecoderBlock2D"] * n_levels}
    converted = {"unet": sfu.convert_ldm_unet_checkpoint(ldm, {"layers_per_block": cfg.unet.layers_per_block}),
                 "vae": sfu.convert_ldm_vae_checkpoint(ldm, vae_config)}
    if cfg is SD15:
        converted["text_encoder"] = sfu.convert_ldm_clip_checkpoint(ldm)
    else:
        holder = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=cfg.text_encoder.hidden_size))
        converted["text_encoder"] = sfu.convert_open_clip_checkpoint(holder, ldm)
    models = _meta_shapes(cfg)
    source = {}  # (component, our key) -> (LDM key, first row)
    for key, e in table.items():
        row = 0
        for part, shape in zip(e.parts, e.part_shapes):
            source[(e.component, part)] = (key, row)
            row += shape[0]
    for comp in ck.COMPONENTS:
        out = converted[comp]
        assert set(out) == set(models[comp]), (comp, sorted(set(out) ^ set(models[comp]))[:10])
        for k, t in out.items():
            assert tuple(t.shape) == models[comp][k], (comp, k)
            ldm_key, row = source[(comp, k)]
            first_column = t[(slice(None),) + (0,) * (t.ndim - 1)]
            want = ids[ldm_key] * 1e5 + torch.arange(row, row + t.shape[0], dtype=torch.float64)
            assert torch.equal(first_column, want), (comp, k, ldm_key)
    assert len(source) == sum(len(m) for m in models.values())


# Names and shapes of tensors in the real v1-5-pruned-emaonly / v2-1_512-ema-pruned files (as tools that detect
# checkpoint types list them), independent of both our table and diffusers' converter. diffusers' converter
# accepts an upsampler at output_blocks.N.1.conv as well as .2.conv, so only facts like these pin it down.
REAL_LDM_TENSORS = {
    "sd15": {
        "model.diffusion_model.time_embed.0.weight": (1280, 320),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.input_blocks.6.0.op.weight": (640, 640, 3, 3),
        "model.diffusion_model.input_blocks.9.0.op.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.1.proj_out.weight": (1280, 1280, 1, 1),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.encoder.down.0.downsample.conv.weight": (128, 128, 3, 3),
        "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight": (256, 512, 1, 1),
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "first_stage_model.decoder.up.0.block.2.conv2.weight": (128, 128, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc1.weight": (3072, 768),
    },
    "sd21-base": {
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320),
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 1024),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3),
        "cond_stage_model.model.token_embedding.weight": (49408, 1024),
        "cond_stage_model.model.positional_embedding": (77, 1024),
        "cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.weight": (4096, 1024),
        "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight": (3072, 1024),
        "cond_stage_model.model.ln_final.weight": (1024,),
    },
}


@pytest.mark.parametrize("cfg", [SD15, SD21_BASE], ids=lambda c: c.name)
def test_full_size_table_has_the_real_names(cfg):
    table = ck.ldm_table(cfg)
    for key, shape in REAL_LDM_TENSORS[cfg.name].items():
        assert key in table and table[key].shape == shape, (key, table.get(key))


# ---------------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("name", TINY)
def test_ldm_round_trip_is_bitwise(name, tiny_files, tmp_path):
    cfg, w, path = tiny_files[name]
    loaded = ck.load_checkpoint(path, cfg)
    _assert_same(loaded, w)
    again = tmp_path / "again.safetensors"
    ck.save_ldm_checkpoint(loaded, cfg, again)
    assert again.read_bytes() == open(path, "rb").read()


@pytest.mark.parametrize("name", TINY)
def test_foreign_ldm_file_round_trip(name, tiny_files, tmp_path):
    """An LDM file written by the safetensors library, with the extra keys real checkpoints carry: loading and
    saving it again gives back every tensor we use bit for bit, and drops exactly the allow-listed extras."""
    cfg, _, path = tiny_files[name]
    rng = np.random.default_rng(5)
    extras = {"betas": rng.random(1000), "alphas_cumprod": rng.random(1000), "posterior_mean_coef1": rng.random(1000),
              "model_ema.decay": np.array(0.9999, np.float32), "model_ema.num_updates": np.array(7, np.int32),
              "model_ema.diffusion_modelconv_inweight": rng.random(3).astype(np.float32),
              "first_stage_model.loss.logvar": np.array(0.0, np.float32)}
    if name == "tiny-sd1":
        extras["cond_stage_model.transformer.text_model.embeddings.position_ids"] = np.arange(77)[None]
    else:
        n, d = cfg.text_encoder.num_hidden_layers, cfg.text_encoder.hidden_size
        extras["cond_stage_model.model.text_projection"] = rng.random((d, d)).astype(np.float32)
        extras["cond_stage_model.model.logit_scale"] = np.array(4.6, np.float32)
        extras[f"cond_stage_model.model.transformer.resblocks.{n}.ln_1.weight"] = rng.random(d).astype(np.float32)
        extras[f"cond_stage_model.model.transformer.resblocks.{n}.attn.in_proj_weight"] = (
            rng.random((3 * d, d)).astype(np.float32))
    original = np_load_file(path)
    foreign = {k: rng.standard_normal(a.shape).astype(np.float32) for k, a in original.items()}
    foreign.update(extras)
    src = tmp_path / "foreign.safetensors"
    np_save_file(foreign, str(src))
    loaded = ck.load_checkpoint(src, cfg)
    out = tmp_path / "out.safetensors"
    ck.save_ldm_checkpoint(loaded, cfg, out)
    back = np_load_file(str(out))
    assert set(back) == set(foreign) - set(extras)
    for k, a in back.items():
        assert a.dtype == foreign[k].dtype and a.tobytes() == foreign[k].tobytes(), k


@pytest.mark.parametrize("name", TINY)
def test_diffusers_round_trip_is_bitwise(name, tmp_path):
    cfg = TINY[name]
    w = _weights(cfg, seed=20)
    ck.save_diffusers(w, cfg, tmp_path / "a")
    loaded = ck.load_checkpoint(tmp_path / "a", cfg)
    _assert_same(loaded, w)
    ck.save_diffusers(loaded, cfg, tmp_path / "b")
    files = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "a")
                   for d, _, fs in os.walk(tmp_path / "a") for f in fs)
    assert "model_index.json" in files and "unet/diffusion_pytorch_model.safetensors" in files
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


@pytest.mark.parametrize("name", TINY)
def test_save_pretrained_folder_loads(name, tmp_path):
    """diffusers / transformers save_pretrained output (transformers 5: text keys without `text_model.`; the UNet
    in shards with an index) loads to the models' own state_dicts."""
    cfg = TINY[name]
    models = _torch_models(cfg, seed=3)
    models["unet"].save_pretrained(tmp_path / "unet", max_shard_size="100KB")
    models["vae"].save_pretrained(tmp_path / "vae")
    models["text_encoder"].save_pretrained(tmp_path / "text_encoder")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors.index.json").exists()
    loaded = ck.load_checkpoint(tmp_path, cfg)
    _assert_same(loaded, {c: _state(c, m) for c, m in models.items()})


def test_real_repo_layout_loads(tmp_path):
    """The layout of the real SD 1.5 / 2.1 repositories: text_encoder keys with `text_model.` (transformers 4)
    plus the int64 position_ids buffer; VAE attention named query / key / value / proj_attn (diffusers < 0.15)."""
    cfg = TINY_SD1
    models = _torch_models(cfg, seed=4)
    expected = {c: _state(c, m) for c, m in models.items()}
    for comp in ("unet", "vae", "text_encoder"):
        os.makedirs(tmp_path / comp)
    np_save_file(expected["unet"], str(tmp_path / "unet" / "diffusion_pytorch_model.safetensors"))
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    vae = {}
    for k, a in expected["vae"].items():
        for new, was in old.items():
            k = k.replace(f"mid_block.attentions.0.{new}.", f"mid_block.attentions.0.{was}.")
        vae[k] = a
    assert "decoder.mid_block.attentions.0.proj_attn.weight" in vae
    np_save_file(vae, str(tmp_path / "vae" / "diffusion_pytorch_model.safetensors"))
    text = dict(expected["text_encoder"], **{"text_model.embeddings.position_ids": np.arange(77)[None]})
    np_save_file(text, str(tmp_path / "text_encoder" / "model.safetensors"))
    _assert_same(ck.load_checkpoint(tmp_path, cfg), expected)


def _plain(value):
    """Config values compared as JSON sees them (a tuple and a list of the same numbers are the same)."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name", TINY)
def test_our_folder_loads_in_diffusers(name, tmp_path):
    cfg = TINY[name]
    w = _weights(cfg, seed=30)
    ck.save_diffusers(w, cfg, tmp_path)
    unet, info_u = UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet", output_loading_info=True)
    vae, info_v = AutoencoderKL.from_pretrained(tmp_path, subfolder="vae", output_loading_info=True)
    text, info_t = CLIPTextModel.from_pretrained(tmp_path, subfolder="text_encoder", output_loading_info=True)
    for info in (info_u, info_v, info_t):
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    _assert_same({"unet": _state("unet", unet), "vae": _state("vae", vae),
                  "text_encoder": _state("text_encoder", text)}, w)
    # the configs we wrote describe the same architecture as the models built from the config numbers
    ref = _torch_models(cfg)
    for key in ("attention_head_dim", "use_linear_projection", "cross_attention_dim", "block_out_channels",
                "down_block_types", "up_block_types", "layers_per_block", "norm_num_groups"):
        assert _plain(unet.config[key]) == _plain(ref["unet"].config[key]), key
    for key in ("block_out_channels", "layers_per_block", "latent_channels", "scaling_factor", "norm_num_groups"):
        assert _plain(vae.config[key]) == _plain(ref["vae"].config[key]), key
    for key in ("hidden_act", "num_hidden_layers", "hidden_size", "num_attention_heads", "pad_token_id"):
        assert getattr(text.config, key) == getattr(ref["text_encoder"].config, key), key
    # model_index.json: diffusers assembles the pipeline (there is no tokenizer to load)
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path, tokenizer=None, local_files_only=True)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.config.clip_sample is False


# ----------------------------------------------------------------------------------------------------- dtypes

def test_dtypes(tiny_files, tmp_path):
    cfg, w, path = tiny_files["tiny-sd2"]
    half = ck.load_checkpoint(path, cfg, dtype=np.float16)
    _assert_same(half, {c: {k: a.astype(np.float16) for k, a in d.items()} for c, d in w.items()})
    # stored as float16: the file says F16, and widening back is exact
    p16 = tmp_path / "f16.safetensors"
    ck.save_ldm_checkpoint(w, cfg, p16, dtype=np.float16)
    assert {a.dtype for a in np_load_file(str(p16)).values()} == {np.dtype(np.float16)}
    _assert_same(ck.load_checkpoint(p16, cfg),
                 {c: {k: a.astype(np.float16).astype(np.float32) for k, a in d.items()} for c, d in w.items()})
    # bfloat16 written by torch: widened as torch widens it
    bf = {k: torch.from_numpy(a).to(torch.bfloat16) for k, a in np_load_file(path).items()}
    pbf = tmp_path / "bf16.safetensors"
    torch_save_file(bf, str(pbf))
    via_torch = {k: t.to(torch.float32).numpy() for k, t in bf.items()}
    loaded = ck.load_checkpoint(pbf, cfg)
    for key, e in ck.ldm_table(cfg).items():
        stacked = np.concatenate([loaded[e.component][p] for p in e.parts], axis=0).reshape(e.shape)
        assert stacked.tobytes() == via_torch[key].tobytes(), key


# ----------------------------------------------------------------------------------------------------- errors

def test_missing_unexpected_and_misshaped_keys_are_all_listed(tiny_files, tmp_path):
    cfg, _, path = tiny_files["tiny-sd1"]
    gone = ["model.diffusion_model.output_blocks.4.1.proj_out.weight",
            "first_stage_model.decoder.up.0.block.1.conv2.bias"]
    extra = ["model.diffusion_model.output_blocks.4.1.lora_up.weight", "something_else"]
    bent = "first_stage_model.encoder.mid.attn_1.q.weight"
    shapes = {}

    def edit(d):
        shapes["bent"] = d[bent].shape
        for k in gone:
            del d[k]
        for k in extra:
            d[k] = np.zeros(3, np.float32)
        d[bent] = d[bent].reshape(d[bent].shape[:2])

    bad = _rewrite(path, tmp_path / "bad.safetensors", edit)
    msg = _raises(bad, cfg)
    assert bad in msg and "tiny-sd1" in msg
    assert "missing (2)" in msg and all(k in msg for k in gone)
    assert "unexpected (2)" in msg and all(k in msg for k in extra)
    c = shapes["bent"][0]
    assert f"wrong shape (1): {bent}: expected {shapes['bent']}, got {(c, c)}" in msg


def test_allow_list_is_exact(tiny_files, tmp_path):
    """One OpenCLIP block beyond those that run is allowed (SD 2's 24th of 23), a second one is not."""
    cfg, _, path = tiny_files["tiny-sd2"]
    n = cfg.text_encoder.num_hidden_layers

    def edit(d):
        for extra in (n, n + 1):
            d[f"cond_stage_model.model.transformer.resblocks.{extra}.ln_1.weight"] = np.ones(32, np.float32)

    msg = _raises(_rewrite(path, tmp_path / "x.safetensors", edit), cfg)
    assert f"unexpected (1): cond_stage_model.model.transformer.resblocks.{n + 1}.ln_1.weight" in msg
    assert f"resblocks.{n}." not in msg


def test_non_float_tensor(tiny_files, tmp_path):
    cfg, _, path = tiny_files["tiny-sd1"]
    key = "model.diffusion_model.time_embed.0.bias"
    bad = _rewrite(path, tmp_path / "int.safetensors", lambda d: d.update({key: d[key].astype(np.int32)}))
    msg = _raises(bad, cfg)
    assert "not floating point (1)" in msg and f"{key}: I32" in msg


def test_truncated_and_garbage_files(tiny_files, tmp_path):
    cfg, _, path = tiny_files["tiny-sd1"]
    data = open(path, "rb").read()
    cases = {"half.safetensors": (data[: len(data) // 2], "truncated"),
             "header-cut.safetensors": (data[:40], "truncated"),
             "tiny.safetensors": (data[:5], "too short"),
             "empty.safetensors": (b"", "too short"),
             "random.safetensors": (np.random.default_rng(0).bytes(4096), "header length"),
             "json.safetensors": ((16).to_bytes(8, "little") + b"{not json at all" + b"\0" * 64, "JSON"),
             "extra.safetensors": (data + b"\0" * 16, "follow the last tensor")}
    for fname, (content, cause) in cases.items():
        p = tmp_path / fname
        p.write_bytes(content)
        msg = _raises(p, cfg)
        assert str(p) in msg and cause in msg.replace(str(p), ""), (fname, msg)
    msg = _raises(tmp_path / "nope.safetensors", cfg)
    assert "no such file" in msg
    (tmp_path / "old.ckpt").write_bytes(b"PK")
    assert "pickle" in _raises(tmp_path / "old.ckpt", cfg)


def test_wrong_family_is_named(tiny_files, tmp_path):
    sd1_cfg, _, sd1 = tiny_files["tiny-sd1"]
    sd2_cfg, _, sd2 = tiny_files["tiny-sd2"]
    assert ck.find_family(sd1) == "tiny-sd1" and ck.find_family(sd2) == "tiny-sd2"
    e = _error(sd1, sd2_cfg)
    msg = str(e)
    # the SD 1 UNet's proj_in is a 1x1 conv (C, C, 1, 1); SD 2's is linear (C, C)
    c = sd1_cfg.unet.block_out_channels[0]
    assert (f"model.diffusion_model.input_blocks.1.1.proj_in.weight: expected {(c, c)}, got {(c, c, 1, 1)}" in msg)
    # unexpected: SD 1 text names; among the first ten listed in the message, all of them in the details
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in msg
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in e.details
    assert msg.splitlines()[1] == "hint: the checkpoint matches config 'tiny-sd1'; load it with that config"
    assert "matches config 'tiny-sd2'" in _raises(sd2, sd1_cfg)
    # no exact match anywhere: the hint says what the file looks like
    broken = _rewrite(sd1, tmp_path / "b.safetensors", lambda d: d.pop("first_stage_model.quant_conv.bias"))
    assert ck.find_family(broken) is None
    msg = _raises(broken, sd2_cfg)
    assert "SD 1.x" in msg and "try config 'tiny-sd1'" in msg
    # a full-size config gets the same treatment without reading any tensor
    msg = _raises(sd1, SD21_BASE)
    assert "matches config 'tiny-sd1'" in msg


def test_diffusers_folder_errors(tmp_path):
    cfg = TINY_SD1
    w = _weights(cfg, seed=40)
    ck.save_diffusers(w, cfg, tmp_path / "ok")
    assert ck.find_family(tmp_path / "ok") == "tiny-sd1"
    msg = _raises(tmp_path / "ok", TINY_SD2)
    assert "unet/diffusion_pytorch_model.safetensors" in msg and "matches config 'tiny-sd1'" in msg
    assert "vae" not in msg.split("hint")[0]  # the VAE and text encoder files are fine for both
    # a key removed from one file: that file is named, with the key
    unet_file = tmp_path / "ok" / "unet" / "diffusion_pytorch_model.safetensors"
    d = np_load_file(str(unet_file))
    d.pop("mid_block.attentions.0.proj_out.bias")
    d["mid_block.attentions.0.extra.weight"] = np.zeros(2, np.float32)
    np_save_file(d, str(unet_file))
    msg = _raises(tmp_path / "ok", cfg)
    assert str(unet_file) in msg
    assert "missing (1): mid_block.attentions.0.proj_out.bias" in msg
    assert "unexpected (1): mid_block.attentions.0.extra.weight" in msg
    # no vae/ at all
    shutil.copytree(tmp_path / "ok", tmp_path / "novae")
    shutil.rmtree(tmp_path / "novae" / "vae")
    msg = _raises(tmp_path / "novae", cfg)
    assert "no vae weights" in msg and "no vae/ subfolder" in msg


def test_config_json_disagreement_warns(tmp_path):
    cfg = TINY_SD2
    ck.save_diffusers(_weights(cfg), cfg, tmp_path)
    path = tmp_path / "unet" / "config.json"
    c = json.loads(path.read_text())
    c["attention_head_dim"] = 8  # heads change no shape: only config.json can reveal the difference
    path.write_text(json.dumps(c))
    with pytest.warns(UserWarning, match="attention_head_dim=8"):
        ck.load_checkpoint(tmp_path, cfg, components=("unet",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ck.load_checkpoint(tmp_path, cfg, components=("vae", "text_encoder"))


def test_config_json_missing_field_warns_and_corrupt_is_an_error(tmp_path):
    """A field config.json lacks means the --model config's value is used: a warning says which; a missing
    config.json likewise; a config.json that is not JSON is an error naming it."""
    cfg = TINY_SD2
    ck.save_diffusers(_weights(cfg), cfg, tmp_path)
    path = tmp_path / "unet" / "config.json"
    c = json.loads(path.read_text())
    del c["norm_eps"]
    path.write_text(json.dumps(c))
    with pytest.warns(UserWarning, match="unet/config.json has no norm_eps: config 'tiny-sd2'"):
        ck.load_checkpoint(tmp_path, cfg, components=("unet",))
    (tmp_path / "vae" / "config.json").unlink()
    with pytest.warns(UserWarning, match="vae/config.json is missing"):
        ck.load_checkpoint(tmp_path, cfg, components=("vae",))
    (tmp_path / "text_encoder" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"text_encoder/config.json: cannot be read as JSON"):
        ck.load_checkpoint(tmp_path, cfg, components=("text_encoder",))


def test_saving_invalid_weights_writes_nothing(tmp_path):
    cfg = TINY_SD1
    w = _weights(cfg)
    del w["vae"]["decoder.conv_out.bias"]
    w["unet"]["conv_in.weight"] = w["unet"]["conv_in.weight"][:, :2]
    with pytest.raises(CheckpointError) as e:
        ck.save_ldm_checkpoint(w, cfg, tmp_path / "x.safetensors")
    assert "decoder.conv_out.bias" in str(e.value) and "conv_in.weight: expected" in str(e.value)
    assert not os.listdir(tmp_path)


def test_check_shapes():
    expected = {"a": (2, 3), "b": (4,), "c": (1,)}
    arrays = {"a": np.zeros((3, 2), np.float32), "b": np.zeros(4, np.int64), "d": np.zeros(1, np.float32)}
    with pytest.raises(CheckpointError) as e:
        ck.check_shapes(expected, arrays, "test weights")
    msg = str(e.value)
    assert "missing (1): c" in msg and "unexpected (1): d" in msg
    assert "a: expected (2, 3), got (3, 2)" in msg and "b: int64" in msg
    ck.check_shapes(expected, {k: np.zeros(s, np.float16) for k, s in expected.items()}, "fine")


def test_components_subset(tiny_files):
    cfg, w, path = tiny_files["tiny-sd2"]
    loaded = ck.load_checkpoint(path, cfg, components=("vae",))
    _assert_same(loaded, {"vae": w["vae"]})


def test_the_same_weights_give_the_same_bytes(tmp_path):
    """The library writes the metadata in a hash map's order, different from call to call; sdcl's files do not."""
    from sdcl.checkpoint.safetensors_io import write_safetensors
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    metadata = {"format": "pt", "sdcl.b": "1", "sdcl.c": "2", "sdcl.d": "3"}
    files = []
    for i in range(8):
        write_safetensors(str(tmp_path / f"{i}.safetensors"), arrays, metadata)
        files.append((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(set(files)) == 1
    assert ck.safetensors_io.SafetensorsFile(str(tmp_path / "0.safetensors")).metadata == metadata
