"""`sdcl ladder`: what each optimization buys on a device, as cumulative rows (like the paper's per-technique table).

The rows come from the variants' declarations (Variant.tier, in the order of sdcl.registry.TIERS). Row i allows
the variants introduced by rows 0..i (the selection policy still picks, per shape, the fastest
tuned one among them, or the most advanced one that handles the shape). Columns: text encoder (batch 2 x 77
tokens), one UNet step (batch 2 = classifier-free guidance, latent size/8), VAE decode (one image), peak device
memory; and torch rows measured in the same run on the same hardware (CPU torch for a CPU device; CUDA fp32 with
TF32 off, TF32 and fp16 for an NVIDIA GPU when torch sees one).
"""

from __future__ import annotations

import functools
import gc
import json
import time
from pathlib import Path

import numpy as np

from sdcl.files import write_text
from sdcl.registry import REGISTRY, tiers

# Whole-model modes: the tier that switches one on, and the ladder's last row, which streams each layer's weights.
MODES = {"half storage": "half"}
REPLAY_ROW = "+ replayed launches"
FLOAT16_ROW = "+ float16 activations"
STREAMING_ROW = "+ streaming"


def rungs() -> list:
    """The ladder's rows, each (name, {op: [variants it introduces]}, modes it switches on): one row per tier that
    some variant names (sdcl.registry.tiers(), in order), with replayed launches (the UNet step's launches recorded
    once and replayed: sdcl.opencl_impl.replay) after the last float32 kernel row and before the rows that change
    the weights' storage, then float16 (every weight and activation in half: the variants that implement float16),
    then streaming. Read from the variants' declarations."""
    out = []
    for tier in tiers():
        ops = {spec.name: [v.name for v in spec.variants if v.tier == tier] for spec in REGISTRY.values()}
        ops = {op: names for op, names in ops.items() if names}
        if ops:
            out.append(("naive" if tier == "naive" else f"+ {tier}", ops, {MODES[tier]} if tier in MODES else set()))
    first_mode = next((i for i, (_, _, modes) in enumerate(out) if modes), len(out))
    out.insert(first_mode, (REPLAY_ROW, {}, {"replay"}))
    return out + [(FLOAT16_ROW, {}, {"float16"}), (STREAMING_ROW, {}, {"streaming"})]


def allowed_through(i: int) -> dict:
    """op -> the variants rows 0..i allow, in declaration order (the order untuned selection reads)."""
    names = {n for _, ops, _ in rungs()[: i + 1] for vs in ops.values() for n in vs}
    return {spec.name: [v.name for v in spec.variants if v.name in names or v.name == "naive"]
            for spec in REGISTRY.values()}


def _for_device(i: int, info: dict) -> bool:
    """Whether some variant row i introduces can run on this device (type and features): the tensor-core row needs
    NVIDIA PTX, so on other devices it is not measured."""
    _, ops, _ = rungs()[i]
    named = [REGISTRY[op].variant(n) for op, names in ops.items() for n in names]
    return not named or any(v.runs_on(info) for v in named)


def modes_through(i: int) -> set:
    """The whole-model modes rows 0..i switch on: "half" (linear and conv2d weights stored as float16,
    sdcl.opencl_impl.storage.half_weights), "replay" (the UNet step replayed), "float16" (every weight, input and
    activation in float16), "streaming" (each layer's weights uploaded when used; its UNet is not replayed, since a
    recording keeps what a call uploads)."""
    return {m for _, _, modes in rungs()[: i + 1] for m in modes}


def _time(fn, sync, reps: int) -> float:
    """Median wall seconds of fn() after one warm-up call (kernel builds, first-touch allocations)."""
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _inputs(config, size: int, rng):
    from sdcl.reference.tokenizer import CLIPTokenizer
    ids = CLIPTokenizer.from_config(config.text_encoder)(["", "a photograph of an astronaut riding a horse"])
    h = size // config.vae_scale
    latents = rng.standard_normal((2, config.unet.in_channels, h, h)).astype(np.float32)
    ctx = rng.standard_normal((2, 77, config.unet.cross_attention_dim)).astype(np.float32)
    z = rng.standard_normal((1, config.vae.latent_channels, h, h)).astype(np.float32)
    return ids, latents, ctx, z


def stage_calls(rt, config, dev: dict, inputs: tuple, replay: bool = False, dtype=np.float32) -> dict:
    """stage -> a call of that stage on the device: the text encoder (batch 2), one UNet step (batch 2, CFG, t = 999)
    and the VAE decode, with the models built over dev (model -> weights) and inputs from _inputs() (as dtype: the
    float16 rows' models take float16). With replay, each model's first call records its launches and the later
    calls replay them (as the pipeline's loop does with the UNet, and its text encoder and VAE decoder from prompt
    to prompt)."""
    from sdcl.opencl_impl.ops import DeviceOps
    from sdcl.opencl_impl.replay import replayed
    from sdcl.reference.text_encoder import TextEncoder
    from sdcl.reference.unet import UNet
    from sdcl.reference.vae import VAE

    ids, latents, ctx, z = inputs
    ops = DeviceOps(rt)
    text = TextEncoder(config.text_encoder, dev["text_encoder"], ops=ops)
    unet = UNet(config.unet, dev["unet"], ops=ops)
    vae = VAE(config.vae, dev["vae"], ops=ops)
    if replay:
        text, unet, vae = (replayed(rt, m) for m in (text, unet, vae))
    d_lat, d_ctx, d_z = (rt.to_device(a.astype(dtype)) for a in (latents, ctx, z))
    return {"text_encoder": lambda: text(ids),
            "unet": functools.partial(unet, d_lat, np.array([999, 999]), d_ctx),    # .func: the (replayed) UNet
            "vae": lambda: vae.decode(d_z)}


def measure_opencl(rt, config, weights, size: int, reps: int, log=print, stages=("text_encoder", "unet", "vae"),
                   rows_wanted=None) -> list:
    """One ladder row per rung on the device (only the rungs in rows_wanted, if given)."""
    from sdcl.opencl_impl.selection import Policy, load_table
    from sdcl.opencl_impl.storage import half_weights
    from sdcl.opencl_impl.streaming import StreamingWeights
    from sdcl.perf.measure import tracking

    pool = tracking(rt)
    table = load_table(rt.info, rt.tuning_dirs)
    inputs = _inputs(config, size, np.random.default_rng(0))
    host = weights
    dev = {m: {k: rt.to_device(v) for k, v in ws.items()} for m, ws in host.items()}
    mode = set()
    rows = []
    for i, (name, _, _) in enumerate(rungs()):
        if rows_wanted is not None and i not in rows_wanted:
            continue
        row = {"row": name, "registered": True}
        if not _for_device(i, rt.info):
            rows.append({**row, "not_for_device": True})
            log(f"  {name:28} not measured: its variants do not run on this device")
            continue
        rt.policy = Policy(table, allowed_through(i), info=rt.info, half="half" in modes_through(i))
        if modes_through(i) != mode:
            mode = modes_through(i)
            if "float16" in mode:
                host = {m: {k: np.asarray(v, np.float16) for k, v in ws.items()} for m, ws in weights.items()}
            elif "half" in mode:
                host = {m: half_weights(ws) for m, ws in weights.items()}
            del dev
            gc.collect()
            pool.free_held()
            if "streaming" in mode:   # weights stay on the host; each layer's are uploaded when used and freed after
                dev = {m: StreamingWeights(rt, ws) for m, ws in host.items()}
            else:
                dev = {m: {k: rt.to_device(v) for k, v in ws.items()} for m, ws in host.items()}
        pool.reset()
        calls = stage_calls(rt, config, dev, inputs, replay="replay" in mode and "streaming" not in mode,
                            dtype=np.float16 if "float16" in mode else np.float32)
        for stage in stages:
            t = _time(calls[stage], rt.queue.finish, reps)
            row[f"{stage}_ms"] = t * 1e3
            log(f"  {name:28} {stage:13} {t * 1e3:11.1f} ms")
        # resident weights + activations + scratch at the peak, and what a replayed UNet's recording holds
        held = sum(r.device_bytes for r in getattr(calls["unet"].func, "recordings", {}).values())
        row["peak_device_mib"] = (pool.peak + held) / 2**20
        row["variants"] = sorted({f"{op}:{v}" for (op, _), (v, _) in rt.policy.choices.items() if v != "naive"})
        rows.append(row)
        del calls     # the models and their device inputs
        gc.collect()
    rt.policy = None
    return rows


def measure_torch(config, size: int, reps: int, device: str, log=print, stages=("text_encoder", "unet", "vae")) -> list:
    """torch rows: eager diffusers/transformers at the same sizes (random weights: timing does not depend on them)."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    from sdcl.conformance.oracles import clip_text_model, diffusers_unet, diffusers_vae

    diffusers_logging.set_verbosity_error()  # no advice about from_pretrained(torch_dtype=...) on every cast
    modes = [("torch CPU fp32", torch.float32, False)] if device == "cpu" else \
        [("torch CUDA fp32 (TF32 off)", torch.float32, False), ("torch CUDA TF32", torch.float32, True),
         ("torch CUDA fp16", torch.float16, False)]
    ids, latents, ctx, z = _inputs(config, size, np.random.default_rng(0))
    models = {"text_encoder": clip_text_model(config.text_encoder), "unet": diffusers_unet(config.unet),
              "vae": diffusers_vae(config.vae)}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for label, dtype, tf32 in modes:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        row = {"row": label, "registered": True}
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            m = {k: v.to(device=device, dtype=dtype) for k, v in models.items()}
            t_ids = torch.from_numpy(ids).to(device)
            t_lat = torch.from_numpy(latents).to(device, dtype)
            t_ctx = torch.from_numpy(ctx).to(device, dtype)
            t_z = torch.from_numpy(z).to(device, dtype)
            t_step = torch.tensor([999, 999], device=device)
            calls = {"text_encoder": lambda: m["text_encoder"](t_ids),
                     "unet": lambda: m["unet"](t_lat, t_step, t_ctx),
                     "vae": lambda: m["vae"].decode(t_z)}
            for stage in stages:
                t = _time(calls[stage], sync, reps)
                row[f"{stage}_ms"] = t * 1e3
                log(f"  {label:28} {stage:13} {t * 1e3:11.1f} ms")
        if device == "cuda":
            row["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
        rows.append(row)
        del m
    return rows


def to_markdown(result: dict) -> str:
    lines = [f"# Ladder: {result['model']} at {result['size']}x{result['size']} on {result['device']}", "",
             result.get("note", ""), "",
             "| row | text encoder (ms) | UNet step, batch 2 (ms) | VAE decode (ms) | peak device memory (MiB) | note |",
             "|---|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        def f(k):
            v = r.get(k)
            return f"{v:,.1f}" if isinstance(v, (int, float)) else "-"
        note = "" if r.get("registered", True) else "no new variant registered: same as the row above"
        if r.get("not_for_device"):
            note = "its variants do not run on this device: not measured"
        lines.append(f"| {r['row']} | {f('text_encoder_ms')} | {f('unet_ms')} | {f('vae_ms')} | "
                     f"{f('peak_device_mib')} | {note} |")
    return "\n".join(lines) + "\n"


def run(device: str | None, model: str, size: int, reps: int, out: str, torch_baseline: bool = True,
        seed: int = 0, log=print, rows=None) -> dict:
    from sdcl.opencl_impl.backend import runtime_for
    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import init_weights

    config = get_config(model)
    rt = runtime_for(device)
    log(f"ladder: {model} at {size}x{size} on {rt.info['platform']} / {rt.info['device']}")
    weights = init_weights(config, seed=seed)
    measured = measure_opencl(rt, config, weights, size, reps, log, rows_wanted=rows)
    if torch_baseline:
        import torch
        tdev = "cuda" if rt.info["type"] == "GPU" and "nvidia" in rt.info["platform"].lower() \
            and torch.cuda.is_available() else "cpu"
        measured += measure_torch(config, size, reps, tdev, log)
    result = {"device": f"{rt.info['platform']} / {rt.info['device']}", "model": model, "size": size,
              "reps": reps, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": measured,
              "note": f"Median of {reps} timed runs after one warm-up; wall time with the queue drained."}
    folder = Path(out)
    stem = f"ladder-{model}-{size}-{rt.info['type'].lower()}" + ("" if rows is None else "-rows")
    write_text(folder / f"{stem}.json", json.dumps(result, indent=1))
    write_text(folder / f"{stem}.md", to_markdown(result))
    log(f"wrote {folder / stem}.json and .md")
    return result
