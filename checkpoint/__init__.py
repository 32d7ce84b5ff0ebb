"""Checkpoints: Stable Diffusion weights in safetensors, in the two layouts real weights ship in.

In memory a model is `{"unet": {...}, "vae": {...}, "text_encoder": {...}}`: flat dicts of NumPy arrays keyed by
the diffusers / transformers names that `reference.unet.param_shapes`, `reference.vae.param_shapes` and
`reference.text_encoder.param_shapes` declare (docs/ARCHITECTURE.md). Those three functions are the only source
of the expected keys and shapes; this module adds the on-disk names.

On disk, two layouts:

* **diffusers folder** (`save_diffusers`, or `load_checkpoint(folder, ...)`):
  `unet/diffusion_pytorch_model.safetensors`, `vae/diffusion_pytorch_model.safetensors`, `text_encoder/model.safetensors`, each next to a `config.json`, plus
  `scheduler/scheduler_config.json` and `model_index.json`. The names are the in-memory ones, with three
  tolerances when reading: a sharded `<name>.safetensors.index.json` instead of the single file; text-encoder keys
  without the `text_model.` level (transformers >= 5 writes them so); and the VAE attention names of diffusers
  < 0.15 (`query`, `key`, `value`, `proj_attn`), which the real SD 1.5 / 2.1 repositories still carry. When
  reading, our `SDConfig` is authoritative: `config.json` is only compared with it (a `UserWarning` names the
  fields that disagree) and quoted in error hints.

* **single-file LDM checkpoint** (`save_ldm_checkpoint`, or `load_checkpoint(file.safetensors, ...)`), the layout of
  CompVis / Stability's `v1-5-pruned-emaonly.safetensors` and `v2-1_512-ema-pruned.safetensors`:
  `model.diffusion_model.*` (UNet: `time_embed`, `input_blocks`, `middle_block`, `output_blocks`, `out`),
  `first_stage_model.*` (VAE: `encoder.down.{i}.block.{j}`, `mid.block_1/attn_1/block_2`, `decoder.up.{i}` numbered
  by resolution, i.e. in the reverse of diffusers' `up_blocks` order, and the VAE attention's q/k/v/proj_out as
  1x1 convolutions), `cond_stage_model.*` (SD 1.x: `cond_stage_model.transformer.text_model.*`, the transformers
  names; SD 2.x: OpenCLIP's `cond_stage_model.model.*`, whose `attn.in_proj_weight` stacks q, k and v).
  `ldm_table(config)` spells the mapping out tensor by tensor; it is derived from the block structure the
  config describes (`_unet_modules`, `_vae_modules`, `_text_modules`), module by module, and checked to cover
  every key of `param_shapes` exactly once.

Which text-encoder layout a config has in the LDM file follows from its activation: OpenAI's CLIP ViT-L (SD 1.x)
uses quick_gelu, OpenCLIP's ViT-H (SD 2.x) exact gelu.

Validation: a file must hold every expected tensor with the expected shape and a floating-point dtype, and
nothing else except the keys of the one allow-list `IGNORED_KEYS`. Anything else raises `CheckpointError`
(a `ValueError`) whose message names the file and lists every offending key, grouped (missing / unexpected /
wrong shape / not floating point), with a hint when the file fits another known config (`find_family`). A
truncated, empty or non-safetensors file raises `CheckpointError` naming the file and the cause.

dtype: arrays are converted to the `dtype=` asked for (float32 by default) in one place, `_to_float`, from
whatever float type the file stores (F64, F32, F16, BF16). Saving keeps each array's dtype unless `dtype=` says
otherwise.

Memory: files are parsed header-first, then read one tensor at a time straight into its own array (converted
there if the dtype differs); writers stream tensor by tensor. Peak memory is the weights plus one tensor, so
the 865M-parameter SD 2.1 UNet loads without a second copy of the model.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from sdcl.reference.configs import CONFIGS, SDConfig

COMPONENTS = ("unet", "vae", "text_encoder")


class CheckpointError(ValueError):
    """Weights that cannot be read, or written, as the model the config describes. The message names the file
    and every offending key."""


# ----------------------------------------------------------------------------------------------- the allow-list

# Keys real checkpoints carry that Stable Diffusion inference does not read: the ONE list of what loading skips
# silently. (scope, fnmatch pattern, why). scope "ldm" is the single-file checkpoint; "unet" / "vae" /
# "text_encoder" are the files of a diffusers folder (patterns match the in-memory name). In patterns,
# {n_layers} is the number of text-encoder layers the config runs.
IGNORED_KEYS = (
    # ldm's LatentDiffusion registers its DDPM schedule as buffers; our schedulers rebuild it from SchedulerConfig.
    ("ldm", "betas", "DDPM schedule buffer"),
    ("ldm", "alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "alphas_cumprod_prev", "DDPM schedule buffer"),
    ("ldm", "sqrt_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "sqrt_one_minus_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "log_one_minus_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "sqrt_recip_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "sqrt_recipm1_alphas_cumprod", "DDPM schedule buffer"),
    ("ldm", "posterior_variance", "DDPM schedule buffer"),
    ("ldm", "posterior_log_variance_clipped", "DDPM schedule buffer"),
    ("ldm", "posterior_mean_coef1", "DDPM schedule buffer"),
    ("ldm", "posterior_mean_coef2", "DDPM schedule buffer"),
    ("ldm", "logvar", "training-loss weights over timesteps, present in some checkpoints"),
    ("ldm", "lvlb_weights", "training-loss weights over timesteps, present in some checkpoints"),
    # The EMA copy of the UNet (flattened names, model_ema.diffusion_modelinput_blocks00weight) in the non-pruned
    # files, and the EMA counters model_ema.decay / model_ema.num_updates the pruned files keep. The in-file
    # model.diffusion_model.* weights are what is loaded.
    ("ldm", "model_ema.*", "EMA bookkeeping"),
    # The autoencoder's training loss (LPIPS, discriminator): LatentDiffusion deletes it, but checkpoints with a
    # VAE merged in by key copying carry it.
    ("ldm", "first_stage_model.loss.*", "VAE training loss"),
    # transformers < 4.31 saved CLIP's position_ids buffer (arange(77), int64).
    ("ldm", "cond_stage_model.transformer.text_model.embeddings.position_ids", "CLIP position_ids buffer"),
    ("text_encoder", "text_model.embeddings.position_ids", "CLIP position_ids buffer"),
    # OpenCLIP's contrastive head, unused for conditioning.
    ("ldm", "cond_stage_model.model.text_projection", "OpenCLIP contrastive projection"),
    ("ldm", "cond_stage_model.model.logit_scale", "OpenCLIP contrastive temperature"),
    # SD 2.x conditions on the penultimate layer of OpenCLIP's 24: the 24th block is stored but never run.
    ("ldm", "cond_stage_model.model.transformer.resblocks.{n_layers}.*", "OpenCLIP block after the last one run"),
)


def _is_ignored(key: str, scope: str, config: SDConfig) -> bool:
    n_layers = config.text_encoder.num_hidden_layers
    return any(s == scope and fnmatch.fnmatchcase(key, pattern.format(n_layers=n_layers))
               for s, pattern, _ in IGNORED_KEYS)


# ------------------------------------------------------------------------------------------- safetensors files

# safetensors dtype name -> NumPy dtype of the stored (little-endian) bytes. BF16 is read as its raw 16 bits and
# widened in _to_float; F8 types are listed for their size only (they are not accepted as weights).
_ST_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"), "F8_E4M3": np.dtype("u1"), "F8_E5M2": np.dtype("u1"),
}
_FLOAT_CODES = ("F64", "F32", "F16", "BF16")
_WRITE_CODES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
_MAX_HEADER = 100_000_000  # the safetensors format's own bound on the header size


@dataclass(frozen=True)
class _Tensor:
    dtype: str     # safetensors dtype name
    shape: tuple
    begin: int     # absolute byte offsets in the file
    end: int


class _SafetensorsFile:
    """A safetensors file, opened lazily: the header is parsed and checked in full up front (so a malformed or
    truncated file fails here, naming itself), tensors are then read one at a time on request. Use as a
    context manager."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fh = None
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise self._error(f"{size} bytes, too short to hold the 8-byte header length")
                n = int.from_bytes(head, "little")
                if n > _MAX_HEADER or 8 + n > size:
                    raise self._error(f"the header length field says {n} bytes but the file has {size}: "
                                      "truncated, or not a safetensors file")
                raw = f.read(n)
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot read: {e}") from e
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise self._error(f"its header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise self._error("its header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict):
            raise self._error("its __metadata__ is not a JSON object")
        self.metadata = metadata
        self.size = size
        data_start = 8 + n
        self.tensors: dict[str, _Tensor] = {}
        bad = []
        for key, info in header.items():
            try:
                code, shape, (b, e) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
                ok = (isinstance(code, str) and all(isinstance(d, int) and d >= 0 for d in shape)
                      and isinstance(b, int) and isinstance(e, int) and 0 <= b <= e)
            except (TypeError, KeyError, ValueError):
                ok = False
            if not ok:
                bad.append(f"{key}: malformed entry {info!r}")
                continue
            if code in _ST_DTYPES and e - b != math.prod(shape) * _ST_DTYPES[code].itemsize:
                bad.append(f"{key}: {e - b} bytes of data for a {code} tensor of shape {shape}")
                continue
            self.tensors[key] = _Tensor(code, shape, data_start + b, data_start + e)
        if bad:
            raise self._error("its header is malformed:\n  " + "\n  ".join(bad))
        end = max((t.end for t in self.tensors.values()), default=data_start)
        if end > size:
            beyond = sorted((k for k, t in self.tensors.items() if t.end > size), key=_natural)
            raise self._error(f"truncated: the header describes {end - data_start} bytes of tensor data but only "
                              f"{size - data_start} follow it; {len(beyond)} of {len(self.tensors)} tensors lie "
                              f"(partly) past the end of the file, e.g. {beyond[0]}")
        # The format requires the data to be tiled exactly, without holes, overlaps or trailing bytes.
        pos = data_start
        for key, t in sorted(self.tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
            if t.begin != pos:
                raise self._error(f"malformed: tensor {key} starts at byte {t.begin}, expected {pos} "
                                  "(the data must be laid out without holes or overlaps)")
            pos = t.end
        if pos != size:
            raise self._error(f"malformed: {size - pos} bytes follow the last tensor's data")

    def _error(self, cause: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: not a valid safetensors file: {cause}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def shapes(self) -> dict:
        return {k: t.shape for k, t in self.tensors.items()}

    def read(self, key: str, dtype) -> np.ndarray:
        """The tensor as a new, owned, C-contiguous array of floating `dtype`. The bytes are read straight into
        a fresh array (no memory map: mapped pages would count against the process until it exits)."""
        t = self.tensors[key]
        if t.dtype not in _FLOAT_CODES:
            raise CheckpointError(f"{self.path}: {key} is {t.dtype}, not a floating-point tensor")
        if self._fh is None:
            self._fh = open(self.path, "rb")
        raw = np.empty(t.shape, dtype=_ST_DTYPES[t.dtype])
        view = memoryview(raw.reshape(-1).view(np.uint8))
        self._fh.seek(t.begin)
        done = 0
        while done < len(view):
            n = self._fh.readinto(view[done:])
            if not n:
                raise CheckpointError(f"{self.path}: the file ended inside {key} (was it changed while reading?)")
            done += n
        return _to_float(raw, t.dtype, dtype)


def _to_float(raw: np.ndarray, code: str, dtype) -> np.ndarray:
    """The one place the file's dtype becomes the in-memory dtype: an explicit conversion of the array just
    read (returned as is when the file already holds `dtype`)."""
    if code == "BF16":  # bfloat16 is the upper half of an IEEE float32: widening is exact
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(dtype, order="C", copy=False)


def _write_safetensors(path: str, entries: list, metadata: dict) -> None:
    """Stream a safetensors file: entries are (name, NumPy dtype, shape, produce) and produce() returns the array,
    made only when its bytes are written. Written to a temporary name and renamed, so a failed write leaves no
    partial file under `path`."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, dt, shape, _ in entries:
        nbytes = math.prod(shape) * dt.itemsize
        header[name] = {"dtype": _WRITE_CODES[dt], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the format pads the header with spaces to a multiple of 8 bytes
    tmp = path + ".partial"
    try:
        with open(tmp, "wb") as f:
            f.write(len(blob).to_bytes(8, "little"))
            f.write(blob)
            for name, dt, shape, produce in entries:
                a = np.ascontiguousarray(produce(), dtype=dt.newbyteorder("<"))
                if a.shape != tuple(shape):
                    raise CheckpointError(f"{path}: {name} has shape {a.shape}, header says {tuple(shape)}")
                f.write(a.reshape(-1).view(np.uint8))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------------------------------------- validation

def expected_shapes(config: SDConfig, components=COMPONENTS) -> dict:
    """{component: {key: shape}}: what the models read, from their own param_shapes (imported here, lazily)."""
    out = {}
    for comp in components:
        if comp == "unet":
            from sdcl.reference.unet import param_shapes
            shapes = param_shapes(config.unet)
        elif comp == "vae":
            from sdcl.reference.vae import param_shapes
            shapes = param_shapes(config.vae)
        elif comp == "text_encoder":
            from sdcl.reference.text_encoder import param_shapes
            shapes = param_shapes(config.text_encoder)
        else:
            raise ValueError(f"unknown component {comp!r}; choose from {', '.join(COMPONENTS)}")
        out[comp] = {k: tuple(int(d) for d in s) for k, s in shapes.items()}
    return out


def _natural(key: str):
    """Sort key that orders input_blocks.2 before input_blocks.10."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", key)]


@dataclass
class Problems:
    """What is wrong with a set of tensors, by kind; each entry names a key (and what was expected)."""
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    wrong_shape: list = field(default_factory=list)
    not_float: list = field(default_factory=list)

    def __bool__(self):
        return bool(self.missing or self.unexpected or self.wrong_shape or self.not_float)

    def lines(self, indent: str = "  ") -> list:
        groups = (("missing", self.missing), ("unexpected", self.unexpected), ("wrong shape", self.wrong_shape),
                  ("not floating point", self.not_float))
        return [f"{indent}{title} ({len(items)}): " + ", ".join(sorted(items, key=_natural))
                for title, items in groups if items]


def find_problems(expected: dict, shapes: dict, dtypes: dict | None = None, ignore=None) -> Problems:
    """Compare found tensors ({key: shape}, and optionally {key: safetensors dtype name or NumPy dtype}) with the
    expected {key: shape}; keys for which ignore(key) is true are not reported as unexpected."""
    p = Problems()
    for key, shape in shapes.items():
        if key in expected:
            if tuple(shape) != tuple(expected[key]):
                p.wrong_shape.append(f"{key}: expected {tuple(expected[key])}, got {tuple(shape)}")
            if dtypes is not None and not _is_float(dtypes[key]):
                p.not_float.append(f"{key}: {dtypes[key]}")
        elif ignore is None or not ignore(key):
            p.unexpected.append(key)
    p.missing = [k for k in expected if k not in shapes]
    return p


def _is_float(dt) -> bool:
    if dt is None:
        return False
    if isinstance(dt, str) and dt in _ST_DTYPES:
        return dt in _FLOAT_CODES
    try:
        return np.dtype(dt).kind == "f"
    except TypeError:
        return False


def check_shapes(expected: dict, arrays: dict, what: str) -> None:
    """Raise CheckpointError listing every missing, unexpected, mis-shaped or non-float entry of the flat
    {key: array} `arrays` (anything with .shape and .dtype: NumPy or pyopencl arrays) against {key: shape}.
    The models' own weight checks can delegate here."""
    p = find_problems(expected, {k: tuple(a.shape) for k, a in arrays.items()},
                      {k: getattr(a, "dtype", None) for k, a in arrays.items()})
    if p:
        raise CheckpointError(f"{what} do not match the model:\n" + "\n".join(p.lines()))


def check_weights(weights: dict, config: SDConfig, components=COMPONENTS, what: str = "weights") -> None:
    """Raise CheckpointError listing everything wrong with an in-memory {component: {key: array}} for `config`."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"{what}: expected a dict {{component: {{key: array}}}}, got {type(weights).__name__}")
    absent = [c for c in components if c not in weights]
    if absent:
        raise CheckpointError(f"{what}: missing component(s) {', '.join(absent)}; expected {', '.join(components)}")
    expected = expected_shapes(config, components)
    report = []
    for comp in components:
        arrays = weights[comp]
        p = find_problems(expected[comp], {k: tuple(np.shape(a)) for k, a in arrays.items()},
                          {k: getattr(a, "dtype", None) for k, a in arrays.items()})
        if p:
            report.append(f" {comp}:")
            report += p.lines("  ")
    if report:
        raise CheckpointError(f"{what} do not match config {config.name!r}:\n" + "\n".join(report))


# ----------------------------------------------------------------------------------------- the LDM key mapping

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
                                      "reference/checkpoint.py does not cover what param_shapes declares")
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


def _ldm_component(key: str):
    for prefix, comp in _LDM_PREFIXES.items():
        if key.startswith(prefix):
            return comp
    return None


def _ldm_problems(shapes: dict, dtypes: dict, config: SDConfig, components, table=None) -> Problems:
    table = ldm_table(config, components) if table is None else table

    def ignore(key):
        comp = _ldm_component(key)
        return _is_ignored(key, "ldm", config) or (comp is not None and comp not in components)

    return find_problems({k: e.shape for k, e in table.items()}, shapes, dtypes, ignore)


# ------------------------------------------------------------------------------------------- family detection

def _features_of_config(config: SDConfig) -> dict:
    return {"text encoder": "OpenCLIP" if text_layout(config) == "open_clip" else "CLIP",
            "UNet proj_in": "linear" if config.unet.use_linear_projection else "1x1 conv",
            "cross_attention_dim": config.unet.cross_attention_dim}


def _features_of_unet(shapes: dict, prefix: str) -> dict:
    f = {}
    for key, shape in shapes.items():
        if key.startswith(prefix) and key.endswith("proj_in.weight") and len(shape) in (2, 4):
            f["UNet proj_in"] = "linear" if len(shape) == 2 else "1x1 conv"
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight") and len(shape) == 2:
            f["cross_attention_dim"] = shape[1]
    return f


def _features_of_ldm(shapes: dict) -> dict:
    f = _features_of_unet(shapes, "model.diffusion_model.")
    if any(k.startswith("cond_stage_model.model.") for k in shapes):
        f["text encoder"] = "OpenCLIP"
    elif any(k.startswith("cond_stage_model.transformer.") for k in shapes):
        f["text encoder"] = "CLIP"
    return f


def _hint(config: SDConfig, matches: list, found: dict) -> str:
    """A line suggesting the config the checkpoint fits, or naming how its architecture differs from config's."""
    others = [name for name in matches if name != config.name]
    if others:
        return f"hint: the checkpoint matches config {others[0]!r}; load it with that config"
    wanted = _features_of_config(config)
    differ = {k: v for k, v in found.items() if k in wanted and wanted[k] != v}
    if not differ:
        return ""
    fits = [name for name, c in CONFIGS.items()
            if all(_features_of_config(c).get(k) == v for k, v in found.items())]
    line = ("hint: the checkpoint has " + ", ".join(f"{k} {v}" for k, v in differ.items()) +
            f" where config {config.name!r} has " + ", ".join(f"{k} {wanted[k]}" for k in differ))
    sd2 = found.get("text encoder") == "OpenCLIP" or found.get("UNet proj_in") == "linear"
    line += f": it looks like an SD {'2' if sd2 else '1'}.x checkpoint"
    return line + (f"; try config {' or '.join(repr(n) for n in fits)}" if fits else "")


def find_family(path) -> str | None:
    """Name of the first config in reference.configs.CONFIGS whose keys and shapes the checkpoint (LDM file or
    diffusers folder) matches exactly, or None. Reads headers only."""
    matches = _matching_configs(os.fspath(path))
    return matches[0] if matches else None


def _matching_configs(path: str) -> list:
    if os.path.isdir(path):
        files = _open_diffusers(path, COMPONENTS, None)
        try:
            found = {c: _diffusers_view(c, files[c])[0] for c in COMPONENTS}
        finally:
            _close_all(files)
        return [name for name, cfg in CONFIGS.items()
                if not any(_diffusers_problems(c, found[c], cfg) for c in COMPONENTS)]
    with _SafetensorsFile(path) as f:
        shapes, dtypes = f.shapes(), {k: t.dtype for k, t in f.tensors.items()}
    return [name for name, cfg in CONFIGS.items() if not _ldm_problems(shapes, dtypes, cfg, COMPONENTS)]


# ------------------------------------------------------------------------------------------------- loading

def load_checkpoint(path, config: SDConfig, dtype=np.float32, components=COMPONENTS,
                    variant: str | None = None) -> dict:
    """Read Stable Diffusion weights for `config` from a single-file LDM checkpoint (a .safetensors file) or a
    diffusers folder (a directory), into {component: {key: array of dtype}} with the in-memory (diffusers)
    names. `components` selects what to read (the rest of the file is not looked at); `variant` picks
    diffusers' `<name>.<variant>.safetensors` (e.g. "fp16"). Raises CheckpointError for anything that does not
    match `config` exactly (bar IGNORED_KEYS) and for unreadable files."""
    path = os.fspath(path)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    components = (components,) if isinstance(components, str) else tuple(components)
    for comp in components:
        if comp not in COMPONENTS:
            raise ValueError(f"unknown component {comp!r}; choose from {', '.join(COMPONENTS)}")
    if os.path.isdir(path):
        return _load_diffusers(path, config, dtype, components, variant)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file or folder")
    if path.lower().endswith((".ckpt", ".pt", ".pth", ".bin")):
        raise CheckpointError(f"{path}: pickled PyTorch checkpoints are not read (unsafe, and need torch); "
                              "convert it to .safetensors")
    return _load_ldm(path, config, dtype, components)


def _load_ldm(path: str, config: SDConfig, dtype, components) -> dict:
    table = ldm_table(config, components)
    with _SafetensorsFile(path) as f:
        shapes, dtypes = f.shapes(), {k: t.dtype for k, t in f.tensors.items()}
        problems = _ldm_problems(shapes, dtypes, config, components, table)
        if problems:
            matches = [n for n, c in CONFIGS.items() if not _ldm_problems(shapes, dtypes, c, COMPONENTS)]
            hint = _hint(config, matches, _features_of_ldm(shapes))
            if not any(_ldm_component(k) for k in shapes):
                hint = ("hint: no key has an LDM prefix (model.diffusion_model., first_stage_model., "
                        "cond_stage_model.); a diffusers component file is read by passing its folder's parent")
            raise CheckpointError(f"{path}: single-file LDM checkpoint does not match config {config.name!r}:\n" +
                                  "\n".join(problems.lines() + ([hint] if hint else [])))
        loaded = {comp: {} for comp in components}
        for entry in sorted(table.values(), key=lambda e: f.tensors[e.key].begin):  # file order: sequential reads
            arr = f.read(entry.key, dtype)
            rows = np.cumsum([s[0] for s in entry.part_shapes])[:-1]
            pieces = np.split(arr, rows, axis=0) if len(entry.parts) > 1 else [arr]
            for key, shape, piece in zip(entry.parts, entry.part_shapes, pieces):
                loaded[entry.component][key] = piece.reshape(shape)
            del arr, pieces
    expected = expected_shapes(config, components)
    return {comp: {k: loaded[comp][k] for k in expected[comp]} for comp in components}


# diffusers folder: component -> (subfolder, file stem)
_DIFFUSERS_FILES = {"unet": ("unet", "diffusion_pytorch_model"), "vae": ("vae", "diffusion_pytorch_model"),
                    "text_encoder": ("text_encoder", "model")}
# transformers >= 5 saves CLIPTextModel without the text_model. level; these are its top-level modules.
_CLIP_TOP_LEVEL = ("embeddings.", "encoder.", "final_layer_norm.")
# diffusers < 0.15 named the VAE attention projections query / key / value / proj_attn.
_OLD_VAE_ATTENTION = re.compile(r"((?:en|de)coder\.mid_block\.attentions\.\d+\.)(query|key|value|proj_attn)\.")
_OLD_VAE_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _diffusers_name(comp: str, key: str) -> str:
    """A key of a diffusers-folder file -> the in-memory name."""
    if comp == "text_encoder" and key.startswith(_CLIP_TOP_LEVEL):
        return "text_model." + key
    if comp == "vae":
        return _OLD_VAE_ATTENTION.sub(lambda m: m.group(1) + _OLD_VAE_NAMES[m.group(2)] + ".", key)
    return key


def _open_diffusers(folder: str, components, variant) -> dict:
    """{component: (label, [(file, [keys])...])}: the safetensors files holding each component, opened."""
    opened = {}
    try:
        for comp in components:
            opened[comp] = _open_component(folder, comp, variant)
    except BaseException:
        _close_all(opened)
        raise
    return opened


def _close_all(opened: dict) -> None:
    for _, files in opened.values():
        for f, _ in files:
            f.close()


def _open_component(folder: str, comp: str, variant):
    sub, stem = _DIFFUSERS_FILES[comp]
    name = f"{stem}.{variant}.safetensors" if variant else f"{stem}.safetensors"
    single = os.path.join(folder, sub, name)
    index = single + ".index.json"
    if os.path.isfile(single):
        f = _SafetensorsFile(single)
        return single, [(f, list(f.tensors))]
    if not os.path.isfile(index):
        there = sorted(os.listdir(os.path.join(folder, sub))) if os.path.isdir(os.path.join(folder, sub)) else None
        raise CheckpointError(f"{folder}: diffusers folder has no {comp} weights: neither {single} nor {index} "
                              f"exists" + (f" ({sub}/ holds: {', '.join(there) or 'nothing'})" if there is not None
                                           else f" (no {sub}/ subfolder)"))
    try:
        with open(index, encoding="utf-8") as fh:
            weight_map = json.load(fh)["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError("weight_map is not a {key: file name} object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a valid safetensors index: {e!r}") from None
    files, holder, bad = [], {}, []
    try:
        for shard in sorted(set(weight_map.values())):
            if os.path.basename(shard) != shard:
                raise CheckpointError(f"{index}: shard name {shard!r} is not a plain file name")
            f = _SafetensorsFile(os.path.join(folder, sub, shard))
            files.append((f, list(f.tensors)))
            for key in f.tensors:
                if key in holder:
                    bad.append(f"{key} is in both {holder[key]} and {shard}")
                holder[key] = shard
        for key, shard in weight_map.items():
            if key not in holder:
                bad.append(f"{key}: the index puts it in {shard}, which lacks it")
            elif holder[key] != shard:
                bad.append(f"{key}: the index puts it in {shard}, but it is in {holder[key]}")
        if bad:
            raise CheckpointError(f"{index}: the shards do not match the index:\n  " + "\n  ".join(bad))
    except BaseException:
        for f, _ in files:
            f.close()
        raise
    return index, files


def _diffusers_view(comp: str, opened):
    """(in-memory name -> shape, -> dtype, -> (file, file key)) for one component's files, plus name clashes."""
    label, files = opened
    shapes, dtypes, where, clashes = {}, {}, {}, []
    for f, keys in files:
        for key in keys:
            name = _diffusers_name(comp, key)
            if name in where:
                clashes.append(f"{key} and {where[name][1]} both give {name}")
            shapes[name], dtypes[name], where[name] = f.tensors[key].shape, f.tensors[key].dtype, (f, key)
    return (shapes, dtypes, clashes), where


def _diffusers_problems(comp: str, view, config: SDConfig) -> Problems:
    shapes, dtypes, clashes = view
    expected = expected_shapes(config, (comp,))[comp]
    p = find_problems(expected, shapes, dtypes, lambda k: _is_ignored(k, comp, config))
    p.unexpected += [f"(duplicate) {c}" for c in clashes]
    return p


def _load_diffusers(folder: str, config: SDConfig, dtype, components, variant) -> dict:
    opened = _open_diffusers(folder, components, variant)
    try:
        views, report, found = {}, [], {}
        for comp in components:
            views[comp] = _diffusers_view(comp, opened[comp])
            p = _diffusers_problems(comp, views[comp][0], config)
            found.update(_features_of_unet(views[comp][0][0], "") if comp == "unet" else {})
            if p:
                report.append(f" {opened[comp][0]}:")
                report += p.lines("  ")
        if report:
            matches = []
            if set(components) == set(COMPONENTS):
                matches = [n for n, c in CONFIGS.items()
                           if not any(_diffusers_problems(k, views[k][0], c) for k in components)]
            hint = _hint(config, matches, found)
            notes = _config_json_differences(folder, config, components)
            raise CheckpointError(f"{folder}: diffusers folder does not match config {config.name!r}:\n" +
                                  "\n".join(report + ([hint] if hint else []) +
                                            [f"note: {n}" for n in notes]))
        notes = _config_json_differences(folder, config, components)
        if notes:
            warnings.warn(f"{folder}: config.json disagrees with config {config.name!r}, which is used: " +
                          "; ".join(notes), stacklevel=3)
        expected = expected_shapes(config, components)
        out = {}
        for comp in components:
            where = views[comp][1]
            out[comp] = {}
            for key in expected[comp]:
                f, file_key = where[key]
                out[comp][key] = f.read(file_key, dtype)
        return out
    finally:
        _close_all(opened)


# ------------------------------------------------------------------------------------------- config files

_DIFFUSERS_VERSION = "0.42.1"  # the diffusers these folders were checked against (tests/test_checkpoint.py)


def diffusers_configs(config: SDConfig) -> dict:
    """The config.json contents of a diffusers folder for `config`: {"unet", "vae", "text_encoder",
    "scheduler", "model_index"}. Only what the classes need; everything else takes diffusers' defaults."""
    u, v, t, s = config.unet, config.vae, config.text_encoder, config.scheduler
    n = len(v.block_out_channels)
    heads = u.num_heads if isinstance(u.num_heads, int) else list(u.num_heads)
    return {
        "unet": {"_class_name": "UNet2DConditionModel", "_diffusers_version": _DIFFUSERS_VERSION,
                 "sample_size": u.sample_size, "in_channels": u.in_channels, "out_channels": u.out_channels,
                 "down_block_types": list(u.down_block_types), "up_block_types": list(u.up_block_types),
                 "mid_block_type": "UNetMidBlock2DCrossAttn", "block_out_channels": list(u.block_out_channels),
                 "layers_per_block": u.layers_per_block, "attention_head_dim": heads,
                 "cross_attention_dim": u.cross_attention_dim, "use_linear_projection": u.use_linear_projection,
                 "norm_num_groups": u.norm_num_groups, "norm_eps": u.norm_eps, "act_fn": "silu",
                 "flip_sin_to_cos": u.flip_sin_to_cos, "freq_shift": u.freq_shift, "center_input_sample": False,
                 "downsample_padding": 1, "mid_block_scale_factor": 1},
        "vae": {"_class_name": "AutoencoderKL", "_diffusers_version": _DIFFUSERS_VERSION,
                "in_channels": v.in_channels, "out_channels": v.out_channels, "latent_channels": v.latent_channels,
                "down_block_types": ["DownEncoderBlock2D"] * n, "up_block_types": ["UpDecoderBlock2D"] * n,
                "block_out_channels": list(v.block_out_channels), "layers_per_block": v.layers_per_block,
                "norm_num_groups": v.norm_num_groups, "act_fn": "silu", "sample_size": v.sample_size,
                "scaling_factor": v.scaling_factor},
        "text_encoder": {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **asdict(t)},
        "scheduler": {"_class_name": "DDIMScheduler", "_diffusers_version": _DIFFUSERS_VERSION, **asdict(s),
                      "clip_sample": False},
        "model_index": {"_class_name": "StableDiffusionPipeline", "_diffusers_version": _DIFFUSERS_VERSION,
                        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                        "text_encoder": ["transformers", "CLIPTextModel"], "scheduler": ["diffusers", "DDIMScheduler"],
                        "tokenizer": [None, None], "safety_checker": [None, None],
                        "feature_extractor": [None, None], "requires_safety_checker": False},
    }


# The config.json fields compared with our config when reading a folder: the architecture, not the token ids
# (the real SD text_encoder/config.json files carry CLIPTextConfig's defaults there) nor sample sizes.
_COMPARED_FIELDS = {
    "unet": ("_class_name", "in_channels", "out_channels", "down_block_types", "up_block_types",
             "block_out_channels", "layers_per_block", "attention_head_dim", "cross_attention_dim",
             "use_linear_projection", "norm_num_groups", "norm_eps", "flip_sin_to_cos", "freq_shift"),
    "vae": ("_class_name", "in_channels", "out_channels", "latent_channels", "block_out_channels",
            "layers_per_block", "norm_num_groups", "scaling_factor"),
    "text_encoder": ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings", "hidden_act", "layer_norm_eps"),
}


def _config_json_differences(folder: str, config: SDConfig, components) -> list:
    ours = diffusers_configs(config)
    notes = []
    for comp in components:
        path = os.path.join(folder, _DIFFUSERS_FILES[comp][0], "config.json")
        try:
            with open(path, encoding="utf-8") as fh:
                theirs = json.load(fh)
        except (OSError, ValueError):
            continue
        if not isinstance(theirs, dict):
            continue
        for name in _COMPARED_FIELDS[comp]:
            if name in theirs and json.dumps(theirs[name]) != json.dumps(ours[comp][name]):
                notes.append(f"{_DIFFUSERS_FILES[comp][0]}/config.json has {name}={json.dumps(theirs[name])}, "
                             f"config {config.name!r} {json.dumps(ours[comp][name])}")
    return notes


def _write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


# ------------------------------------------------------------------------------------------------- saving

def _out_dtype(arr, dtype) -> np.dtype:
    dt = np.dtype(arr.dtype if dtype is None else dtype)
    if dt not in _WRITE_CODES:
        raise CheckpointError(f"cannot store {dt} in a checkpoint; use float16, float32 or float64")
    return dt


def save_ldm_checkpoint(weights: dict, config: SDConfig, path, dtype=None) -> None:
    """Write {component: {key: array}} as a single-file LDM checkpoint (.safetensors) for `config`. Arrays keep
    their dtype unless `dtype` is given. Writes exactly the tensors the models read (ldm_table): no schedule
    buffers, no EMA, and for SD 2.x only the OpenCLIP blocks that run, without text_projection / logit_scale."""
    path = os.fspath(path)
    check_weights(weights, config, what="weights to save")
    table = ldm_table(config)

    def produce(entry):
        arrays = [np.asarray(weights[entry.component][k]) for k in entry.parts]
        stacked = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        return stacked.reshape(entry.shape)

    entries = []
    for key in sorted(table, key=_natural):
        entry = table[key]
        dts = {_out_dtype(weights[entry.component][k], dtype) for k in entry.parts}
        if len(dts) != 1:
            raise CheckpointError(f"{entry.parts} are stacked into {key} but have different dtypes {dts}")
        entries.append((key, dts.pop(), entry.shape, lambda e=entry: produce(e)))
    _write_safetensors(path, entries, {"format": "pt"})


def save_diffusers(weights: dict, config: SDConfig, folder, dtype=None) -> None:
    """Write {component: {key: array}} as a diffusers folder: the three weight files (in-memory names, the
    transformers 4.x `text_model.` names for the text encoder), their config.json files, a DDIM scheduler
    config and model_index.json (no tokenizer: load one separately). Arrays keep their dtype unless `dtype`."""
    folder = os.fspath(folder)
    check_weights(weights, config, what="weights to save")
    expected = expected_shapes(config)
    configs = diffusers_configs(config)
    os.makedirs(folder, exist_ok=True)
    for comp in COMPONENTS:
        sub, stem = _DIFFUSERS_FILES[comp]
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        arrays = weights[comp]
        entries = [(key, _out_dtype(arrays[key], dtype), expected[comp][key], lambda a=arrays[key]: a)
                   for key in expected[comp]]
        _write_safetensors(os.path.join(folder, sub, f"{stem}.safetensors"), entries, {"format": "pt"})
        _write_json(os.path.join(folder, sub, "config.json"), configs[comp])
    _write_json(os.path.join(folder, "scheduler", "scheduler_config.json"), configs["scheduler"])
    _write_json(os.path.join(folder, "model_index.json"), configs["model_index"])
