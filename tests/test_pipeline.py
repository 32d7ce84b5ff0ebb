"""The pipeline and `sdcl generate` as a user runs them: tiny models, seeded weights, no download."""

import numpy as np
import pytest
from PIL import Image

from sdcl.checkpoint import save_diffusers, save_ldm_checkpoint
from sdcl.reference.configs import TINY_SD1, TINY_SD2
from sdcl.reference.pipeline import StableDiffusion, init_weights
from sdcl.cli import main

KW = dict(steps=3, height=16, width=24, guidance=5.0)


@pytest.fixture(scope="module")
def sd2():
    return StableDiffusion(TINY_SD2, init_weights(TINY_SD2, seed=0))


def test_same_seed_same_image_other_seed_other_image(sd2):
    a = sd2("a red bicycle", seed=1, **KW)
    b = sd2("a red bicycle", seed=1, **KW)
    c = sd2("a red bicycle", seed=2, **KW)
    assert a.shape == (16, 24, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_prompt_and_guidance_change_the_image(sd2):
    base = sd2("a red bicycle", seed=1, **KW)
    assert not np.array_equal(base, sd2("a blue house", seed=1, **KW))
    assert not np.array_equal(base, sd2("a red bicycle", negative_prompt="blurry", seed=1, **KW))


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m"])
def test_other_samplers_run(sd2, sampler):
    img = sd2("a red bicycle", seed=1, sampler=sampler, **KW)
    assert img.shape == (16, 24, 3) and img.std() > 0


def test_float16_weights_give_nearly_the_float32_image():
    """float16 storage: every op still computes in float32 and rounds its result to half (2^-11 relative), so
    3 steps of a tiny model move 8-bit pixels by a few levels at most."""
    w32 = init_weights(TINY_SD2, seed=0)
    w16 = {m: {k: v.astype(np.float16) for k, v in ws.items()} for m, ws in w32.items()}
    img32 = StableDiffusion(TINY_SD2, w32)("a red bicycle", seed=1, **KW)
    img16 = StableDiffusion(TINY_SD2, w16)("a red bicycle", seed=1, dtype=np.float16, **KW)
    diff = np.abs(img16.astype(int) - img32.astype(int))
    assert diff.max() <= 8, diff.max()


def test_bad_size_is_a_clear_error(sd2):
    with pytest.raises(ValueError, match="multiples of 2"):
        sd2("x", height=15, width=16, steps=1)


def test_cli_generate_writes_a_png_and_timings(tmp_path, capsys):
    out = tmp_path / "img.png"
    assert main(["generate", "a red bicycle", "--model", "tiny-sd1", "--steps", "2", "--size", "16",
                 "--quiet", "-o", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (16, 16, 3)
    text = capsys.readouterr().out
    assert "unet" in text and "vae_decode" in text and "text_encoder" in text


@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
def test_cli_generate_from_a_checkpoint_path_equals_the_seeded_model(tmp_path, layout):
    """A checkpoint written in either real layout and loaded by path gives the image of the weights it holds."""
    weights = init_weights(TINY_SD1, seed=5)
    path = tmp_path / ("model.safetensors" if layout == "ldm" else "folder")
    (save_ldm_checkpoint if layout == "ldm" else save_diffusers)(weights, TINY_SD1, path)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    common = ["--model", "tiny-sd1", "--steps", "2", "--size", "16", "--quiet", "--seed", "3"]
    assert main(["generate", "a cat", *common, "--checkpoint", str(path), "-o", str(a)]) == 0
    assert main(["generate", "a cat", *common, "--weight-seed", "5", "-o", str(b)]) == 0
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    c = tmp_path / "c.png"
    assert main(["generate", "a cat", *common, "--weight-seed", "6", "-o", str(c)]) == 0
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(c)))


def test_cli_reports_a_bad_checkpoint_clearly(tmp_path, capsys):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["generate", "x", "--model", "tiny-sd1", "--checkpoint", str(bad), "--quiet",
                 "-o", str(tmp_path / "x.png")]) == 2
    assert "broken.safetensors" in capsys.readouterr().err


def test_cli_generate_on_the_opencl_device_matches_the_reference(tmp_path):
    pytest.importorskip("pyopencl")
    a, b = tmp_path / "ref.png", tmp_path / "cl.png"
    common = ["--model", "tiny-sd2", "--steps", "2", "--size", "16", "--quiet", "--seed", "4"]
    assert main(["generate", "a cat", *common, "-o", str(a)]) == 0
    assert main(["generate", "a cat", *common, "--backend", "opencl", "-o", str(b)]) == 0
    diff = np.abs(np.asarray(Image.open(a)).astype(int) - np.asarray(Image.open(b)).astype(int))
    assert diff.max() <= 1  # float32 on both sides: at most a rounding flip of an 8-bit level
