"""reference/unet.py against diffusers' UNet2DConditionModel built from the same config numbers.

The oracle is diffusers itself: same weights (ours loaded into torch with strict=True, and torch's own init copied
into ours), fresh random inputs, float64 on both sides (F64_TOL) and float32 on both sides (F32_TOL).

One deliberate change to the oracle, float64 only: diffusers' `Timesteps` always computes the sinusoidal
embedding in float32 (its frequencies come from a float32 arange and the timesteps are cast with `.float()`), so a
float64 model still sees a time embedding carrying float32 rounding: at t = 999 the argument t * f has an ulp of
6e-5, and we measured up to 8e-6 relative difference at the UNet output, 1e5 x F64_TOL. For the float64 comparison
`_float64_time_proj` replaces that module's forward with the same formula evaluated in float64 (stated below from
the diffusers docstring: f_i = exp(-ln(max_period) * i / (half - shift)), [sin(t f), cos(t f)], halves swapped when
flip_sin_to_cos), and `test_float64_time_proj_matches_diffusers` checks it against the unpatched module to within
float32 argument rounding. The float32 comparisons use diffusers unmodified.
"""

from __future__ import annotations

import functools
import math
import time
import types
import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from numerics import F64_TOL, rel_l2, tol

import sdcl.reference.ops as ref_ops
from sdcl.conformance.oracles import unet_kwargs
from sdcl.reference.configs import SD15, SD21_BASE, TINY_SD1, TINY_SD2
from sdcl.reference.unet import UNet, _crop_to, init_weights, param_shapes

# A third tiny model: three levels (so a non-multiple-of-4 latent gets odd sizes at an inner level, and the middle
# up block's head count is read from the reversed list), one layer per block, a distinct head count per block.
TINY3 = replace(TINY_SD2.unet, block_out_channels=(16, 32, 32),
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                num_heads=(1, 2, 4), layers_per_block=1, norm_num_groups=8)
TINY = {"sd1": TINY_SD1.unet, "sd2": TINY_SD2.unet, "sd2-3level": TINY3}

# (latent h, w, timestep): square, non-square and odd latents; an int, a per-sample array and a float timestep.
CASES = [((8, 8), 999), ((6, 10), np.array([1, 999])), ((7, 9), 500.5)]
BATCH, CTX_LEN = 2, 77


def diffusers_kwargs(cfg) -> dict:
    return unet_kwargs(cfg)


def _float64_time_proj(module, max_period: float = 10000.0):
    """Replace a diffusers `Timesteps` module's forward by the same sinusoids computed in float64."""
    def forward(timesteps):
        half = module.num_channels // 2
        i = torch.arange(half, dtype=torch.float64)
        freqs = torch.exp(-math.log(max_period) * i / (half - module.downscale_freq_shift))
        args = timesteps.to(torch.float64)[:, None] * freqs[None, :]
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
        if module.flip_sin_to_cos:
            emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
        assert module.num_channels % 2 == 0
        return emb
    module.forward = forward


def _torch_unet(cfg, dtype, state_dict=None, seed=0):
    """diffusers' UNet in eval mode: `state_dict` loaded strictly, or torch's own seeded init."""
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**diffusers_kwargs(cfg)).eval()
    if dtype == np.float64:  # before loading, so float64 weights are not rounded through float32 parameters
        model = model.double()
        model.set_default_attn_processor()  # eager softmax(QK^T)V, float64 throughout
        _float64_time_proj(model.time_proj)
    if state_dict is not None:
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()},
                              strict=True)
        assert all(p.dtype == torch.from_numpy(np.zeros(0, dtype)).dtype for p in model.parameters())
    return model


@functools.lru_cache(maxsize=None)
def _models(name: str, dtype, init: str):
    """(ours, diffusers) with identical weights; init 'ours' (seeded reference init) or 'torch' (torch's init)."""
    cfg = TINY[name]
    if init == "ours":
        w = init_weights(cfg, seed=1, dtype=dtype)
        theirs = _torch_unet(cfg, dtype, state_dict=w)
    else:
        theirs = _torch_unet(cfg, dtype, seed=1)
        w = {k: v.detach().numpy().astype(dtype) for k, v in theirs.state_dict().items()}
    return UNet(cfg, w), theirs


def _inputs(cfg, size, dtype, key: str):
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    x = rng.standard_normal((BATCH, cfg.in_channels) + size).astype(dtype)
    ctx = rng.standard_normal((BATCH, CTX_LEN, cfg.cross_attention_dim)).astype(dtype)
    return x, ctx


def _run_both(ours, theirs, x, t, ctx):
    y = ours(x, t, ctx)
    tt = torch.from_numpy(t) if isinstance(t, np.ndarray) else t
    with torch.no_grad():
        e = theirs(torch.from_numpy(x), tt, torch.from_numpy(ctx)).sample.numpy()
    return y, e


# ---------------------------------------------------------------------------------------------- parameter table

@pytest.mark.parametrize("cfg", [TINY_SD1.unet, TINY_SD2.unet, TINY3, SD15.unet, SD21_BASE.unet],
                         ids=["tiny-sd1", "tiny-sd2", "tiny3", "sd15", "sd21-base"])
def test_param_shapes_match_diffusers_state_dict(cfg):
    with torch.device("meta"):  # full-size models too: shapes only, no memory
        model = UNet2DConditionModel(**diffusers_kwargs(cfg))
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ours = param_shapes(cfg)
    assert sorted(set(theirs) - set(ours)) == [], "keys diffusers has and we lack"
    assert sorted(set(ours) - set(theirs)) == [], "keys we declare that diffusers lacks"
    assert {k: s for k, s in ours.items() if theirs[k] != s} == {}


def test_full_size_parameter_counts():
    # published sizes: SD 1.5's UNet has 859.52M parameters, SD 2.1's 865.91M
    count = lambda cfg: sum(math.prod(s) for s in param_shapes(cfg).values())
    assert count(SD15.unet) == 859_520_964
    assert count(SD21_BASE.unet) == 865_910_724


# ----------------------------------------------------------------------------------------- against diffusers

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("size,t", CASES, ids=["8x8-t999", "6x10-t1,999", "7x9-t500.5"])
def test_matches_diffusers_seeded_weights(name, size, t, dtype):
    ours, theirs = _models(name, dtype, "ours")
    x, ctx = _inputs(TINY[name], size, dtype, f"{name}{size}{np.dtype(dtype).name}")
    y, e = _run_both(ours, theirs, x, t, ctx)
    assert y.dtype == dtype and y.shape == (BATCH, TINY[name].out_channels) + size
    # measured: float64 1e-15..4e-15; float32 0.8e-6..1.6e-6 at t = 1 and 500.5, 5e-6..7e-6 at t = 999, where
    # the float32 sinusoid arguments (up to 999, ulp 6e-5) make the two time embeddings differ by ~4e-6 already
    err = rel_l2(y, e)
    assert err <= tol(dtype), f"relative L2 {err:.3g} > {tol(dtype):g}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(TINY))
def test_matches_diffusers_torch_init(name, dtype):
    ours, theirs = _models(name, dtype, "torch")
    x, ctx = _inputs(TINY[name], (6, 10), dtype, f"torch-init{name}")
    y, e = _run_both(ours, theirs, x, np.array([999, 1]), ctx)
    err = rel_l2(y, e)
    assert err <= tol(dtype), f"relative L2 {err:.3g} > {tol(dtype):g}"


def test_float64_time_proj_matches_diffusers():
    cfg = TINY_SD1.unet
    model = UNet2DConditionModel(**diffusers_kwargs(cfg))
    t = torch.tensor([0.0, 1.0, 500.5, 999.0], dtype=torch.float64)
    f32 = model.time_proj(t).double()
    _float64_time_proj(model.time_proj)
    f64 = model.time_proj(t)
    # float32 rounds the argument t * f (|t f| <= 999) to within 999 * 2^-24 = 6e-5, plus an ulp or two from the
    # float32 exp of f; sin/cos pass such an absolute error through unchanged.
    assert f64.dtype == torch.float64
    assert (f64 - f32).abs().max().item() <= 3 * 999 * 2.0 ** -24


def test_output_depends_on_timestep_and_context():
    """The output responds to what the comparisons vary, and samples of a batch are independent."""
    ours, _ = _models("sd2", np.float64, "ours")
    x, ctx = _inputs(TINY["sd2"], (8, 8), np.float64, "sensitivity")
    y1 = ours(x, 999, ctx)
    assert rel_l2(ours(x, 998, ctx), y1) > 1e-6
    # (a permutation of the context tokens would change nothing: cross-attention has no positions; truncate instead)
    assert rel_l2(ours(x, 999, ctx[:, :40].copy()), y1) > 1e-6
    y_b = ours(x[1:], 999, ctx[1:])
    assert rel_l2(y_b, y1[1:]) <= F64_TOL  # samples in a batch are independent


# ---------------------------------------------------------------------------------------- odd-size upsampling

@pytest.mark.parametrize("h,w,out", [(4, 5, (7, 9)), (4, 5, (8, 9)), (3, 3, (5, 6)), (64, 33, (127, 65))])
def test_crop_to_equals_torch_nearest_resize(h, w, out):
    x = np.random.default_rng(h * w).standard_normal((2, 3, h, w)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(x), size=out, mode="nearest").numpy()
    np.testing.assert_array_equal(_crop_to(ref_ops, ref_ops.upsample_nearest2x(x), out), expected)


def test_crop_to_rejects_other_sizes():
    x = np.zeros((1, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="skip size"):
        _crop_to(ref_ops, x, (6, 8))


# ------------------------------------------------------------------------------------- the model-code contract

class _Guarded:
    """An activation that offers only what docs/ARCHITECTURE.md allows: .shape, .reshape of contiguous data,
    first-axis slices. NumPy conversion and arithmetic operators raise."""
    __array_ufunc__ = None

    def __init__(self, a):
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)   # read from weights only (the model's compute dtype)

    def reshape(self, *shape):
        assert self._a.flags.c_contiguous, "reshape of a non-contiguous activation"
        return _Guarded(self._a.reshape(*shape))

    def __getitem__(self, idx):
        if not isinstance(idx, slice):
            raise TypeError(f"only first-axis slices are allowed, got {idx!r}")
        return _Guarded(self._a[idx])

    def __array__(self, *args, **kwargs):
        raise TypeError("model code converted an activation to a NumPy array")


def _guarded_ops():
    unwrap = lambda a: [unwrap(v) for v in a] if isinstance(a, list) else a._a if isinstance(a, _Guarded) else a

    def wrap(fn):
        def call(*args, **kwargs):
            out = fn(*[unwrap(a) for a in args], **{k: unwrap(v) for k, v in kwargs.items()})
            return _Guarded(out) if isinstance(out, np.ndarray) else out
        return call
    return types.SimpleNamespace(**{name: wrap(getattr(ref_ops, name)) for name in ref_ops.OPS})


@pytest.mark.parametrize("name", ["sd1", "sd2-3level"])
def test_model_uses_only_ops_shape_reshape_and_batch_slices(name):
    cfg = TINY[name]
    w = init_weights(cfg, seed=2)
    x, ctx = _inputs(cfg, (7, 9), np.float32, "guarded")
    plain = UNet(cfg, w)(x, np.array([10, 900]), ctx)
    guarded = UNet(cfg, {k: _Guarded(v) for k, v in w.items()}, ops=_guarded_ops())(
        _Guarded(x), np.array([10, 900]), _Guarded(ctx))
    assert isinstance(guarded, _Guarded)
    np.testing.assert_array_equal(guarded._a, plain)


# ------------------------------------------------------------------------------------------------- validation

def test_weights_validation_lists_missing_unexpected_and_misshaped_keys():
    cfg = TINY_SD1.unet
    w = init_weights(cfg)
    del w["mid_block.attentions.0.proj_in.weight"]
    w["mid_block.attentions.0.extra.weight"] = np.zeros(3, np.float32)
    w["up_blocks.1.resnets.2.conv1.weight"] = np.zeros((32, 48, 1, 1), np.float32)
    with pytest.raises(ValueError) as err:
        UNet(cfg, w)
    msg = str(err.value)
    for part in ("missing (1): mid_block.attentions.0.proj_in.weight",
                 "unexpected (1): mid_block.attentions.0.extra.weight",
                 "wrong shape (1): up_blocks.1.resnets.2.conv1.weight: expected (32, 64, 3, 3), got (32, 48, 1, 1)"):
        assert part in msg


def test_sd1_weights_rejected_by_sd2_config():
    # same keys, but 1x1-conv projections (C, C, 1, 1) where SD 2.x has linear (C, C)
    with pytest.raises(ValueError, match=r"proj_in.weight: expected \(32, 32\), got \(32, 32, 1, 1\)"):
        UNet(TINY_SD2.unet, init_weights(TINY_SD1.unet))


def test_bad_config_and_inputs_raise():
    with pytest.raises(ValueError, match="unsupported down block type"):
        param_shapes(replace(TINY_SD1.unet, down_block_types=("CrossAttnDownBlock2D", "SimpleDownBlock2D")))
    with pytest.raises(ValueError, match="num_heads"):
        param_shapes(replace(TINY_SD1.unet, num_heads=(2, 2, 2)))
    cfg = TINY_SD1.unet
    model = UNet(cfg, init_weights(cfg))
    x, ctx = _inputs(cfg, (8, 8), np.float32, "bad")
    with pytest.raises(ValueError, match="sample must be"):
        model(x[:, :3], 1, ctx)
    with pytest.raises(ValueError, match="encoder_hidden_states must be"):
        model(x, 1, ctx[:, :, :16])
    with pytest.raises(ValueError, match="timestep must be"):
        model(x, np.array([1, 2, 3]), ctx)


# --------------------------------------------------------------------------------------- full size, not in CI

# Full-size float32 bound, wider than F32_TOL (which is stated for tiny models). Two float32 effects grow here:
# (1) at t = 999 the sinusoid arguments t * f carry an absolute rounding of up to 999 * 2^-24 = 6e-5, and numpy's
#     and torch's float32 exp differ by an ulp on some frequencies, so the two time embeddings already differ by
#     ~4e-6 relative (measured) before any layer; the tiny models turn that into 5e-6..7e-6 at the output;
# (2) the full model chains 22 resnets and 16 transformers (tiny: 12 and 6), with dot products of up to
#     1280 * 9 = 11520 terms instead of 64 * 9 = 576, and each layer adds its own rounding.
# Measured: 1.0e-5 (seed 0, t = 999). 5e-5 leaves 5x margin; a structural error (wrong heads, projection,
# skip order, resize) changes the output by O(1), and formula-level errors are caught by the float64 tests.
FULL_SIZE_F32_TOL = 5e-5


@pytest.mark.slow
def test_sd21_base_full_size_step():
    """One SD 2.1-base UNet step, batch 1, 64x64 latent, seeded weights, float32, vs diffusers.

    Run with `pytest -m slow` (pyproject's addopts deselects it otherwise); needs ~8 GiB RAM and minutes on a
    2-core CPU. The weights are shared with torch (torch.from_numpy + load_state_dict(assign=True) into a
    meta-device model), not copied."""
    cfg = SD21_BASE.unet
    t0 = time.perf_counter()
    w = init_weights(cfg, seed=0)
    t_init = time.perf_counter() - t0
    rng = np.random.default_rng(21)
    x = rng.standard_normal((1, 4, 64, 64)).astype(np.float32)
    ctx = rng.standard_normal((1, 77, cfg.cross_attention_dim)).astype(np.float32)
    t = 999

    t0 = time.perf_counter()
    y = UNet(cfg, w)(x, t, ctx)
    t_ours = time.perf_counter() - t0

    with torch.device("meta"):
        model = UNet2DConditionModel(**diffusers_kwargs(cfg))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True, assign=True)
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        e = model(torch.from_numpy(x), t, torch.from_numpy(ctx)).sample.numpy()
    t_torch = time.perf_counter() - t0
    del model

    err = rel_l2(y, e)
    print(f"\nSD 2.1-base UNet, 1x4x64x64, t={t}: relative L2 {err:.3e}; reference {t_ours:.1f} s, "
          f"diffusers {t_torch:.1f} s (seeded init {t_init:.1f} s)")
    assert np.isfinite(y).all()
    assert err <= FULL_SIZE_F32_TOL, f"relative L2 {err:.3g} > {FULL_SIZE_F32_TOL:g}"

