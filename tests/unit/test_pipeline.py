"""The reference pipeline: tiny models, seeded weights, no download (`sdcl generate` itself: tests/integration/test_cli.py)."""

import numpy as np
import pytest

from sdcl.reference.configs import TINY_SD2
from sdcl.reference.pipeline import StableDiffusion, init_weights

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
