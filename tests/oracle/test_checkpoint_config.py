"""A checkpoint's own config (sdcl.checkpoint.checkpoint_config, folder_config, ldm_config) and the short mismatch
errors, against diffusers / transformers as oracles.

- diffusers folders: models of sizes none of the built-in configs has, saved by diffusers / transformers themselves
  (save_pretrained, save_config), must load into sdcl from their config.json files alone and give the oracle's
  numbers; the field tables must name every field of the oracle classes with the oracle's defaults; a field sdcl
  refuses must be one that changes diffusers' output, a field it ignores one that does not;
- LDM single files: the config inferred from the shapes of full-size SD 1.5 / 2.1-base files (sparse files: a
  header and no data, nothing materialised) must equal what diffusers' single-file loader makes of the published
  v1 / v2 inference yamls, and a small LDM file must give diffusers' numbers through the inferred config;
- mismatch errors stay short (a few KB for a full-size model) with the diagnosis first, and keep every key in
  `details`.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from numerics import F32_TOL, rel_l2
from transformers import CLIPTextConfig, CLIPTextModel

from sdcl import checkpoint as ck
from sdcl.checkpoint import CheckpointError
from sdcl.checkpoint.folder_config import FIELDS, PAD_TOKENS, Fixed, Ignored, Mapped, show
from sdcl.checkpoint.ldm_config import OPEN_CLIP_LAYERS_KEY
from sdcl.reference.configs import SD15, SD21_BASE, SDConfig, TextEncoderConfig, UNetConfig, VAEConfig
from sdcl.reference.schedulers import make_scheduler
from sdcl.reference.text_encoder import TextEncoder
from sdcl.reference.tokenizer import CLIPTokenizer
from sdcl.reference.unet import UNet
from sdcl.reference.vae import VAE

# Sizes no built-in config has: three levels, mixed attention, one layer per block, a head count per block,
# 40-wide cross-attention, 16 groups, eps 1e-6, no sin/cos flip, frequency shift 1, 5 latent channels.
UNET_KW = dict(sample_size=8, in_channels=5, out_channels=5, block_out_channels=(32, 48, 64), layers_per_block=1,
               down_block_types=("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
               up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"),
               attention_head_dim=(2, 3, 4), cross_attention_dim=40, norm_num_groups=16, norm_eps=1e-6,
               use_linear_projection=True, flip_sin_to_cos=False, freq_shift=1)
VAE_KW = dict(in_channels=3, out_channels=3, latent_channels=5, block_out_channels=(16, 32, 32),
              down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
              layers_per_block=1, norm_num_groups=8, sample_size=32, scaling_factor=0.5)
TEXT_KW = dict(hidden_size=40, intermediate_size=72, num_hidden_layers=2, num_attention_heads=5,
               max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-6)
SCHED_KW = dict(num_train_timesteps=500, beta_start=0.0002, beta_end=0.03, beta_schedule="linear", clip_sample=False,
                set_alpha_to_one=True, steps_offset=0, prediction_type="v_prediction", timestep_spacing="trailing")


def _unet_model(seed=0, **kw):
    torch.manual_seed(seed)
    return UNet2DConditionModel(**{**UNET_KW, **kw}).eval()


def _vae_model(seed=0, **kw):
    torch.manual_seed(seed)
    return AutoencoderKL(**{**VAE_KW, **kw}).eval()


def _text_model(seed=0, **kw):
    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(**{**TEXT_KW, **kw}, attn_implementation="sdpa")).eval()


def _unet_io(cfg, seed=7):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, cfg.in_channels, 8, 8)).astype(np.float32)
    ctx = rng.standard_normal((2, 6, cfg.cross_attention_dim)).astype(np.float32)
    return x, np.array([3, 700]), ctx


def _diffusers_unet_out(model, x, t, ctx):
    with torch.no_grad():
        return model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(ctx)).sample.numpy()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A whole diffusers folder of non-SD sizes, every part saved by diffusers / transformers."""
    root = tmp_path_factory.mktemp("own")
    models = {"unet": _unet_model(1, cross_attention_dim=40), "vae": _vae_model(2), "text_encoder": _text_model(3)}
    for comp, m in models.items():
        m.save_pretrained(root / comp)
    DDIMScheduler(**SCHED_KW).save_config(root / "scheduler")
    return root, models


# ---------------------------------------------------------------------------------------- the field tables

def _plain(v):
    return list(v) if isinstance(v, tuple) else v


@pytest.mark.parametrize("comp,cls", [("unet", UNet2DConditionModel), ("vae", AutoencoderKL),
                                      ("scheduler", DDIMScheduler)], ids=["unet", "vae", "scheduler"])
def test_every_diffusers_field_is_mapped_refused_or_ignored(comp, cls):
    """Every constructor argument of the diffusers class is in sdcl's table, with diffusers' default."""
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    assert set(params) <= set(FIELDS[comp]), sorted(set(params) - set(FIELDS[comp]))
    for name, p in params.items():
        field = FIELDS[comp][name]
        if not isinstance(field, Ignored):
            assert _plain(field.default) == _plain(p.default), (name, field.default, p.default)


def test_every_clip_text_config_field_is_mapped_refused_or_ignored():
    fields = CLIPTextConfig().to_dict()
    unknown = [k for k in fields if k not in FIELDS["text_encoder"] and not k.startswith("_")]
    assert not unknown
    for name, value in fields.items():
        field = FIELDS["text_encoder"].get(name)
        if isinstance(field, (Mapped, Fixed)):
            assert _plain(field.default) == value, (name, field.default, value)


def test_pad_tokens_are_clip_ids():
    tok = CLIPTokenizer(0)
    for token, i in PAD_TOKENS.items():
        assert tok.encoder[token] == i, token


# ----------------------------------------------------------------------- diffusers folders of other sizes

def test_unet_only_folder_gives_diffusers_numbers(tmp_path):
    """A UNet saved by diffusers, alone in its folder: its config comes from config.json, the folder loads for the
    UNet (the other components are not needed), and the output is diffusers'."""
    model = _unet_model(4)
    model.save_pretrained(tmp_path / "unet")
    own = ck.checkpoint_config(tmp_path, components=("unet",))
    assert own.config.vae is None and own.config.text_encoder is None
    weights = ck.load_checkpoint(tmp_path, own, components=("unet",))["unet"]
    x, t, ctx = _unet_io(own.config.unet)
    err = rel_l2(UNet(own.config.unet, weights)(x, t, ctx), _diffusers_unet_out(model, x, t, ctx))
    assert err <= F32_TOL, err
    # the same folder for all three components: the absent ones are named
    with pytest.raises(CheckpointError, match="no vae/ subfolder"):
        ck.checkpoint_config(tmp_path)
    assert ck.load_checkpoint(tmp_path, components=("unet",))["unet"].keys() == weights.keys()


def test_whole_folder_gives_diffusers_numbers(folder):
    root, models = folder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        own = ck.checkpoint_config(root)
        w = ck.load_checkpoint(root, own)
    cfg = own.config
    # UNet
    x, t, ctx = _unet_io(cfg.unet)
    assert rel_l2(UNet(cfg.unet, w["unet"])(x, t, ctx), _diffusers_unet_out(models["unet"], x, t, ctx)) <= F32_TOL
    # VAE: decode, and encode's mean
    rng = np.random.default_rng(3)
    z = rng.standard_normal((1, 5, 6, 10)).astype(np.float32)
    image = rng.standard_normal((1, 3, 24, 40)).astype(np.float32)
    vae = VAE(cfg.vae, w["vae"])
    with torch.no_grad():
        decoded = models["vae"].decode(torch.from_numpy(z)).sample.numpy()
        mean = models["vae"].encode(torch.from_numpy(image)).latent_dist.mean.numpy()
    assert rel_l2(vae.decode(z), decoded) <= F32_TOL
    assert rel_l2(vae.encode(image)[0], mean) <= F32_TOL
    assert cfg.vae.scaling_factor == models["vae"].config.scaling_factor
    # text encoder
    ids = rng.integers(0, 49408, size=(2, 77))
    with torch.no_grad():
        hidden = models["text_encoder"](input_ids=torch.from_numpy(ids)).last_hidden_state.numpy()
    assert rel_l2(TextEncoder(cfg.text_encoder, w["text_encoder"])(ids), hidden) <= F32_TOL
    # scheduler: timesteps and a DDIM step as diffusers' DDIMScheduler takes them from the same file
    theirs = DDIMScheduler.from_pretrained(root, subfolder="scheduler")
    ours = make_scheduler("ddim", cfg.scheduler)
    theirs.set_timesteps(10)
    ours.set_timesteps(10)
    assert np.array_equal(ours.timesteps, theirs.timesteps.numpy())
    np.testing.assert_allclose(ours.alphas_cumprod, theirs.alphas_cumprod.numpy(), rtol=2e-5)  # float32 there
    sample, eps = rng.standard_normal((1, 4, 4)), rng.standard_normal((1, 4, 4))
    for t0 in (int(ours.timesteps[3]), int(ours.timesteps[-1])):   # the last step reads set_alpha_to_one
        step = theirs.step(torch.from_numpy(eps), t0, torch.from_numpy(sample)).prev_sample.numpy()
        np.testing.assert_allclose(ours.step(eps, t0, sample), step, rtol=2e-5, atol=1e-6)
    # the notes say what came from defaults: here only the pad token (no tokenizer/ folder)
    assert len(own.notes) == 1 and "pad token" in own.notes[0] and "'!'" in own.notes[0]


def test_generate_runs_a_folder_of_other_sizes_without_model(folder, tmp_path, capsys):
    from PIL import Image

    from sdcl.cli import main
    root, _ = folder
    out = tmp_path / "img.png"
    assert main(["generate", "a red bicycle", "--checkpoint", str(root), "--steps", "2", "--quiet",
                 "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)   # vae/config.json's sample_size
    captured = capsys.readouterr()
    assert "sdcl: note: " in captured.err and "pad token" in captured.err


def test_pad_token_from_the_tokenizer_folder(folder, tmp_path):
    import shutil
    root, _ = folder
    shutil.copytree(root, tmp_path / "f")
    (tmp_path / "f" / "tokenizer").mkdir()
    (tmp_path / "f" / "tokenizer" / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": {"content": "<|endoftext|>", "lstrip": False}}))
    own = ck.checkpoint_config(tmp_path / "f")
    assert own.config.text_encoder.pad_token_id == 49407 and not own.notes
    (tmp_path / "f" / "tokenizer" / "special_tokens_map.json").write_text(json.dumps({"pad_token": "<pad>"}))
    with pytest.raises(CheckpointError, match="pad_token '<pad>' is not supported"):
        ck.checkpoint_config(tmp_path / "f")


# ---------------------------------------------------------------- refused fields, ignored fields, bad files

# Fields whose non-SD value changes diffusers' output: sdcl refuses each by name.
CHANGING = [
    ("unet", {"act_fn": "mish"}), ("unet", {"downsample_padding": 0}), ("unet", {"center_input_sample": True}),
    ("unet", {"mid_block_scale_factor": 2}), ("unet", {"time_embedding_act_fn": "silu"}),
    ("unet", {"timestep_post_act": "silu"}), ("vae", {"act_fn": "gelu"}),
]
# Fields sdcl ignores: diffusers' output is the same with them set (same weights).
NO_EFFECT = [
    ("unet", {"upcast_attention": True}), ("unet", {"dropout": 0.3}), ("unet", {"resnet_skip_time_act": True}),
    ("unet", {"resnet_out_scale_factor": 2.0}), ("unet", {"cross_attention_norm": "layer_norm"}),
    ("unet", {"mid_block_only_cross_attention": True}), ("unet", {"addition_embed_type_num_heads": 3}),
    ("vae", {"force_upcast": False}),
]


def _diffusers_output(comp, kw, state):
    model = _unet_model(0, **kw) if comp == "unet" else _vae_model(0, **kw)
    model.load_state_dict(state, strict=True)
    if comp == "unet":
        x, t, ctx = _unet_io(replace(UNetConfig(), in_channels=5, cross_attention_dim=40))
        return _diffusers_unet_out(model, x, t, ctx)
    z = np.random.default_rng(1).standard_normal((1, 5, 4, 4)).astype(np.float32)
    with torch.no_grad():
        return model.decode(torch.from_numpy(z)).sample.numpy()


@pytest.mark.parametrize("comp,kw", CHANGING, ids=[f"{c}-{next(iter(k))}" for c, k in CHANGING])
def test_a_field_that_changes_the_numbers_is_refused_by_name(comp, kw, tmp_path):
    base = _unet_model(0) if comp == "unet" else _vae_model(0)
    assert not np.allclose(_diffusers_output(comp, kw, base.state_dict()), _diffusers_output(comp, {},
                                                                                                 base.state_dict()))
    (_unet_model if comp == "unet" else _vae_model)(0, **kw).save_pretrained(tmp_path / comp)
    (name, value), = kw.items()
    with pytest.raises(CheckpointError) as e:
        ck.checkpoint_config(tmp_path, components=(comp,))
    assert f"{comp}/config.json: {comp} {name} {show(value)} is not supported: " in str(e.value)
    # a named config does not make it acceptable either
    with pytest.raises(CheckpointError, match=f"{name} {show(value)}"):
        ck.load_checkpoint(tmp_path, SD15, components=(comp,))


@pytest.mark.parametrize("comp,kw", NO_EFFECT, ids=[f"{c}-{next(iter(k))}" for c, k in NO_EFFECT])
def test_a_field_sdcl_ignores_changes_nothing_in_diffusers(comp, kw, tmp_path):
    base = _unet_model(0) if comp == "unet" else _vae_model(0)
    assert np.array_equal(_diffusers_output(comp, kw, base.state_dict()), _diffusers_output(comp, {},
                                                                                              base.state_dict()))
    (_unet_model if comp == "unet" else _vae_model)(0, **kw).save_pretrained(tmp_path / comp)
    own = ck.checkpoint_config(tmp_path, components=(comp,))
    assert [n for n in own.notes if not n.startswith("no scheduler/")] == []   # read, and nothing to say about it


# Values sdcl does not implement, written into config.json files diffusers / transformers saved.
REFUSED = [
    ("unet", "down_block_types", ["SimpleCrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
     "'SimpleCrossAttnDownBlock2D' is not supported"),
    ("unet", "mid_block_type", "UNetMidBlock2D", "'UNetMidBlock2D' is not supported"),
    ("unet", "transformer_layers_per_block", [1, 2, 1], "[1, 2, 1] is not supported"),
    ("unet", "layers_per_block", [1, 2, 1], "layers_per_block [1, 2, 1] is not supported"),
    ("unet", "only_cross_attention", True, "only_cross_attention true is not supported"),
    ("unet", "addition_embed_type", "text_time", "'text_time' is not supported"),
    ("unet", "time_embedding_dim", 64, "time_embedding_dim 64 is not supported"),
    ("unet", "num_attention_heads", 8, "num_attention_heads 8 is not supported"),
    ("unet", "_class_name", "UNet2DModel", "'UNet2DModel' is not supported"),
    ("vae", "use_quant_conv", False, "use_quant_conv false is not supported"),
    ("vae", "shift_factor", 0.06, "shift_factor 0.06 is not supported"),
    ("vae", "latents_mean", [0.1] * 5, "latents_mean"),
    ("text_encoder", "hidden_act", "gelu_new", "hidden_act 'gelu_new' is not supported"),
    ("text_encoder", "vocab_size", 1000, "vocab_size 1000 is not supported"),
    ("text_encoder", "architectures", ["CLIPTextModelWithProjection"], "is not supported"),
    ("scheduler", "clip_sample", True, "clip_sample true is not supported"),
    ("scheduler", "thresholding", True, "thresholding true is not supported"),
    ("scheduler", "trained_betas", [0.1] * 500, "trained_betas"),
    ("scheduler", "beta_schedule", "squaredcos_cap_v2", "'squaredcos_cap_v2' is not supported"),
    ("scheduler", "prediction_type", "sample", "prediction_type 'sample' is not supported"),
    ("scheduler", "rescale_betas_zero_snr", True, "rescale_betas_zero_snr true is not supported"),
    ("scheduler", "use_karras_sigmas", True, "use_karras_sigmas true is not supported"),
]
_CONFIG_FILE = {"unet": "unet/config.json", "vae": "vae/config.json", "text_encoder": "text_encoder/config.json",
                "scheduler": "scheduler/scheduler_config.json"}


def _edit(path, **changes):
    c = json.loads(path.read_text())
    c.update(changes)
    for k in [k for k, v in changes.items() if v is _DROP]:
        del c[k]
    path.write_text(json.dumps(c))


_DROP = object()


@pytest.mark.parametrize("comp,name,value,fragment", REFUSED, ids=[f"{c}-{n}" for c, n, _, _ in REFUSED])
def test_unsupported_values_are_refused_by_name(folder, tmp_path, comp, name, value, fragment):
    import shutil
    root, _ = folder
    shutil.copytree(root, tmp_path / "f")
    _edit(tmp_path / "f" / _CONFIG_FILE[comp], **{name: value})
    with pytest.raises(CheckpointError) as e:
        ck.checkpoint_config(tmp_path / "f")
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "f" / _CONFIG_FILE[comp]) + ": ") and fragment in msg, msg


def test_bad_and_missing_config_values(folder, tmp_path):
    import shutil
    root, _ = folder
    f = tmp_path / "f"
    shutil.copytree(root, f)
    _edit(f / "unet/config.json", block_out_channels="wide")
    with pytest.raises(CheckpointError, match=r"unet/config.json: block_out_channels must be a non-empty list"):
        ck.checkpoint_config(f)
    _edit(f / "unet/config.json", block_out_channels=[32, 48, 63])       # 63 channels in 16 groups
    with pytest.raises(CheckpointError, match=r"unet/config.json: describes no model .* 63"):
        ck.checkpoint_config(f)
    _edit(f / "unet/config.json", block_out_channels=[32, 48, 64], norm_eps=_DROP, some_future_field=1)
    own = ck.checkpoint_config(f)
    assert own.config.unet.norm_eps == inspect.signature(UNet2DConditionModel.__init__).parameters["norm_eps"].default
    assert any("lacks norm_eps" in n and "1e-05" in n for n in own.notes)
    assert any("some_future_field" in n for n in own.notes)
    (f / "vae/config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"vae/config.json: cannot be read as JSON"):
        ck.checkpoint_config(f)
    (f / "vae/config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"vae/config.json: not a JSON object"):
        ck.checkpoint_config(f)
    (f / "vae/config.json").unlink()
    with pytest.raises(CheckpointError, match=r"has no vae/config.json"):
        ck.checkpoint_config(f)
    # a DDIM scheduler config without clip_sample means diffusers' default, true: refused
    _edit(f / "scheduler/scheduler_config.json", clip_sample=_DROP)
    with pytest.raises(CheckpointError, match=r"clip_sample true is not supported.*default is true"):
        ck.checkpoint_config(f, components=("unet",))
    (f / "scheduler/scheduler_config.json").unlink()
    own = ck.checkpoint_config(f, components=("unet",))
    assert own.config.scheduler == SD15.scheduler and any("SD's training schedule" in n for n in own.notes)


def test_weights_that_contradict_their_config_json(folder, tmp_path):
    import shutil
    root, _ = folder
    shutil.copytree(root, tmp_path / "f")
    _edit(tmp_path / "f" / "unet/config.json", use_linear_projection=False)
    with pytest.raises(CheckpointError) as e:
        ck.load_checkpoint(tmp_path / "f")
    first, hint = str(e.value).splitlines()[:2]
    assert "does not match its config.json files: unet: " in first and "wrong shape" in first
    assert hint.startswith("hint: ") and "config.json" in hint


# -------------------------------------------------------------------------------- LDM files: inferred config

def _sparse_safetensors(path, shapes: dict, metadata=None):
    """A valid safetensors file of float16 tensors with these shapes whose data is a hole: the header is all that is
    written (the file system stores no zeros)."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        n = 2 * math.prod(shape)
        header[key] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little") + text)
        fh.truncate(8 + len(text) + offset)
    return str(path)


def _real_layout_shapes(cfg) -> dict:
    """{LDM key: shape} of the real v1-5 / v2-1_512 files: sdcl's table, plus for SD 2.x OpenCLIP's 24th block."""
    shapes = {k: e.shape for k, e in ck.ldm_table(cfg).items()}
    if cfg.text_encoder.hidden_act == "gelu":
        n = cfg.text_encoder.num_hidden_layers
        for key in [k for k in shapes if f"resblocks.{n - 1}." in k]:
            shapes[key.replace(f"resblocks.{n - 1}.", f"resblocks.{n}.")] = shapes[key]
    return shapes


# The published v1-inference.yaml and v2-inference.yaml (CompVis / Stability), the parts diffusers reads.
_V1_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
                transformer_depth=1, context_dim=768, legacy=False)
_V2_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_head_channels=64, use_spatial_transformer=True,
                use_linear_in_transformer=True, transformer_depth=1, context_dim=1024, legacy=False)
_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
                 num_res_blocks=2, attn_resolutions=[], dropout=0.0)
YAMLS = {"sd15": _V1_UNET, "sd21-base": _V2_UNET}
# The text encoders of the real diffusers repositories (text_encoder/config.json of SD 1.5 and SD 2.1-base).
REAL_TEXT = {"sd15": dict(hidden_size=768, num_attention_heads=12, num_hidden_layers=12, intermediate_size=3072,
                          hidden_act="quick_gelu"),
             "sd21-base": dict(hidden_size=1024, num_attention_heads=16, num_hidden_layers=23, intermediate_size=4096,
                               hidden_act="gelu")}


@pytest.mark.parametrize("cfg", [SD15, SD21_BASE], ids=lambda c: c.name)
def test_full_size_ldm_config_is_what_diffusers_makes_of_the_yaml(cfg, tmp_path):
    shapes = _real_layout_shapes(cfg)
    path = _sparse_safetensors(tmp_path / "model.safetensors", shapes)
    own = ck.checkpoint_config(path)
    original = {"model": {"params": {"unet_config": {"params": YAMLS[cfg.name]}, "scale_factor": 0.18215,
                                     "first_stage_config": {"params": {"ddconfig": _DDCONFIG}}}}}
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert sfu.infer_diffusers_model_type(meta) == ("v1" if cfg is SD15 else "v2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unet = sfu.create_unet_diffusers_config_from_ldm(original, meta, image_size=512)
        vae = sfu.create_vae_diffusers_config_from_ldm(original, meta, image_size=512)
    ours = ck.diffusers_configs(own.config)
    for key in ("sample_size", "in_channels", "out_channels", "down_block_types", "up_block_types",
                "block_out_channels", "layers_per_block", "cross_attention_dim", "attention_head_dim",
                "use_linear_projection"):
        assert _plain(ours["unet"][key]) == _plain(unet[key]), key
    assert unet["transformer_layers_per_block"] == 1 and unet["class_embed_type"] is None
    for key, value in vae.items():
        assert _plain(ours["vae"][key]) == _plain(value), key
    for key, value in REAL_TEXT[cfg.name].items():
        assert getattr(own.config.text_encoder, key) == value, key
    # what the shapes could not say is named in the notes
    text = " ".join(own.notes)
    assert "unet heads" in text and "text encoder heads" in text and "scaling_factor" in text
    assert ("penultimate" in text) == (cfg is SD21_BASE)


def test_small_ldm_file_gives_diffusers_numbers_through_its_inferred_config(tmp_path):
    """An SD 2.x-style file of other sizes (what LDM's code can hold: 32 groups, 64-channel heads) written from a
    diffusers UNet: the config inferred from its shapes runs it to diffusers' output."""
    kw = dict(sample_size=8, block_out_channels=(64, 128), layers_per_block=1, norm_num_groups=32,
              down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D",
                                                                                       "CrossAttnUpBlock2D"),
              attention_head_dim=(1, 2), cross_attention_dim=64, use_linear_projection=True)
    torch.manual_seed(5)
    model = UNet2DConditionModel(**kw).eval()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    unet_cfg = UNetConfig(block_out_channels=(64, 128), layers_per_block=1, norm_num_groups=32,
                          down_block_types=kw["down_block_types"], up_block_types=kw["up_block_types"],
                          num_heads=(1, 2), cross_attention_dim=64, use_linear_projection=True)
    text_cfg = TextEncoderConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=1,
                                 hidden_act="gelu", pad_token_id=0)
    vae_cfg = VAEConfig(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32)
    cfg = SDConfig("made", text_cfg, unet_cfg, vae_cfg)
    shapes = ck.expected_shapes(cfg)
    rng = np.random.default_rng(0)
    weights = {"unet": state, **{c: {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes[c].items()}
                                 for c in ("vae", "text_encoder")}}
    path = tmp_path / "made.safetensors"
    ck.save_ldm_checkpoint(weights, cfg, path)
    own = ck.checkpoint_config(path)
    assert own.config.text_encoder.num_hidden_layers == 2          # the file's metadata: both blocks run
    w = ck.load_checkpoint(path, own)
    x, t, ctx = _unet_io(own.config.unet)
    assert rel_l2(UNet(own.config.unet, w["unet"])(x, t, ctx), _diffusers_unet_out(model, x, t, ctx)) <= F32_TOL
    # the same tensors without sdcl's metadata, plus an OpenCLIP block that does not run, as the real files have
    from safetensors.numpy import load_file, save_file
    d = load_file(str(path))
    for key in [k for k in d if ".resblocks.1." in k]:
        d[key.replace(".resblocks.1.", ".resblocks.2.")] = d[key]
    save_file(d, str(tmp_path / "real.safetensors"))
    own = ck.checkpoint_config(tmp_path / "real.safetensors")
    assert own.config.text_encoder.num_hidden_layers == 2 and any("penultimate" in n for n in own.notes)
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as fh:
        assert fh.metadata()[OPEN_CLIP_LAYERS_KEY] == "2"


def test_ldm_file_that_no_family_default_fits(tmp_path):
    """Tiny-sd1's text encoder is 32 wide: CLIP's 64-channel heads do not divide it. Inference says so and points to
    --model; loading with the named config works."""
    from sdcl.reference.configs import TINY_SD1
    from sdcl.reference.pipeline import init_weights
    path = tmp_path / "t.safetensors"
    ck.save_ldm_checkpoint(init_weights(TINY_SD1), TINY_SD1, path)
    with pytest.raises(CheckpointError) as e:
        ck.checkpoint_config(path)
    assert "cannot infer" in str(e.value) and "64" in str(e.value) and "--model" in e.value.hint
    ck.load_checkpoint(path, TINY_SD1)
    with pytest.raises(CheckpointError, match="holds no vae"):
        ck.checkpoint_config(_sparse_safetensors(tmp_path / "u.safetensors", {
            k: s for k, s in _real_layout_shapes(SD15).items() if k.startswith("model.")}))


# ---------------------------------------------------------------------------------------------- short errors

@pytest.mark.parametrize("cfg,other", [(SD15, SD21_BASE), (SD21_BASE, SD15)], ids=["sd15-as-sd21", "sd21-as-sd15"])
def test_full_size_mismatch_error_is_short_and_diagnosis_first(cfg, other, tmp_path):
    shapes = _real_layout_shapes(cfg)
    path = _sparse_safetensors(tmp_path / "model.safetensors", shapes)
    with pytest.raises(CheckpointError) as e:
        ck.load_checkpoint(path, other)
    msg = str(e.value)
    lines = msg.splitlines()
    assert len(msg) < 4096, len(msg)
    assert lines[0].startswith(f"{path}: single-file LDM checkpoint does not match config {other.name!r}: ")
    assert lines[1] == f"hint: the checkpoint matches config {cfg.name!r}; load it with that config"
    assert e.value.hint == lines[1].removeprefix("hint: ")
    wanted = set(ck.ldm_table(other))
    missing = sorted(wanted - set(shapes))
    groups = {}
    for line in lines[2:]:
        m = re.fullmatch(r"  (missing|unexpected|wrong shape) \((\d+)\): (.*) and (\d+) more", line)
        assert m, line
        title, n, keys, more = m.group(1), int(m.group(2)), m.group(3).split(", "), int(m.group(4))
        assert (len(keys), more) == (10, n - 10) if title != "wrong shape" else more == n - 10, line
        assert f"{n} {title}" in lines[0]
        groups[title] = n
    assert groups["missing"] == len(missing) and set(groups) == {"missing", "unexpected", "wrong shape"}
    # every key is in the details, for a report file: the missing ones, and every unexpected one is a file key
    details = e.value.details
    assert all(k in details for k in missing)
    listed = re.search(r"  unexpected \(\d+\): (.*)", details).group(1).split(", ")
    assert len(listed) == groups["unexpected"] and set(listed) <= set(shapes) - wanted


def test_generate_writes_the_mismatch_report_on_request(tmp_path, capsys):
    from sdcl.cli import main
    from sdcl.reference.configs import TINY_SD1, TINY_SD2
    from sdcl.reference.pipeline import init_weights
    path = tmp_path / "m.safetensors"
    ck.save_ldm_checkpoint(init_weights(TINY_SD1), TINY_SD1, path)
    args = ["generate", "x", "--model", "tiny-sd2", "--checkpoint", str(path), "--steps", "1", "--quiet",
            "-o", str(tmp_path / "x.png")]
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "does not match config 'tiny-sd2'" in err[0] and "--mismatch-report" in err[1]
    report = tmp_path / "keys.txt"
    assert main(args + ["--mismatch-report", str(report)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and str(report) in err[1]
    text = report.read_text()
    unexpected = set(ck.ldm_table(TINY_SD1)) - set(ck.ldm_table(TINY_SD2))
    assert unexpected and all(k in text for k in unexpected)
    assert not (tmp_path / "x.png").exists()
