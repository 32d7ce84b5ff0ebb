"""The Stable Diffusion UNet (diffusers `UNet2DConditionModel`, SD 1.x and SD 2.x), written against an ops namespace.

SD 1.x: 1x1-convolution proj_in / proj_out around each transformer and a fixed head count (8).
SD 2.x: linear proj_in / proj_out and 64-channel heads, i.e. a head count per block (5, 10, 20, 20).
Both come from `UNetConfig` (`use_linear_projection`, `num_heads`).

The model code uses only `ops.<op>(...)`, `.shape`, `.reshape(...)` of contiguous activations and slicing along the
first axis (see docs/ARCHITECTURE.md); the timestep is host data (a number or a NumPy array), or an (N,) array of
the ops' own in `timestep_dtype` (a recorded UNet step takes it as an input: sdcl.opencl_impl.replay).

Latent sizes need not be multiples of 2 ** (number of upsamplers): each stride-2 downsampler maps a side s to
ceil(s / 2), and, as diffusers does when a side is not a multiple, each upsampler resizes (nearest) to the size of
the skip connection it is about to meet, which is 2 * side or 2 * side - 1. Nearest resizing from n to 2n - 1 picks
source index floor(i * n / (2n - 1)) = floor(i / 2) for every i < 2n - 1, so it equals nearest 2x upsampling
followed by dropping the last row / column; the crop is done with ops.permute and first-axis slicing (`_crop_to`).
"""

from __future__ import annotations

import numpy as np

import sdcl.reference.ops as _reference_ops
from sdcl.reference.configs import UNetConfig
from sdcl.reference.validation import check_shapes
from sdcl.reference.weights import random_weights

ATTN_GROUP_NORM_EPS = 1e-6   # Transformer2DModel's GroupNorm
LAYER_NORM_EPS = 1e-5        # BasicTransformerBlock's LayerNorms
FF_MULT = 4                  # GEGLU feed-forward inner size = 4 * channels

_DOWN_TYPES = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}   # type -> has attention
_UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}


# ------------------------------------------------------------------------------------------ architecture as data

def _heads_per_block(cfg: UNetConfig) -> list:
    n = len(cfg.block_out_channels)
    heads = [cfg.num_heads] * n if isinstance(cfg.num_heads, int) else list(cfg.num_heads)
    if len(heads) != n:
        raise ValueError(f"UNetConfig: num_heads {cfg.num_heads} must be an int or one value per block ({n})")
    return heads


def _plan(cfg: UNetConfig) -> dict:
    """The block structure both `param_shapes` and `UNet` follow: per block, its resnets' (in, out) channels,
    its attention head count (None: no attention) and whether it ends in a down/up sampler."""
    boc = list(cfg.block_out_channels)
    n = len(boc)
    if not (len(cfg.down_block_types) == len(cfg.up_block_types) == n):
        raise ValueError(f"UNetConfig: {n} block_out_channels need as many down and up block types, got "
                         f"{len(cfg.down_block_types)} and {len(cfg.up_block_types)}")
    for t in cfg.down_block_types:
        if t not in _DOWN_TYPES:
            raise ValueError(f"UNetConfig: unsupported down block type {t!r}; supported: {', '.join(_DOWN_TYPES)}")
    for t in cfg.up_block_types:
        if t not in _UP_TYPES:
            raise ValueError(f"UNetConfig: unsupported up block type {t!r}; supported: {', '.join(_UP_TYPES)}")
    heads = _heads_per_block(cfg)
    for c in boc:
        if c % cfg.norm_num_groups:
            raise ValueError(f"UNetConfig: channels {c} not divisible by norm_num_groups {cfg.norm_num_groups}")

    down, prev = [], boc[0]
    for i, (t, c) in enumerate(zip(cfg.down_block_types, boc)):
        resnets = [(prev if j == 0 else c, c) for j in range(cfg.layers_per_block)]
        down.append(dict(resnets=resnets, heads=heads[i] if _DOWN_TYPES[t] else None, sample=i < n - 1, ch=c))
        prev = c

    # Up block i mirrors down block n-1-i; resnet j concatenates a skip: the block's own resolution's outputs,
    # and for the last resnet the output of the previous (shallower) level, hence input_channel below.
    up, rboc, rheads, out_ch = [], boc[::-1], heads[::-1], boc[-1]
    for i, t in enumerate(cfg.up_block_types):
        prev_out, out_ch = out_ch, rboc[i]
        in_ch = rboc[min(i + 1, n - 1)]
        resnets = []
        for j in range(cfg.layers_per_block + 1):
            skip = in_ch if j == cfg.layers_per_block else out_ch
            resnets.append(((prev_out if j == 0 else out_ch) + skip, out_ch))
        up.append(dict(resnets=resnets, heads=rheads[i] if _UP_TYPES[t] else None, sample=i < n - 1, ch=out_ch))

    for blk in down + up:
        if blk["heads"] is not None and blk["ch"] % blk["heads"]:
            raise ValueError(f"UNetConfig: {blk['ch']} channels not divisible into {blk['heads']} heads")
    if boc[-1] % heads[-1]:
        raise ValueError(f"UNetConfig: mid block {boc[-1]} channels not divisible into {heads[-1]} heads")
    return dict(down=down, mid=dict(ch=boc[-1], heads=heads[-1]), up=up, temb=FF_MULT * boc[0])


def _resnet_shapes(p: str, cin: int, cout: int, temb: int) -> dict:
    s = {f"{p}norm1.weight": (cin,), f"{p}norm1.bias": (cin,),
         f"{p}conv1.weight": (cout, cin, 3, 3), f"{p}conv1.bias": (cout,),
         f"{p}time_emb_proj.weight": (cout, temb), f"{p}time_emb_proj.bias": (cout,),
         f"{p}norm2.weight": (cout,), f"{p}norm2.bias": (cout,),
         f"{p}conv2.weight": (cout, cout, 3, 3), f"{p}conv2.bias": (cout,)}
    if cin != cout:
        s.update({f"{p}conv_shortcut.weight": (cout, cin, 1, 1), f"{p}conv_shortcut.bias": (cout,)})
    return s


def _transformer_shapes(p: str, c: int, cross: int, linear: bool) -> dict:
    proj = (c, c) if linear else (c, c, 1, 1)
    b = f"{p}transformer_blocks.0."
    s = {f"{p}norm.weight": (c,), f"{p}norm.bias": (c,),
         f"{p}proj_in.weight": proj, f"{p}proj_in.bias": (c,)}
    for a, kv in (("attn1", c), ("attn2", cross)):
        s.update({f"{b}{a}.to_q.weight": (c, c), f"{b}{a}.to_k.weight": (c, kv), f"{b}{a}.to_v.weight": (c, kv),
                  f"{b}{a}.to_out.0.weight": (c, c), f"{b}{a}.to_out.0.bias": (c,)})
    for nrm in ("norm1", "norm2", "norm3"):
        s.update({f"{b}{nrm}.weight": (c,), f"{b}{nrm}.bias": (c,)})
    inner = FF_MULT * c
    s.update({f"{b}ff.net.0.proj.weight": (2 * inner, c), f"{b}ff.net.0.proj.bias": (2 * inner,),
              f"{b}ff.net.2.weight": (c, inner), f"{b}ff.net.2.bias": (c,),
              f"{p}proj_out.weight": proj, f"{p}proj_out.bias": (c,)})
    return s


def param_shapes(cfg: UNetConfig) -> dict:
    """Every weight the UNet reads, under its diffusers state_dict name, with its shape."""
    plan = _plan(cfg)
    c0, temb, cross, lin = cfg.block_out_channels[0], plan["temb"], cfg.cross_attention_dim, cfg.use_linear_projection
    s = {"conv_in.weight": (c0, cfg.in_channels, 3, 3), "conv_in.bias": (c0,),
         "time_embedding.linear_1.weight": (temb, c0), "time_embedding.linear_1.bias": (temb,),
         "time_embedding.linear_2.weight": (temb, temb), "time_embedding.linear_2.bias": (temb,)}
    for kind in ("down", "up"):
        for i, blk in enumerate(plan[kind]):
            p = f"{kind}_blocks.{i}."
            for j, (cin, cout) in enumerate(blk["resnets"]):
                s.update(_resnet_shapes(f"{p}resnets.{j}.", cin, cout, temb))
                if blk["heads"] is not None:
                    s.update(_transformer_shapes(f"{p}attentions.{j}.", cout, cross, lin))
            if blk["sample"]:
                c = blk["ch"]
                s.update({f"{p}{kind}samplers.0.conv.weight": (c, c, 3, 3), f"{p}{kind}samplers.0.conv.bias": (c,)})
    cm = plan["mid"]["ch"]
    s.update(_resnet_shapes("mid_block.resnets.0.", cm, cm, temb))
    s.update(_transformer_shapes("mid_block.attentions.0.", cm, cross, lin))
    s.update(_resnet_shapes("mid_block.resnets.1.", cm, cm, temb))
    s.update({"conv_norm_out.weight": (c0,), "conv_norm_out.bias": (c0,),
              "conv_out.weight": (cfg.out_channels, c0, 3, 3), "conv_out.bias": (cfg.out_channels,)})
    return s


def init_weights(cfg: UNetConfig, seed: int = 0, dtype=np.float32) -> dict:
    return random_weights(param_shapes(cfg), seed=seed, dtype=dtype)


# ------------------------------------------------------------------------------------------------------ the model

class UNet:
    """eps (or v) = UNet(sample (N, 4, h, w), timestep (scalar or (N,)), encoder_hidden_states (N, L, cross_dim))."""

    def __init__(self, cfg: UNetConfig, weights: dict, ops=_reference_ops):
        self.cfg, self.ops, self.w = cfg, ops, weights
        self.plan = _plan(cfg)
        check_shapes(param_shapes(cfg), weights, "UNet weights")
        dtypes = {np.dtype(v.dtype) for v in weights.values()}
        compute = (dtypes - {np.dtype(np.float16)}) or dtypes   # half-stored matrices may sit beside float32 ones
        if len(compute) != 1:
            raise ValueError(f"UNet weights must share one dtype, got {sorted(str(d) for d in dtypes)}")
        # the sinusoidal timestep embedding is computed in float64 for a float64 model, float32 otherwise
        self.timestep_dtype = {np.float64: np.float64, np.float16: np.float16}.get(compute.pop().type, np.float32)

    # ------------------------------------------------------------------------------------------------ forward
    def __call__(self, sample, timestep, encoder_hidden_states):
        ops, w, cfg, plan = self.ops, self.w, self.cfg, self.plan
        n = self._check_inputs(sample, encoder_hidden_states)
        ctx = encoder_hidden_states

        # 1. time: sinusoids (host timesteps) -> linear_1 -> silu -> linear_2; every resnet uses silu(emb)
        t = self.timesteps(timestep, n)
        emb = ops.timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        emb = ops.linear(emb, w["time_embedding.linear_1.weight"], w["time_embedding.linear_1.bias"])
        emb = ops.linear(ops.silu(emb), w["time_embedding.linear_2.weight"], w["time_embedding.linear_2.bias"])
        temb = ops.silu(emb)
        del emb

        # 2. pre-process
        x = ops.conv2d(sample, w["conv_in.weight"], w["conv_in.bias"], padding=1)

        # 3. down: every resnet/transformer output and every downsampler output is kept as a skip
        skips = [x]
        for i in range(len(plan["down"])):
            x = self._down_block(i, x, temb, ctx, skips)

        # 4. mid
        x = self._mid_block(x, temb, ctx)

        # 5. up: each resnet first concatenates the latest skip on channels
        for i in range(len(plan["up"])):
            x = self._up_block(i, x, temb, ctx, skips)
        assert not skips

        # 6. post-process
        x = ops.group_norm_silu(x, cfg.norm_num_groups, w["conv_norm_out.weight"], w["conv_norm_out.bias"],
                                cfg.norm_eps)
        return ops.conv2d(x, w["conv_out.weight"], w["conv_out.bias"], padding=1)

    def timesteps(self, timestep, n: int):
        """The (n,) timesteps of a call: a host number or array in timestep_dtype (a scalar repeated), or the ops'
        own device array as given."""
        on_host = isinstance(timestep, (int, float, list, tuple, np.ndarray, np.generic))
        t = np.asarray(timestep, dtype=self.timestep_dtype) if on_host else timestep
        if t.ndim == 0:
            t = np.full((n,), t, dtype=self.timestep_dtype)
        if t.shape != (n,):
            raise ValueError(f"UNet: timestep must be a scalar or shape ({n},), got shape {t.shape}")
        return t

    def _check_inputs(self, sample, ctx) -> int:
        cfg = self.cfg
        if len(sample.shape) != 4 or sample.shape[1] != cfg.in_channels:
            raise ValueError(f"UNet: sample must be (N, {cfg.in_channels}, h, w), got {tuple(sample.shape)}")
        n = sample.shape[0]
        if len(ctx.shape) != 3 or ctx.shape[0] != n or ctx.shape[2] != cfg.cross_attention_dim:
            raise ValueError(f"UNet: encoder_hidden_states must be ({n}, L, {cfg.cross_attention_dim}), "
                             f"got {tuple(ctx.shape)}")
        return n

    # ----------------------------------------------------------------------------------------------- blocks
    def _down_block(self, i: int, x, temb, ctx, skips: list):
        """down_blocks.i: resnets, each followed by its transformer where the block has attention, then the stride-2
        downsampler; every output is appended to skips."""
        blk, p, w = self.plan["down"][i], f"down_blocks.{i}.", self.w
        for j in range(len(blk["resnets"])):
            x = self._resnet(f"{p}resnets.{j}.", x, temb)
            if blk["heads"] is not None:
                x = self._transformer(f"{p}attentions.{j}.", x, ctx, blk["heads"])
            skips.append(x)
        if blk["sample"]:
            x = self.ops.conv2d(x, w[f"{p}downsamplers.0.conv.weight"], w[f"{p}downsamplers.0.conv.bias"],
                                stride=2, padding=1)
            skips.append(x)
        return x

    def _mid_block(self, x, temb, ctx):
        x = self._resnet("mid_block.resnets.0.", x, temb)
        x = self._transformer("mid_block.attentions.0.", x, ctx, self.plan["mid"]["heads"])
        return self._resnet("mid_block.resnets.1.", x, temb)

    def _up_block(self, i: int, x, temb, ctx, skips: list):
        """up_blocks.i: each resnet takes skips.pop() concatenated on channels, then its transformer where the block
        has attention; then the upsampler, to the h, w of the skip that is last after this block's pops."""
        blk, p = self.plan["up"][i], f"up_blocks.{i}."
        for j in range(len(blk["resnets"])):
            x = self.ops.concat([x, skips.pop()], axis=1)
            x = self._resnet(f"{p}resnets.{j}.", x, temb)
            if blk["heads"] is not None:
                x = self._transformer(f"{p}attentions.{j}.", x, ctx, blk["heads"])
        if blk["sample"]:
            x = self._upsample(f"{p}upsamplers.0.conv.", x, skips[-1].shape[2:])
        return x

    def _resnet(self, p: str, x, temb):
        """ResnetBlock2D: GN-silu-conv, + time projection, GN-silu-conv, + (1x1-projected) input (each added by the
        conv before it: conv2d's residual)."""
        ops, w, g, eps = self.ops, self.w, self.cfg.norm_num_groups, self.cfg.norm_eps
        h = ops.group_norm_silu(x, g, w[p + "norm1.weight"], w[p + "norm1.bias"], eps)
        t = ops.linear(temb, w[p + "time_emb_proj.weight"], w[p + "time_emb_proj.bias"])
        h = ops.conv2d(h, w[p + "conv1.weight"], w[p + "conv1.bias"], padding=1,
                       residual=t.reshape(t.shape[0], t.shape[1], 1, 1))
        h = ops.group_norm_silu(h, g, w[p + "norm2.weight"], w[p + "norm2.bias"], eps)
        if p + "conv_shortcut.weight" in w:
            x = ops.conv2d(x, w[p + "conv_shortcut.weight"], w[p + "conv_shortcut.bias"])
        return ops.conv2d(h, w[p + "conv2.weight"], w[p + "conv2.bias"], padding=1, residual=x)

    def _transformer(self, p: str, x, ctx, heads: int):
        """Transformer2DModel: GN, proj_in, one BasicTransformerBlock on (N, HW, C) tokens, proj_out, + input."""
        ops, w, lin = self.ops, self.w, self.cfg.use_linear_projection
        n, c, hh, ww = x.shape
        h = ops.group_norm(x, self.cfg.norm_num_groups, w[p + "norm.weight"], w[p + "norm.bias"],
                           ATTN_GROUP_NORM_EPS)
        if not lin:  # SD 1.x: 1x1 convolution on NCHW
            h = ops.conv2d(h, w[p + "proj_in.weight"], w[p + "proj_in.bias"])
        h = ops.permute(h, (0, 2, 3, 1)).reshape(n, hh * ww, c)
        if lin:      # SD 2.x: linear on tokens
            h = ops.linear(h, w[p + "proj_in.weight"], w[p + "proj_in.bias"])

        h = self._basic_block(p + "transformer_blocks.0.", h, ctx, heads)

        if lin:
            h = ops.linear(h, w[p + "proj_out.weight"], w[p + "proj_out.bias"])
        h = ops.permute(h.reshape(n, hh, ww, c), (0, 3, 1, 2))
        if not lin:   # SD 1.x: the 1x1 convolution adds the input
            return ops.conv2d(h, w[p + "proj_out.weight"], w[p + "proj_out.bias"], residual=x)
        return ops.add(h, x)

    def _basic_block(self, p: str, h, ctx, heads: int):
        """LN + self-attention, LN + cross-attention, LN + GEGLU feed-forward; each with a residual (added by the
        output projection: linear's residual)."""
        ops, w = self.ops, self.w
        y = ops.layer_norm(h, w[p + "norm1.weight"], w[p + "norm1.bias"], LAYER_NORM_EPS)
        h = self._attention(p + "attn1.", y, y, heads, residual=h)
        y = ops.layer_norm(h, w[p + "norm2.weight"], w[p + "norm2.bias"], LAYER_NORM_EPS)
        h = self._attention(p + "attn2.", y, ctx, heads, residual=h)
        y = ops.layer_norm(h, w[p + "norm3.weight"], w[p + "norm3.bias"], LAYER_NORM_EPS)
        y = ops.geglu(ops.linear(y, w[p + "ff.net.0.proj.weight"], w[p + "ff.net.0.proj.bias"]))
        return ops.linear(y, w[p + "ff.net.2.weight"], w[p + "ff.net.2.bias"], residual=h)

    def _attention(self, p: str, x, ctx, heads: int, residual=None):
        """Attention(x, ctx) (+ residual)."""
        ops, w = self.ops, self.w
        q = ops.linear(x, w[p + "to_q.weight"])
        k = ops.linear(ctx, w[p + "to_k.weight"])
        v = ops.linear(ctx, w[p + "to_v.weight"])
        o = ops.attention(q, k, v, heads)
        del q, k, v
        return ops.linear(o, w[p + "to_out.0.weight"], w[p + "to_out.0.bias"], residual=residual)

    def _upsample(self, p: str, x, size):
        """Upsample2D: nearest resize to `size` (the next skip's h, w: 2x, or 2x - 1 for odd sizes), 3x3 conv."""
        ops = self.ops
        x = _crop_to(ops, ops.upsample_nearest2x(x), size)
        return ops.conv2d(x, self.w[p + "weight"], self.w[p + "bias"], padding=1)


def _crop_to(ops, x, size):
    """x[:, :, :H, :W] for (H, W) = size, with ops.permute and first-axis slicing only (odd latent sizes)."""
    th, tw = size
    if not (x.shape[2] - 1 <= th <= x.shape[2] and x.shape[3] - 1 <= tw <= x.shape[3]):
        raise ValueError(f"UNet: cannot resize an upsampled {tuple(x.shape[2:])} map to the skip size {(th, tw)}")
    if x.shape[2] != th:
        x = ops.permute(ops.permute(x, (2, 0, 1, 3))[:th], (1, 2, 0, 3))   # via (H, N, C, W)
    if x.shape[3] != tw:
        x = ops.permute(ops.permute(x, (3, 0, 1, 2))[:tw], (1, 2, 3, 0))   # via (W, N, C, H)
    return x
