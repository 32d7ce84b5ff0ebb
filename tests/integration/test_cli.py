"""`sdcl generate` as a user runs it: tiny models, seeded weights, no download; a checkpoint by path; the OpenCL
backend beside the reference; half storage."""

import numpy as np
import pytest
from PIL import Image

from sdcl.checkpoint import save_diffusers, save_ldm_checkpoint
from sdcl.cli import main
from sdcl.reference.configs import TINY_SD1
from sdcl.reference.pipeline import init_weights


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


def test_cli_generate_reads_the_config_of_a_folder_without_model(tmp_path, capsys):
    """A diffusers folder needs no --model: its config.json files give the config, which for a folder of tiny-sd1
    gives tiny-sd1's image; the notes (here: the pad token, no tokenizer/ folder) go to stderr."""
    weights = init_weights(TINY_SD1, seed=5)
    save_diffusers(weights, TINY_SD1, tmp_path / "folder")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    common = ["--steps", "2", "--quiet", "--seed", "3"]
    assert main(["generate", "a cat", *common, "--checkpoint", str(tmp_path / "folder"), "-o", str(a)]) == 0
    out = capsys.readouterr()
    assert "sdcl: note: " in out.err and "pad token" in out.err and "model folder" in out.out
    assert main(["generate", "a cat", *common, "--model", "tiny-sd1", "--weight-seed", "5", "-o", str(b)]) == 0
    assert np.asarray(Image.open(a)).shape == (TINY_SD1.vae.sample_size,) * 2 + (3,)   # vae/config.json's size
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_cli_reports_a_bad_checkpoint_clearly(tmp_path, capsys):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["generate", "x", "--model", "tiny-sd1", "--checkpoint", str(bad), "--quiet",
                 "-o", str(tmp_path / "x.png")]) == 2
    assert "broken.safetensors" in capsys.readouterr().err


def test_cli_generate_on_the_opencl_device_matches_the_reference(tmp_path):
    a, b = tmp_path / "ref.png", tmp_path / "cl.png"
    common = ["--model", "tiny-sd2", "--steps", "2", "--size", "16", "--quiet", "--seed", "4"]
    assert main(["generate", "a cat", *common, "-o", str(a)]) == 0
    assert main(["generate", "a cat", *common, "--backend", "opencl", "-o", str(b)]) == 0
    diff = np.abs(np.asarray(Image.open(a)).astype(int) - np.asarray(Image.open(b)).astype(int))
    assert diff.max() <= 1  # float32 on both sides: at most a rounding flip of an 8-bit level


def test_cli_generate_with_half_storage_is_close_to_float32(tmp_path, capsys):
    from PIL import Image

    from sdcl.cli import main
    common = ["a red bicycle", "--model", "tiny-sd2", "--backend", "opencl", "--steps", "2", "--quiet"]
    assert main(["generate", *common, "-o", str(tmp_path / "f32.png")]) == 0
    assert main(["generate", *common, "--storage", "half", "-o", str(tmp_path / "half.png")]) == 0
    a, b = (np.asarray(Image.open(tmp_path / f), np.float64) for f in ("f32.png", "half.png"))
    mse = np.mean((a - b) ** 2)
    assert 0 < mse and 10 * np.log10(255 ** 2 / mse) > 30   # rounded weights change the image, a little


def test_cli_half_storage_needs_the_opencl_backend(capsys):
    from sdcl.cli import main
    assert main(["generate", "x", "--model", "tiny-sd2", "--storage", "half", "--steps", "1", "--quiet"]) == 2
    assert "--storage half stores the OpenCL backend's" in capsys.readouterr().err
