"""`sdcl generate`: text to image on the NumPy reference or the OpenCL device.

Every argument, the output path, the checkpoint and the run's memory footprint are checked before any weight is
built or any kernel compiled; the image is written atomically (a failure leaves an earlier file whole).
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np

from sdcl.cli.checks import check_memory, existing, finite, integer, nonempty, output_file, writable_file
from sdcl.errors import BadInput


def add_parser(sub, parents) -> None:
    from sdcl.reference.configs import CONFIGS
    from sdcl.reference.schedulers import SCHEDULERS
    g = sub.add_parser("generate", parents=parents, help="text to image")
    g.add_argument("prompt")
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--model", choices=sorted(CONFIGS),
                   help=f"a built-in config (default: {DEFAULT_MODEL}, or with --checkpoint the checkpoint's own: its "
                        "config.json files, or an LDM file's shapes); with --checkpoint, the checkpoint must match it")
    g.add_argument("--checkpoint", type=nonempty,
                   help="a real checkpoint: LDM .safetensors file or diffusers folder")
    g.add_argument("--mismatch-report", type=nonempty, metavar="FILE",
                   help="when the checkpoint's keys do not match the config, write every offending key to FILE (the "
                        "error lists the first ten of each group)")
    g.add_argument("--weight-seed", type=integer(0), default=0,
                   help="seed of the random weights when no checkpoint")
    g.add_argument("--backend", choices=("reference", "opencl"), default="reference")
    g.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="weights and activations in memory (float16: stored in half between ops, computed in float32 "
                        "within each; on the OpenCL backend the variants that implement float16, tensor cores on "
                        "NVIDIA)")
    g.add_argument("--storage", choices=("float32", "half"), default="float32",
                   help="OpenCL backend: half stores the linear and conv2d weights as float16 (half-storage variants, "
                        "float32 compute)")
    g.add_argument("--device", type=nonempty, help="OpenCL device selector (PYOPENCL_CTX syntax), for all "
                                                               "stages")
    g.add_argument("--no-replay", action="store_true",
                   help="run every UNet step, text encoder call and VAE decode through the Python host code "
                        "(default: the launches of the first are recorded and replayed at the others)")
    g.add_argument("--keep-derived", action="store_true",
                   help="with replay, keep what a kernel derives from a weight (the tensor-core convolution's "
                        "channels-last copies) instead of making it at every step: faster, for a second copy of "
                        "those weights on the device")
    g.add_argument("--no-prebuild", action="store_true",
                   help="build each kernel when a stage first needs it, one by one (default: every kernel the call "
                        "will use is built ahead, in parallel threads)")
    g.add_argument("--text-device", type=nonempty, help="device for the text encoder, if not --device")
    g.add_argument("--vae-device", type=nonempty, help="device for the VAE decoder, if not --device")
    g.add_argument("--seed", type=integer(0), default=0)
    g.add_argument("--steps", type=integer(1), default=20)
    g.add_argument("--guidance", type=finite(), default=7.5)
    g.add_argument("--size", type=integer(1), help="image height and width (default: the model's)")
    g.add_argument("--sampler", default="ddim", choices=sorted(SCHEDULERS))
    g.add_argument("--eta", type=finite(0.0, 1.0), default=0.0,
                   help="DDIM's noise (0: deterministic DDIM, 1: DDPM-like); ddim only")
    g.add_argument("--output", "-o", default="out.png")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(run=run)


DEFAULT_MODEL = "sd21-base"
IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF"}


def check(args, config) -> tuple:
    """Every check that needs no weights and no kernels; returns (size, output path)."""
    from sdcl.reference.schedulers import steps_range
    out = output_file(args.output, "--output", IMAGE_SUFFIXES)
    if args.mismatch_report:
        if not args.checkpoint:
            raise BadInput("--mismatch-report lists a checkpoint's mismatched keys: use it with --checkpoint")
        writable_file(args.mismatch_report, "--mismatch-report")
    _text_to_image(config)
    size = config.vae.sample_size if args.size is None else args.size
    if size % config.vae_scale:
        raise BadInput(f"--size must be a multiple of {config.vae_scale} for {config.name} (the VAE's scale), got "
                       f"{size}", hint=f"e.g. --size {max(config.vae_scale, size // config.vae_scale * config.vae_scale)}")
    lo, hi = steps_range(args.sampler, config.scheduler)
    if not lo <= args.steps <= hi:
        raise BadInput(f"--steps must be in {lo}..{hi} for --sampler {args.sampler} with {config.name}'s schedule, "
                       f"got {args.steps}")
    if args.eta and args.sampler != "ddim":
        raise BadInput(f"--eta applies to --sampler ddim only, got --eta {args.eta:g} with --sampler {args.sampler}")
    if args.storage == "half" and (args.backend == "reference" or args.dtype != "float32"):
        raise BadInput("--storage half stores the OpenCL backend's linear and conv2d weights as float16 beside "
                       "float32 compute: use it with --backend opencl and --dtype float32")
    if args.backend == "reference" and (args.device or args.text_device or args.vae_device):
        raise BadInput("--device, --text-device and --vae-device choose OpenCL devices: use them with --backend opencl")
    return size, out


def _text_to_image(config) -> None:
    """The parts fit together as a text-to-image pipeline (always so for a built-in config; a checkpoint's own config
    may hold, say, an inpainting UNet)."""
    u, v, t = config.unet, config.vae, config.text_encoder
    if not u.in_channels == u.out_channels == v.latent_channels:
        raise BadInput(f"{config.name}: the UNet takes {u.in_channels} channels and gives {u.out_channels}, the VAE's "
                       f"latents have {v.latent_channels}: sdcl generate runs text to image, which needs the three "
                       "equal (an inpainting or otherwise conditioned UNet is not supported)")
    if u.cross_attention_dim != t.hidden_size:
        raise BadInput(f"{config.name}: the UNet cross-attends to {u.cross_attention_dim} channels, the text encoder "
                       f"gives {t.hidden_size}")


def model_config(args) -> tuple:
    """(config, the checkpoint's own CheckpointConfig or None): --model's config, or with --checkpoint alone the
    checkpoint's own (its notes say where it used defaults)."""
    from sdcl.reference.configs import get_config
    if args.checkpoint:
        existing(args.checkpoint, "--checkpoint")
    if args.model or not args.checkpoint:
        return get_config(args.model or DEFAULT_MODEL), None
    from sdcl.checkpoint import checkpoint_config
    own = checkpoint_config(Path(args.checkpoint))
    return own.config, own


def run(args) -> int:
    from PIL import Image

    from sdcl.files import write_bytes
    from sdcl.reference.pipeline import StableDiffusion

    config, own = model_config(args)
    size, out = check(args, config)
    devices = {}
    if args.backend == "opencl":
        from sdcl.opencl_impl.devices import select_device
        main = args.device
        devices = {stage: select_device(sel if sel is not None else main)
                   for stage, sel in (("text encoder", args.text_device), ("UNet", None), ("VAE", args.vae_device))}
    check_memory(config, size, 2 if args.dtype == "float16" else 4, devices)
    weights = _load_weights(args, own or config)
    for note in own.notes if own else ():      # after the checks and the loading: an error stays one line
        print(f"sdcl: note: {note}", file=sys.stderr)
    if args.storage == "half":
        from sdcl.opencl_impl.storage import half_weights
        weights = {m: half_weights(ws) for m, ws in weights.items()}
    text_b, unet_b, vae_b = _backends(args)
    if args.storage == "half" and args.backend == "opencl":   # the float16-computing variants serve it too
        from sdcl.opencl_impl.backend import runtime_for
        from sdcl.opencl_impl.storage import half_mode
        for sel in (args.text_device, None, args.vae_device):
            half_mode(runtime_for(sel if sel is not None else args.device))
    pipe = StableDiffusion(config, weights, text_backend=text_b, unet_backend=unet_b, vae_backend=vae_b)
    prebuilt = args.backend == "opencl" and not args.no_prebuild
    if prebuilt:                       # every program the call will use, built ahead in parallel threads
        from sdcl.opencl_impl import prebuild
        t0 = time.perf_counter()
        built = prebuild.pipeline(pipe, size, size, np.dtype(args.dtype), progress=not args.quiet)
        builds_s = time.perf_counter() - t0
    image = pipe(args.prompt, negative_prompt=args.negative_prompt, seed=args.seed, steps=args.steps,
                 guidance=args.guidance, height=size, width=size, sampler=args.sampler, eta=args.eta,
                 progress=not args.quiet, dtype=np.dtype(args.dtype))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=IMAGE_SUFFIXES[out.suffix.lower()])
    write_bytes(out, buf.getvalue())
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, model {config.name}, backend {args.backend}, "
          f"seed {args.seed}, {args.steps} steps, {args.sampler})")
    if prebuilt:
        print(f"  {'kernel builds':15} {builds_s * 1e3:10.1f} ms  ({built} programs built ahead, in parallel)")
    for stage, seconds in pipe.timings.items():
        print(f"  {stage:15} {seconds * 1e3:10.1f} ms")
    return 0


def _load_weights(args, config):
    """The checkpoint's weights (`config`: the named SDConfig or the checkpoint's own CheckpointConfig), else seeded
    random ones. A key mismatch names the first ten keys of each group; --mismatch-report writes them all."""
    from sdcl.reference.pipeline import init_weights
    dtype = np.dtype(args.dtype)
    if not args.checkpoint:
        return init_weights(config, seed=args.weight_seed, dtype=dtype)
    from sdcl.checkpoint import CheckpointError, load_checkpoint
    try:
        return load_checkpoint(Path(args.checkpoint), config, dtype=dtype)
    except CheckpointError as e:
        if e.details is None:
            raise
        if args.mismatch_report:
            from sdcl.files import write_text
            write_text(args.mismatch_report, e.details)
            more = f"every key is listed in {args.mismatch_report}"
        else:
            more = "--debug shows the first ten keys of each group, --mismatch-report FILE writes them all"
        e.hint = f"{e.hint}; {more}" if e.hint else more
        raise


def _backends(args):
    from sdcl.reference.pipeline import NUMPY
    if args.backend == "reference":
        return NUMPY, NUMPY, NUMPY
    from sdcl.opencl_impl.backend import opencl_backend
    main = args.device
    pick = lambda sel: opencl_backend(sel if sel is not None else main, replay=not args.no_replay,  # noqa: E731
                                      keep_derived=args.keep_derived)
    return pick(args.text_device), pick(None), pick(args.vae_device)
