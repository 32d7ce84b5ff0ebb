"""Launch replay (sdcl.opencl_impl.replay): a call's launches recorded once and replayed on new inputs must give
what a plain call gives, bit for bit, and must never share a buffer with an array outside the recording."""

from __future__ import annotations

import numpy as np
import pytest

from sdcl.conformance import models
from sdcl.opencl_impl import replay
from sdcl.opencl_impl.backend import opencl_backend_for
from sdcl.opencl_impl.ops import DeviceOps
from sdcl.opencl_impl.replay import record, replayed_unet
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.selection import policy_for
from sdcl.reference.configs import get_config
from sdcl.reference.pipeline import StableDiffusion, init_weights
from sdcl.reference.text_encoder import TextEncoder
from sdcl.reference.unet import UNet
from sdcl.reference.vae import VAE


@pytest.fixture
def prt(rt):
    """A runtime with the device's selection policy (the tiled, local-memory and fused variants run)."""
    r = Runtime(rt.device)
    r.policy = policy_for(r)
    return r


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_replayed_unet_equals_plain_calls_at_new_inputs(prt):
    cfg = get_config("tiny-sd1")
    unet = UNet(cfg.unet, {k: prt.to_device(v) for k, v in init_weights(cfg, seed=2)["unet"].items()},
                ops=DeviceOps(prt))
    replayed, rng = replayed_unet(prt, unet), np.random.default_rng(0)
    ctx = _f32(rng, 2, 77, cfg.unet.cross_attention_dim)
    for t in (999, [500, 20], 1):
        x = _f32(rng, 2, cfg.unet.in_channels, 8, 8)
        got = replayed(prt.to_device(x), t, prt.to_device(ctx)).get()
        want = unet(prt.to_device(x), t, prt.to_device(ctx)).get()
        np.testing.assert_array_equal(got, want)
        ctx = _f32(rng, *ctx.shape)
    (rec,) = replayed.recordings.values()
    assert rec.launches > 100


def test_replayed_text_encoder_equals_plain_calls_for_new_prompts(prt):
    """The token ids are the recording's input: each new prompt pair's replay equals a plain call at its ids (a
    replay that kept the recorded ids would give the first pair's embeddings), and bad ids are refused before the
    replay, as a plain call refuses them."""
    from sdcl.reference.tokenizer import CLIPTokenizer
    cfg = get_config("tiny-sd2")
    w = {k: prt.to_device(v) for k, v in init_weights(cfg, seed=2)["text_encoder"].items()}
    te = TextEncoder(cfg.text_encoder, w, ops=DeviceOps(prt))
    replayed, tok = replay.replayed(prt, te), CLIPTokenizer.from_config(cfg.text_encoder)
    outs = []
    for pair in (["", "a red bicycle"], ["blurry", "a lighthouse at dusk"], ["", "a fox"]):
        outs.append(replayed(tok(pair)).get())
        np.testing.assert_array_equal(outs[-1], te(tok(pair)).get())
    assert not np.array_equal(outs[0], outs[1])
    (rec,) = replayed.recordings.values()
    assert rec.launches > 10
    bad = tok(["", "a fox"])
    bad[1, 3] = cfg.text_encoder.vocab_size
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, "):
        replayed(bad)


def test_replay_refuses_another_shape_or_dtype(prt):
    ops, rng = DeviceOps(prt), np.random.default_rng(1)
    rec, _ = record(prt, ops.silu, prt.to_device(_f32(rng, 3, 5)))
    with pytest.raises(ValueError, match=r"recorded as float32\(3, 5\), got float32\(5, 3\)"):
        rec.replay(prt.to_device(_f32(rng, 5, 3)))
    with pytest.raises(ValueError, match=r"recorded as float32\(3, 5\), got float64\(3, 5\)"):
        rec.replay(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="recorded with 1 inputs, got 2"):
        rec.replay(np.zeros((3, 5), np.float32), 1)


def test_arrays_computed_from_the_output_stay_out_of_the_recording(prt):
    """The output carries the recording's allocator; what is computed from it must come from the runtime's pool,
    or the next replay would overwrite it (the recording's pool holds blocks of the output's size)."""
    ops, rng = DeviceOps(prt), np.random.default_rng(2)
    rec, out = record(prt, lambda x: ops.silu(ops.silu(ops.silu(x))), prt.to_device(_f32(rng, 64, 64)))
    doubled = out * 2                      # pyopencl arithmetic: allocated through out's allocator
    before = doubled.get()
    rec.replay(_f32(rng, 64, 64))
    prt.queue.finish()
    np.testing.assert_array_equal(doubled.get(), before)


def test_host_data_uploaded_inside_the_call_is_kept(prt):
    """A constant uploaded during the call dies with the op that read it; had its block gone back to the
    recording's pool, the next array of its size would take it and a replay would read that array instead."""
    ops, rng = DeviceOps(prt), np.random.default_rng(3)
    const = _f32(rng, 32, 16)

    def fn(x):
        y = ops.add(x, prt.to_device(const))
        return ops.silu(ops.silu(y))

    ref = lambda x: (lambda y: (lambda s: s / (1 + np.exp(-s)))(y / (1 + np.exp(-y))))(x + const)  # noqa: E731
    rec, _ = record(prt, fn, _f32(rng, 32, 16))
    for _ in range(2):
        x = _f32(rng, 32, 16)
        np.testing.assert_allclose(rec.replay(x).get(), ref(x), rtol=1e-5, atol=1e-6)


def test_a_first_axis_slice_copy_is_recorded(prt):
    ops, rng = DeviceOps(prt), np.random.default_rng(4)
    rec, _ = record(prt, lambda x: ops.silu(x[1:]), prt.to_device(_f32(rng, 3, 40)))
    assert [op for op, *_ in rec.commands] == ["copy", "silu"]
    x = _f32(rng, 3, 40)
    np.testing.assert_array_equal(rec.replay(x).get(), ops.silu(prt.to_device(x)[1:]).get())


def test_a_failed_recording_leaves_the_runtime_as_it_was(prt):
    allocator = prt.allocator

    def fails(x):
        DeviceOps(prt).silu(x)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        record(prt, fails, np.zeros(4, np.float32))
    assert prt.recording is None and prt.allocator is allocator


def test_pipeline_with_replay_equals_pipeline_without(prt):
    cfg = get_config("tiny-sd2")
    w = init_weights(cfg, seed=0)
    kw = dict(prompt="a red bicycle", seed=1, steps=3, height=16, width=16)
    pipes = [StableDiffusion(cfg, w, text_backend=opencl_backend_for(prt, replay=r),
                             unet_backend=opencl_backend_for(prt, replay=r),
                             vae_backend=opencl_backend_for(prt, replay=r)) for r in (True, False)]
    for prompt in ("a red bicycle", "a blue door", "a red bicycle"):   # the text encoder and VAE from image to image
        images = [p(prompt, seed=1, steps=2, height=16, width=16) for p in pipes]
        np.testing.assert_array_equal(*images)
    assert not np.array_equal(images[0], pipes[0]("a blue door", seed=1, steps=2, height=16, width=16))
    assert [len(p.recordings) for p in (pipes[0].text_encoder, pipes[0].unet, pipes[0].vae)] == [1, 1, 1]


def test_the_conformance_row_fails_when_replay_drops_the_new_inputs(prt, monkeypatch):
    cfg = get_config("tiny-sd2")
    unet = UNet(cfg.unet, {k: prt.to_device(v) for k, v in init_weights(cfg, seed=0)["unet"].items()},
                ops=DeviceOps(prt))
    row = models._replay_row(prt, "tiny-sd2", "float32", "dev", unet, np.random.default_rng(0))
    assert row.passed, row.failure
    monkeypatch.setattr(replay, "_fill", lambda rt, i, slot, a: None)     # replays run on the recorded inputs
    row = models._replay_row(prt, "tiny-sd2", "float32", "dev", unet, np.random.default_rng(0))
    assert not row.passed and "differs from a plain call" in row.failure


def test_the_text_and_vae_conformance_rows_fail_when_replay_drops_the_new_inputs(prt, monkeypatch):
    cfg = get_config("tiny-sd2")
    w = {m: {k: prt.to_device(v) for k, v in ws.items()} for m, ws in init_weights(cfg, seed=0).items()}
    te, _, vae = models._models(cfg, DeviceOps(prt), w)
    rows = models._text_and_vae_replay_rows(prt, "tiny-sd2", "float32", "dev", te, vae, cfg, np.random.default_rng(0))
    assert [r.passed for r in rows] == [True, True], [r.failure for r in rows]
    monkeypatch.setattr(replay, "_fill", lambda rt, i, slot, a: None)     # replays run on the recorded inputs
    rows = models._text_and_vae_replay_rows(prt, "tiny-sd2", "float32", "dev", te, vae, cfg, np.random.default_rng(0))
    assert [r.name.split("/")[1] for r in rows if not r.passed] == ["text_encoder_replay", "vae_decoder_replay"]
    assert all("differs from a plain call" in r.failure for r in rows)


def test_a_model_whose_weights_stream_is_not_recorded(prt):
    """A recording keeps what its call uploads: recording a streaming model would keep every weight on the device."""
    from sdcl.opencl_impl.streaming import StreamingWeights
    cfg = get_config("tiny-sd2")
    w = init_weights(cfg, seed=0)
    unet, te, vae = (cls(c, StreamingWeights(prt, w[m]), ops=DeviceOps(prt)) for cls, c, m in
                     ((UNet, cfg.unet, "unet"), (TextEncoder, cfg.text_encoder, "text_encoder"), (VAE, cfg.vae, "vae")))
    assert replayed_unet(prt, unet) is unet
    assert [replay.replayed(prt, m) is m for m in (unet, te, vae)] == [True, True, True]
    plain = VAE(cfg.vae, {k: prt.to_device(v) for k, v in w["vae"].items()}, ops=DeviceOps(prt))
    assert isinstance(replay.replayed(prt, plain), replay.ReplayedDecoder)


def test_what_a_launcher_derives_from_a_weight_is_made_once_per_recording(prt):
    """conv2d implicit_mma_f16's channels-last half copy of its weight (Runtime.derived; the PTX emulated where the
    device has none): a model replayed with keep_derived makes it once per weight, while recording, so its replays
    run one launch fewer than a plain call and still equal plain calls at new inputs (the copy lives outside the
    recording's pool, whose blocks the replayed commands rewrite); a weight passed as an input of the recording (not
    one of the model's) is copied at every replay; outside a recording, and without keep_derived, at every call."""
    rt = Runtime(prt.device)
    base, knobs = policy_for(rt), {"MMA_EMULATE": 0 if rt.info.get("nvidia_ptx") else 1}
    rt.policy = lambda op, args, kwargs=None: (("implicit_mma_f16", knobs) if op == "conv2d"
                                               else base(op, args, kwargs))
    ops, rng = DeviceOps(rt), np.random.default_rng(3)

    class Tiny:
        def __init__(self, w):
            self.w = w

        def __call__(self, x, w_in=None):
            # three arrays of the copy's 1152 bytes, freed before the conv: a pool would hand one to the conv's output
            # and one to the copy
            parts = [ops.silu(x) for _ in range(3)]
            x = ops.add(parts[0], parts[1])
            del parts
            y = ops.conv2d(x, self.w["conv.weight"], self.w["conv.bias"], 1, 1)
            return y if w_in is None else ops.conv2d(y, w_in, None, 1, 1)

    w = {"conv.weight": rt.to_device(_f32(rng, 8, 8, 3, 3)), "conv.bias": rt.to_device(_f32(rng, 8))}
    model, w_in = Tiny(w), rt.to_device(_f32(rng, 8, 8, 3, 3))

    def launches(fn):
        rt.events.clear()
        rt.profile = True
        try:
            out = fn().get()
        finally:
            rt.profile = False
        return out, len(rt.events)

    replayed = replay.ReplayedModel(rt, model, keep_derived=True)
    for i in range(3):
        x = _f32(rng, 1, 8, 6, 6)
        want, plain = launches(lambda: model(rt.to_device(x), w_in))
        got, ran = launches(lambda: replayed(rt.to_device(x), w_in))
        np.testing.assert_array_equal(got, want)
        if i:     # replays: the model's weight copied at recording only, w_in at every replay
            assert ran == plain - 1, (ran, plain)
    (rec,) = replayed.recordings.values()
    assert len(rec.made) == 1 and rec.launches == plain - 1
    assert launches(lambda: model(rt.to_device(x), w_in))[1] == plain    # a plain call copies both
    default = replay.ReplayedModel(rt, model)                              # without keep_derived: both, each replay
    for i in range(2):
        got, ran = launches(lambda: default(rt.to_device(x), w_in))
        np.testing.assert_array_equal(got, want)
    assert ran == plain and not next(iter(default.recordings.values())).made
