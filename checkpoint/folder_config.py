"""A diffusers folder's config.json files, read into sdcl's config: `read_folder_config`.

unet/config.json (diffusers' UNet2DConditionModel), vae/config.json (AutoencoderKL), text_encoder/config.json
(transformers' CLIPTextConfig) and scheduler/scheduler_config.json (read as diffusers' DDIMScheduler reads it: sdcl's
samplers share one schedule, and `--sampler` picks the algorithm) become the parts of an `SDConfig`. Every field of
those classes is in one of three tables per component (`FIELDS`):

  Mapped   read into sdcl's config. A field the file lacks takes the class's own default, as diffusers /
           transformers would, and a note says so (fields that change no number: silently).
  Fixed    sdcl implements one value, Stable Diffusion's (or a few that mean the same); any other value is refused
           by name, with what SD does ("unet act_fn 'mish' is not supported: SD uses silu").
  Ignored  no effect on sdcl's numbers: metadata, training-only settings, float16 upcasts (sdcl computes in float32
           or float64), options read only by block types SD does not have (and which are refused).

A field in no table is unknown to sdcl: it is ignored, and a note names it. A config.json that cannot be read, is not
a JSON object, or holds a value of the wrong type is a CheckpointError naming the file and the field; so is a config
that describes an impossible model (channels that the groups do not divide, ...).

The text encoder's config.json does not reliably hold the pad token (the real SD repositories carry transformers'
defaults there, 1 / 0 / 2): the tokenizer's special_tokens_map.json or tokenizer_config.json says it, else the
family's (quick_gelu CLIP, SD 1.x: <|endoftext|>; gelu OpenCLIP, SD 2.x: "!"), with a note.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from sdcl.reference import text_encoder, unet, vae
from sdcl.reference.configs import SchedulerConfig, TextEncoderConfig, UNetConfig, VAEConfig
from sdcl.reference.validation import CheckpointError

CONFIG_FILES = {"unet": "unet/config.json", "vae": "vae/config.json", "text_encoder": "text_encoder/config.json",
                "scheduler": "scheduler/scheduler_config.json"}
CLASSES = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "text_encoder": "CLIPTextConfig",
           "scheduler": "DDIMScheduler"}


@dataclass(frozen=True)
class Mapped:
    default: object          # the class's default, used when the file lacks the field
    noted: bool = True       # whether taking the default is worth a note (False: no effect on the numbers)


@dataclass(frozen=True)
class Fixed:
    default: object          # the class's default
    why: str                 # what SD does: the refusal's reason
    accepted: tuple = ()     # the values sdcl implements (empty: the default only)
    per_block: bool = False  # a list of accepted values, one per block, is accepted too

    def accepts(self, value) -> bool:
        ok = self.accepted or (self.default,)
        if self.per_block and isinstance(value, list) and value:
            return all(_same_value(v, ok) for v in value)
        return _same_value(value, ok)


@dataclass(frozen=True)
class Ignored:
    why: str


def _same_value(value, accepted) -> bool:
    """`value` is one of `accepted`, a bool only matching a bool (JSON's true is not 1)."""
    return any(type(value) is bool and type(a) is bool and value == a or
               type(value) is not bool and type(a) is not bool and value == a for a in accepted)


_TRAINING = Ignored("training only (dropout, initialisation)")
_UPCAST = Ignored("an upcast to float32 under float16 compute; sdcl computes in float32 or float64")
_UNUSED_BLOCK_OPTION = Ignored("read only by block types SD does not have (refused)")

_UNET = {
    "sample_size": Mapped(None, noted=False),
    "in_channels": Mapped(4), "out_channels": Mapped(4),
    "center_input_sample": Fixed(False, "SD feeds the latents to conv_in unscaled"),
    "flip_sin_to_cos": Mapped(True), "freq_shift": Mapped(0),
    "down_block_types": Mapped(("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                "DownBlock2D")),
    "mid_block_type": Fixed("UNetMidBlock2DCrossAttn", "SD's mid block is UNetMidBlock2DCrossAttn"),
    "up_block_types": Mapped(("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
    "only_cross_attention": Fixed(False, "SD's transformer blocks self-attend before they cross-attend",
                                  per_block=True),
    "block_out_channels": Mapped((320, 640, 1280, 1280)),
    "layers_per_block": Mapped(2),
    "downsample_padding": Fixed(1, "SD's downsamplers pad by 1"),
    "mid_block_scale_factor": Fixed(1, "the output scale of SD's mid-block resnets is 1", accepted=(1, 1.0)),
    "dropout": _TRAINING,
    "act_fn": Fixed("silu", "SD uses silu"),
    "norm_num_groups": Mapped(32),
    "norm_eps": Mapped(1e-5),
    "cross_attention_dim": Mapped(1280),
    "transformer_layers_per_block": Fixed(1, "SD has one transformer block per attention", per_block=True),
    "reverse_transformer_layers_per_block": Fixed(None, "SD has one transformer block per attention"),
    "encoder_hid_dim": Fixed(None, "SD cross-attends to the text encoder's output as it is"),
    "encoder_hid_dim_type": Fixed(None, "SD cross-attends to the text encoder's output as it is"),
    "attention_head_dim": Mapped(8),
    "num_attention_heads": Fixed(None, "diffusers reads the head count from attention_head_dim (and refuses "
                                       "num_attention_heads itself)"),
    "dual_cross_attention": Fixed(False, "SD has one cross-attention per transformer block"),
    "use_linear_projection": Mapped(False),
    "class_embed_type": Fixed(None, "SD has no class embedding"),
    "addition_embed_type": Fixed(None, "SD has no added conditioning"),
    "addition_time_embed_dim": Fixed(None, "SD has no added conditioning"),
    "num_class_embeds": Fixed(None, "SD has no class embedding"),
    "upcast_attention": _UPCAST,
    "resnet_time_scale_shift": Fixed("default", "SD's resnets add the time embedding (no scale and shift)"),
    "resnet_skip_time_act": _UNUSED_BLOCK_OPTION,
    "resnet_out_scale_factor": _UNUSED_BLOCK_OPTION,
    "time_embedding_type": Fixed("positional", "SD's timestep embedding is sinusoidal"),
    "time_embedding_dim": Mapped(None, noted=False),   # None or 4 x block_out_channels[0]: checked below
    "time_embedding_act_fn": Fixed(None, "SD applies no activation to the time embedding before its resnets"),
    "timestep_post_act": Fixed(None, "SD's time embedding ends in its second linear layer"),
    "time_cond_proj_dim": Fixed(None, "SD has no timestep-condition projection"),
    "conv_in_kernel": Fixed(3, "SD's conv_in is 3x3"),
    "conv_out_kernel": Fixed(3, "SD's conv_out is 3x3"),
    "projection_class_embeddings_input_dim": Fixed(None, "SD has no class embedding"),
    "attention_type": Fixed("default", "SD's transformer blocks have no gated (GLIGEN) attention"),
    "class_embeddings_concat": Fixed(False, "SD has no class embedding"),
    "mid_block_only_cross_attention": _UNUSED_BLOCK_OPTION,
    "cross_attention_norm": _UNUSED_BLOCK_OPTION,
    "addition_embed_type_num_heads": Ignored("read only with an addition_embed_type (refused)"),
}

_VAE = {
    "in_channels": Mapped(3), "out_channels": Mapped(3),
    "down_block_types": Mapped(("DownEncoderBlock2D",)), "up_block_types": Mapped(("UpDecoderBlock2D",)),
    "block_out_channels": Mapped((64,)), "layers_per_block": Mapped(1),
    "act_fn": Fixed("silu", "SD uses silu"),
    "latent_channels": Mapped(4), "norm_num_groups": Mapped(32),
    "sample_size": Mapped(32, noted=False),
    "scaling_factor": Mapped(0.18215),
    "shift_factor": Fixed(None, "SD's pipeline shifts no latent", accepted=(None, 0, 0.0)),
    "latents_mean": Fixed(None, "SD's pipeline does not normalise latents per channel"),
    "latents_std": Fixed(None, "SD's pipeline does not normalise latents per channel"),
    "force_upcast": _UPCAST,
    "use_quant_conv": Fixed(True, "SD's VAE has a quant_conv"),
    "use_post_quant_conv": Fixed(True, "SD's VAE has a post_quant_conv"),
    "mid_block_add_attention": Fixed(True, "SD's VAE mid block has an attention layer"),
}

_TOKEN_IDS = Ignored("CLIPTextModel's last_hidden_state does not read it; sdcl's tokenizer is CLIP's BPE, and the "
                     "pad token comes from tokenizer/ or the family")
_GENERIC = Ignored("transformers' generic config (output options, labels, generation settings)")
_TEXT = {
    "vocab_size": Mapped(49408), "hidden_size": Mapped(512), "intermediate_size": Mapped(2048),
    "projection_dim": Ignored("CLIPTextModel has no projection; SD reads last_hidden_state"),
    "num_hidden_layers": Mapped(12), "num_attention_heads": Mapped(8), "max_position_embeddings": Mapped(77),
    "hidden_act": Mapped("quick_gelu"), "layer_norm_eps": Mapped(1e-5),
    "attention_dropout": _TRAINING, "dropout": _TRAINING, "initializer_range": _TRAINING,
    "initializer_factor": _TRAINING,
    "pad_token_id": _TOKEN_IDS, "bos_token_id": _TOKEN_IDS, "eos_token_id": _TOKEN_IDS,
    "model_type": Fixed("clip_text_model", "SD's text encoder is a CLIPTextModel"),
    "architectures": Fixed(None, "SD's text encoder is a CLIPTextModel", accepted=(None, ["CLIPTextModel"])),
    "torch_dtype": Ignored("the dtype of the stored weights, which the files say"),
    "dtype": Ignored("the dtype of the stored weights, which the files say"),
    "chunk_size_feed_forward": Ignored("splits the feed-forward computation, same numbers"),
    **{name: _GENERIC for name in (
        "transformers_version", "_name_or_path", "output_hidden_states", "output_attentions", "return_dict",
        "id2label", "label2id", "problem_type", "is_encoder_decoder", "is_decoder", "add_cross_attention",
        "cross_attention_hidden_size", "tie_word_embeddings", "tokenizer_class", "prefix", "task_specific_params",
        "finetuning_task", "pruned_heads", "torchscript", "use_bfloat16", "tf_legacy_loss", "sep_token_id",
        "decoder_start_token_id", "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
        "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
        "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
        "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
        "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
        "begin_suppress_tokens", "use_cache", "_attn_implementation", "_attn_implementation_autoset")},
}

_THRESHOLDING_ONLY = Ignored("read only with thresholding or clip_sample (both refused)")
_SCHEDULER = {
    "num_train_timesteps": Mapped(1000), "beta_start": Mapped(0.0001), "beta_end": Mapped(0.02),
    "beta_schedule": Mapped("linear"),
    "trained_betas": Fixed(None, "sdcl builds the betas from beta_schedule"),
    "clip_sample": Fixed(True, "sdcl's samplers do not clip the predicted sample", accepted=(False,)),
    "set_alpha_to_one": Mapped(True), "steps_offset": Mapped(0), "prediction_type": Mapped("epsilon"),
    "thresholding": Fixed(False, "sdcl's samplers do not threshold the predicted sample"),
    "dynamic_thresholding_ratio": _THRESHOLDING_ONLY, "clip_sample_range": _THRESHOLDING_ONLY,
    "sample_max_value": _THRESHOLDING_ONLY,
    "timestep_spacing": Mapped("leading"),
    "rescale_betas_zero_snr": Fixed(False, "sdcl uses the betas as the schedule gives them"),
    # options of other scheduler classes that would change sdcl's samplers: refused
    "use_karras_sigmas": Fixed(False, "sdcl's samplers step through the schedule's own sigmas"),
    "use_exponential_sigmas": Fixed(False, "sdcl's samplers step through the schedule's own sigmas"),
    "use_beta_sigmas": Fixed(False, "sdcl's samplers step through the schedule's own sigmas"),
    "skip_prk_steps": Ignored("PNDM's warm-up option (the real SD repositories' scheduler); sdcl has no PNDM"),
}

FIELDS = {"unet": _UNET, "vae": _VAE, "text_encoder": _TEXT, "scheduler": _SCHEDULER}

_UNET_BLOCKS = {"down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
                "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D")}
_ACTIVATIONS = ("quick_gelu", "gelu")
_BETA_SCHEDULES = ("linear", "scaled_linear")
_PREDICTION_TYPES = ("epsilon", "v_prediction")
_SPACINGS = ("leading", "linspace", "trailing")
# the scheduler classes whose step clips the predicted sample by default (clip_sample=True)
_CLIPPING_CLASSES = ("DDIMScheduler", "DDPMScheduler")
# pad tokens SD's tokenizers use, and their ids in CLIP's BPE
PAD_TOKENS = {"<|endoftext|>": 49407, "!": 0}
_FAMILY_PAD = {"quick_gelu": "<|endoftext|>", "gelu": "!"}


def show(value, limit: int = 80) -> str:
    """A config value as a message shows it: strings quoted, everything else as JSON writes it (true, null); a long
    value cut at `limit` characters."""
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_json(path: str) -> dict:
    """A config file's JSON object; a CheckpointError naming the file if it cannot be read or is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot be read as JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a JSON object (a {type(obj).__name__})")
    return obj


class _Fields:
    """One config.json: its values, or the class's defaults, checked field by field; what it notes."""

    def __init__(self, comp: str, path: str, raw: dict):
        self.comp, self.path, self.raw, self.table = comp, path, raw, FIELDS[comp]
        self.defaulted, self.notes = {}, []
        unknown = sorted(k for k in raw if k not in self.table and not k.startswith("_"))
        if unknown:
            self.notes.append(f"{self.rel} has field(s) sdcl does not know, ignored: {', '.join(unknown)}")
        for name, field in self.table.items():
            if isinstance(field, Fixed) and name in raw and not field.accepts(raw[name]):
                self.refuse(name, raw[name], field.why)

    @property
    def rel(self) -> str:
        return CONFIG_FILES[self.comp]

    def refuse(self, name: str, value, why: str):
        label = self.comp.replace("_", " ")
        raise CheckpointError(f"{self.path}: {label} {name} {show(value)} is not supported: {why}")

    def bad(self, name: str, value, wanted: str):
        raise CheckpointError(f"{self.path}: {name} must be {wanted}, got {show(value)}")

    def get(self, name: str):
        if name in self.raw:
            return self.raw[name]
        field = self.table[name]
        value = list(field.default) if isinstance(field.default, tuple) else field.default
        if isinstance(field, Mapped) and field.noted:
            self.defaulted[name] = value
        return value

    def integer(self, name: str, lo: int = 1) -> int:
        v = self.get(name)
        if type(v) is not int or v < lo:
            self.bad(name, v, f"an integer >= {lo}")
        return v

    def number(self, name: str, positive: bool = True) -> float:
        v = self.get(name)
        if type(v) not in (int, float) or not math.isfinite(v) or (positive and v <= 0):
            self.bad(name, v, "a positive number" if positive else "a number")
        return float(v)

    def boolean(self, name: str) -> bool:
        v = self.get(name)
        if type(v) is not bool:
            self.bad(name, v, "true or false")
        return v

    def choice(self, name: str, choices: tuple, why: str) -> str:
        v = self.get(name)
        if not isinstance(v, str):
            self.bad(name, v, "a string")
        if v not in choices:
            self.refuse(name, v, why)
        return v

    def integers(self, name: str) -> list:
        v = self.get(name)
        if not isinstance(v, list) or not v or any(type(x) is not int or x < 1 for x in v):
            self.bad(name, v, "a non-empty list of positive integers")
        return v

    def strings(self, name: str, n: int) -> list:
        v = self.get(name)
        if not isinstance(v, list) or any(not isinstance(x, str) for x in v):
            self.bad(name, v, "a list of block type names")
        if len(v) != n:
            self.refuse(name, v, f"sdcl's models have one block type per entry of block_out_channels ({n})")
        return v

    def size(self, name: str, fallback: int) -> int:
        """An image size, an int or a square [h, w] (no effect on the numbers: a default for generate's --size)."""
        v = self.get(name)
        if isinstance(v, list) and len(v) == 2 and v[0] == v[1]:
            v = v[0]
        return v if type(v) is int and v > 0 else fallback

    def per_block(self, name: str, n: int, why: str):
        """An int, or a list of n ints: the list kept as a tuple (per_block heads), for heads only."""
        v = self.get(name)
        if type(v) is int and v >= 1:
            return v
        if isinstance(v, list) and len(v) == n and all(type(x) is int and x >= 1 for x in v):
            return tuple(v)
        self.bad(name, v, f"a positive integer or a list of {n} ({why})")

    def same_per_block(self, name: str, n: int, why: str) -> int:
        """An int, or a list of n equal ints (sdcl's models take one value for every block)."""
        v = self.per_block(name, n, why)
        if isinstance(v, tuple):
            if len(set(v)) != 1:
                self.refuse(name, list(v), f"sdcl's models take one {name} for every block")
            v = v[0]
        return v

    def defaults_note(self):
        if self.defaulted:
            values = ", ".join(f"{n} {show(v)}" for n, v in self.defaulted.items())
            self.notes.append(f"{self.rel} lacks {', '.join(self.defaulted)}: {CLASSES[self.comp]}'s default "
                              f"{values} used")


def _unet(f: _Fields) -> UNetConfig:
    boc = f.integers("block_out_channels")
    n = len(boc)
    down, up = f.strings("down_block_types", n), f.strings("up_block_types", n)
    for name, blocks in (("down_block_types", down), ("up_block_types", up)):
        for t in blocks:
            if t not in _UNET_BLOCKS[name]:
                f.refuse(name, t, f"SD's {name.split('_')[0]} blocks are {' and '.join(_UNET_BLOCKS[name])}")
    temb = f.get("time_embedding_dim")
    if temb is not None and temb != 4 * boc[0]:
        f.refuse("time_embedding_dim", temb, f"SD's time embedding has 4 x block_out_channels[0] = {4 * boc[0]} "
                                             "channels")
    groups = f.get("norm_num_groups")
    if groups is None:
        f.refuse("norm_num_groups", groups, "SD normalises with GroupNorm")
    return UNetConfig(
        in_channels=f.integer("in_channels"), out_channels=f.integer("out_channels"),
        block_out_channels=tuple(boc), down_block_types=tuple(down), up_block_types=tuple(up),
        layers_per_block=f.same_per_block("layers_per_block", n, "layers per block"),
        num_heads=f.per_block("attention_head_dim", n, "heads per block"),
        cross_attention_dim=f.same_per_block("cross_attention_dim", n, "the text embedding's width"),
        use_linear_projection=f.boolean("use_linear_projection"), norm_num_groups=f.integer("norm_num_groups"),
        norm_eps=f.number("norm_eps"), flip_sin_to_cos=f.boolean("flip_sin_to_cos"),
        freq_shift=f.integer("freq_shift", lo=0),
        sample_size=f.size("sample_size", UNetConfig.sample_size))


def _vae(f: _Fields) -> VAEConfig:
    boc = f.integers("block_out_channels")
    n = len(boc)
    for name, kind in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
        for t in f.strings(name, n):
            if t != kind:
                f.refuse(name, t, f"SD's VAE {name.split('_')[0]} blocks are {kind}")
    return VAEConfig(in_channels=f.integer("in_channels"), out_channels=f.integer("out_channels"),
                     latent_channels=f.integer("latent_channels"), block_out_channels=tuple(boc),
                     layers_per_block=f.integer("layers_per_block"), norm_num_groups=f.integer("norm_num_groups"),
                     scaling_factor=f.number("scaling_factor"),
                     sample_size=f.size("sample_size", VAEConfig.sample_size))


def _text(f: _Fields, pad_token_id: int) -> TextEncoderConfig:
    vocab = f.integer("vocab_size")
    if vocab != TextEncoderConfig.vocab_size:
        f.refuse("vocab_size", vocab, f"sdcl's tokenizer is CLIP's BPE, {TextEncoderConfig.vocab_size} tokens")
    d, heads = f.integer("hidden_size"), f.integer("num_attention_heads")
    if d % heads:
        f.bad("num_attention_heads", heads, f"a divisor of hidden_size {d}")
    return TextEncoderConfig(
        vocab_size=vocab, hidden_size=d, intermediate_size=f.integer("intermediate_size"),
        num_hidden_layers=f.integer("num_hidden_layers"), num_attention_heads=heads,
        max_position_embeddings=f.integer("max_position_embeddings", lo=2),
        hidden_act=f.choice("hidden_act", _ACTIVATIONS, "SD uses quick_gelu (CLIP) or gelu (OpenCLIP)"),
        layer_norm_eps=f.number("layer_norm_eps"), pad_token_id=pad_token_id)


def _scheduler(f: _Fields) -> SchedulerConfig:
    cls = f.raw.get("_class_name")
    if "clip_sample" not in f.raw and (cls is None or cls in _CLIPPING_CLASSES):
        f.refuse("clip_sample", True, f"sdcl's samplers do not clip the predicted sample (the file has no "
                                      f"clip_sample, and {cls or 'DDIMScheduler'}'s default is true)")
    return SchedulerConfig(
        num_train_timesteps=f.integer("num_train_timesteps"), beta_start=f.number("beta_start"),
        beta_end=f.number("beta_end"),
        beta_schedule=f.choice("beta_schedule", _BETA_SCHEDULES, "sdcl's schedules are linear and scaled_linear"),
        steps_offset=f.integer("steps_offset", lo=0), set_alpha_to_one=f.boolean("set_alpha_to_one"),
        prediction_type=f.choice("prediction_type", _PREDICTION_TYPES, "sdcl's samplers take epsilon or "
                                                                       "v_prediction"),
        timestep_spacing=f.choice("timestep_spacing", _SPACINGS, "sdcl's samplers space timesteps leading, "
                                                                 "linspace or trailing"))


def _check_class(f: _Fields):
    if f.comp in ("unet", "vae") and "_class_name" in f.raw and f.raw["_class_name"] != CLASSES[f.comp]:
        f.refuse("_class_name", f.raw["_class_name"], f"SD's {f.comp} is a {CLASSES[f.comp]}")


def _check_model(f: _Fields, part) -> None:
    """The model the values describe can be built (channels divisible into groups and heads, ...)."""
    shapes = {"unet": unet.param_shapes, "vae": vae.param_shapes, "text_encoder": text_encoder.param_shapes}
    try:
        shapes[f.comp](part)
    except ValueError as e:
        raise CheckpointError(f"{f.path}: describes no model sdcl can build: {e}") from None


def pad_token(folder: str, hidden_act: str) -> tuple:
    """(pad id, note or None): from tokenizer/special_tokens_map.json or tokenizer_config.json, else the family's."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = os.path.join(folder, "tokenizer", name)
        if not os.path.isfile(path):
            continue
        token = read_json(path).get("pad_token")
        if isinstance(token, dict):
            token = token.get("content")
        if token is None:
            continue
        if token not in PAD_TOKENS:
            raise CheckpointError(f"{path}: pad_token {show(token)} is not supported: sdcl's tokenizer pads with "
                                  + " or ".join(repr(t) for t in PAD_TOKENS) + " (SD 1.x, SD 2.x)")
        return PAD_TOKENS[token], None
    token = _FAMILY_PAD[hidden_act]
    family = "SD 1.x" if hidden_act == "quick_gelu" else "SD 2.x"
    return PAD_TOKENS[token], (f"no tokenizer/special_tokens_map.json says the pad token: {family}'s {token!r} "
                               f"(id {PAD_TOKENS[token]}) is used, as for a {hidden_act} text encoder")


def read_component(folder: str, comp: str) -> tuple:
    """(the component's part of the config, notes) from its config.json, which must exist."""
    path = os.path.join(folder, CONFIG_FILES[comp])
    f = _Fields(comp, path, read_json(path))
    _check_class(f)
    if comp == "unet":
        part = _unet(f)
    elif comp == "vae":
        part = _vae(f)
    elif comp == "scheduler":
        part = _scheduler(f)
    else:
        act = f.choice("hidden_act", _ACTIVATIONS, "SD uses quick_gelu (CLIP) or gelu (OpenCLIP)")
        pad, note = pad_token(folder, act)
        part = _text(f, pad)
        if note:
            f.notes.append(note)
    if comp != "scheduler":
        _check_model(f, part)
    f.defaults_note()
    return part, f.notes
