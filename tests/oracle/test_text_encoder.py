"""reference.text_encoder against the independent oracle, transformers' CLIPTextModel, in both SD families.

The oracle is built from a CLIPTextConfig with the same numbers and loaded with the same weights, both ways:
our seeded weights into torch (load_state_dict(strict=True)), and torch's own random init into our model, each
through the real key names. Compared: last_hidden_state, on fresh random token ids that contain BOS, EOS and pad
tokens, in float64 (rel. L2 <= F64_TOL) and float32 (<= F32_TOL).

Attention implementation of the oracle: "sdpa", not "eager". transformers' eager CLIP attention computes its
softmax in float32 even for float64 tensors (softmax(..., dtype=torch.float32).to(query.dtype)), which caps a
float64 comparison near 1e-8; torch's SDPA keeps float64 end to end.
"""

from __future__ import annotations

import time
import types
from dataclasses import replace

import numpy as np
import pytest
import torch

from sdcl.conformance.oracles import clip_text_config
from transformers import CLIPTextConfig, CLIPTextModel

import sdcl.reference.ops as ref_ops
from numerics import F32_TOL, F64_TOL, rel_l2, tol
from sdcl.reference.configs import SD15, SD21_BASE, TINY_SD1, TINY_SD2, TextEncoderConfig
from sdcl.checkpoint import check_shapes
from sdcl.reference.text_encoder import PREFIX, TextEncoder, init_weights, param_shapes

FAMILIES = {"sd1": TINY_SD1.text_encoder, "sd2": TINY_SD2.text_encoder}
DTYPES = [np.float64, np.float32]
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


# --------------------------------------------------------------------------------------------------- helpers

def torch_model(cfg: TextEncoderConfig, dtype) -> CLIPTextModel:
    return CLIPTextModel(clip_text_config(cfg)).to(TORCH_DTYPE[dtype]).eval()


def to_torch_names(weights: dict) -> dict:
    """Our checkpoint names -> the keys of transformers 5's CLIPTextModel.state_dict() (no `text_model.`)."""
    assert all(k.startswith(PREFIX) for k in weights)
    return {k[len(PREFIX):]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}


def from_torch(model: CLIPTextModel, dtype) -> dict:
    return {PREFIX + k: v.detach().cpu().numpy().astype(dtype) for k, v in model.state_dict().items()}


def random_ids(cfg: TextEncoderConfig, batch: int, length: int, seed: int) -> np.ndarray:
    """Prompt-shaped rows: BOS, random tokens, EOS, then the pad token to the end (pads with EOS in SD 1.x and
    0 in SD 2.x), plus one row of unstructured random ids over the whole vocabulary."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, size=(batch, length), dtype=np.int64)
    for row in ids[:-1]:
        n = int(rng.integers(0, length - 1))        # prompt tokens after BOS
        row[0] = cfg.bos_token_id
        row[n + 1] = cfg.eos_token_id
        row[n + 2:] = cfg.pad_token_id
    return ids


def run_torch(model: CLIPTextModel, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids)).last_hidden_state.numpy()


def id_batches(cfg: TextEncoderConfig, seed: int):
    """A full-length batch and a short one (position table sliced, shorter causal mask)."""
    return [random_ids(cfg, 3, cfg.max_position_embeddings, seed), random_ids(cfg, 2, 9, seed + 1)]


def assert_close(ours: np.ndarray, theirs: np.ndarray, dtype, what: str) -> float:
    assert ours.dtype == dtype, f"{what}: output dtype {ours.dtype}, expected {np.dtype(dtype)}"
    assert theirs.dtype == dtype
    err = rel_l2(ours, theirs)
    assert err <= tol(dtype), f"{what}: relative L2 error {err:.3e} > {tol(dtype):.0e}"
    return err


# ----------------------------------------------------------------------------------------- names and shapes

@pytest.mark.parametrize("family", FAMILIES)
def test_param_shapes_are_transformers_state_dict(family):
    cfg = FAMILIES[family]
    theirs = {k: tuple(v.shape) for k, v in torch_model(cfg, np.float32).state_dict().items()}
    ours = {k[len(PREFIX):]: tuple(s) for k, s in param_shapes(cfg).items()}
    assert ours == theirs


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_names_load_in_transformers(family, tmp_path):
    """Our names are what CLIPTextModel.from_pretrained reads from a model.safetensors (the on-disk layout)."""
    from safetensors.numpy import save_file
    cfg = FAMILIES[family]
    weights = init_weights(cfg, seed=3)
    torch_model(cfg, np.float32).config.save_pretrained(tmp_path)
    save_file(weights, str(tmp_path / "model.safetensors"))
    model, info = CLIPTextModel.from_pretrained(tmp_path, output_loading_info=True, dtype=torch.float32)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids = random_ids(cfg, 2, cfg.max_position_embeddings, seed=30)
    assert_close(TextEncoder(cfg, weights)(ids), run_torch(model.eval(), ids), np.float32, "from_pretrained")


# ----------------------------------------------------------------------------------- against transformers

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("family", FAMILIES)
def test_seeded_weights_match_transformers(family, dtype):
    cfg = FAMILIES[family]
    weights = init_weights(cfg, seed=1, dtype=dtype)
    model = torch_model(cfg, dtype)
    model.load_state_dict(to_torch_names(weights), strict=True)
    ours = TextEncoder(cfg, weights)
    for ids in id_batches(cfg, seed=100 + len(family)):
        out = ours(ids)
        assert out.shape == ids.shape + (cfg.hidden_size,)
        ref = run_torch(model, ids)
        assert np.std(ref) > 0.1, "degenerate oracle output"
        assert_close(out, ref, dtype, f"{family} seeded {ids.shape}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("family", FAMILIES)
def test_transformers_init_matches(family, dtype):
    cfg = FAMILIES[family]
    torch.manual_seed(7)
    model = torch_model(cfg, dtype)
    ours = TextEncoder(cfg, from_torch(model, dtype))
    for ids in id_batches(cfg, seed=200 + len(family)):
        assert_close(ours(ids), run_torch(model, ids), dtype, f"{family} torch init {ids.shape}")


@pytest.mark.parametrize("family", FAMILIES)
def test_comparison_detects_wrong_mask_and_activation(family):
    """The float64 comparison fails, by orders of magnitude, for the two bugs the families differ in or share:
    attention without the causal mask, and the other family's activation."""
    cfg = FAMILIES[family]
    weights = init_weights(cfg, seed=1, dtype=np.float64)
    model = torch_model(cfg, np.float64)
    model.load_state_dict(to_torch_names(weights), strict=True)
    ids = random_ids(cfg, 3, cfg.max_position_embeddings, seed=300)
    ref = run_torch(model, ids)

    def non_causal(q, k, v, heads, causal=False, scale=None):
        return ref_ops.attention(q, k, v, heads, causal=False, scale=scale)
    no_mask_ops = types.SimpleNamespace(**{n: getattr(ref_ops, n) for n in ref_ops.OPS})
    no_mask_ops.attention = non_causal
    assert rel_l2(TextEncoder(cfg, weights, ops=no_mask_ops)(ids), ref) > 1e3 * F64_TOL

    other = replace(cfg, hidden_act="gelu" if cfg.hidden_act == "quick_gelu" else "quick_gelu")
    assert rel_l2(TextEncoder(other, weights)(ids), ref) > 1e3 * F64_TOL


# ------------------------------------------------------------------------------------------- validation

def test_bad_weights_raise_naming_the_key():
    cfg = FAMILIES["sd1"]
    good = init_weights(cfg)
    key = f"{PREFIX}encoder.layers.1.mlp.fc2.weight"

    missing = {k: v for k, v in good.items() if k != key}
    with pytest.raises(ValueError, match=r"missing \(1\): " + key.replace(".", r"\.")):
        TextEncoder(cfg, missing)

    extra_key = f"{PREFIX}encoder.layers.2.mlp.fc2.weight"
    with pytest.raises(ValueError, match=r"unexpected \(1\): " + extra_key.replace(".", r"\.")):
        TextEncoder(cfg, {**good, extra_key: good[key]})

    with pytest.raises(ValueError, match=r"wrong shape \(1\): " + key.replace(".", r"\.") + r": expected \(32, 64\), "
                                         r"got \(64, 32\)"):
        TextEncoder(cfg, {**good, key: good[key].T.copy()})

    TextEncoder(cfg, good)  # the unaltered dict passes


def test_check_weights_lists_every_problem():
    expected = {"a": (2,), "b": (3, 4), "c": (1,)}
    with pytest.raises(ValueError) as e:
        check_shapes(expected, {"a": np.zeros(2), "b": np.zeros((4, 3)), "d": np.zeros(1)}, "thing weights")
    msg = str(e.value)
    assert msg.startswith("thing weights")
    assert "missing (1): c" in msg and "unexpected (1): d" in msg and "b: expected (3, 4), got (4, 3)" in msg
    assert "a:" not in msg and "a," not in msg


def test_unknown_activation_raises():
    cfg = replace(FAMILIES["sd1"], hidden_act="relu")
    with pytest.raises(ValueError, match="relu"):
        TextEncoder(cfg, init_weights(cfg))


# ------------------------------------------------------------------------------------------- full size

@pytest.mark.slow
@pytest.mark.parametrize("sd", [SD15, SD21_BASE], ids=lambda c: c.name)
def test_full_size_matches_transformers_float32(sd):
    cfg = sd.text_encoder
    t0 = time.perf_counter()
    weights = init_weights(cfg, seed=0, dtype=np.float32)
    model = torch_model(cfg, np.float32)
    model.load_state_dict(to_torch_names(weights), strict=True)
    ids = random_ids(cfg, 2, cfg.max_position_embeddings, seed=400)   # batch 2: prompt + negative prompt
    t1 = time.perf_counter()
    out = TextEncoder(cfg, weights)(ids)
    t2 = time.perf_counter()
    ref = run_torch(model, ids)
    t3 = time.perf_counter()
    err = rel_l2(out, ref)
    print(f"\n{sd.name} text encoder ({cfg.num_hidden_layers} layers, width {cfg.hidden_size}, {cfg.hidden_act}): "
          f"rel L2 {err:.3e}; setup {t1 - t0:.1f} s, reference {t2 - t1:.2f} s, transformers {t3 - t2:.2f} s")
    assert err <= F32_TOL
