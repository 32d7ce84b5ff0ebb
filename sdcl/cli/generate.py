"""`sdcl generate`: text to image on the NumPy reference or the OpenCL device.

Every argument, the output path, the checkpoint and the run's memory footprint are checked before any weight is
built or any kernel compiled; the image is written atomically (a failure leaves an earlier file whole).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from sdcl.cli.checks import check_memory, existing, finite, integer, nonempty, output_file
from sdcl.errors import BadInput


def add_parser(sub, parents) -> None:
    from sdcl.reference.configs import CONFIGS
    from sdcl.reference.schedulers import SCHEDULERS
    g = sub.add_parser("generate", parents=parents, help="text to image")
    g.add_argument("prompt")
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--model", default="sd21-base", choices=sorted(CONFIGS))
    g.add_argument("--checkpoint", type=nonempty,
                   help="a real checkpoint: LDM .safetensors file or diffusers folder")
    g.add_argument("--weight-seed", type=integer(0), default=0,
                   help="seed of the random weights when no checkpoint")
    g.add_argument("--backend", choices=("reference", "opencl"), default="reference")
    g.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="weights and activations in memory (float16: reference backend, computed in float32)")
    g.add_argument("--storage", choices=("float32", "half"), default="float32",
                   help="OpenCL backend: half stores the linear and conv2d weights as float16 (half-storage variants, "
                        "float32 compute)")
    g.add_argument("--device", type=nonempty, help="OpenCL device selector (PYOPENCL_CTX syntax), for all "
                                                               "stages")
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


IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF"}


def check(args, config) -> tuple:
    """Every check that needs no weights and no kernels; returns (size, output path)."""
    from sdcl.reference.schedulers import steps_range
    out = output_file(args.output, "--output", IMAGE_SUFFIXES)
    if args.checkpoint:
        existing(args.checkpoint, "--checkpoint")
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
    if args.dtype == "float16" and args.backend != "reference":
        raise BadInput("--dtype float16 runs on the reference backend only: the OpenCL kernels compute in "
                       "float32 or float64")
    if args.storage == "half" and (args.backend == "reference" or args.dtype != "float32"):
        raise BadInput("--storage half stores the OpenCL backend's linear and conv2d weights as float16 beside "
                       "float32 compute: use it with --backend opencl and --dtype float32")
    if args.backend == "reference" and (args.device or args.text_device or args.vae_device):
        raise BadInput("--device, --text-device and --vae-device choose OpenCL devices: use them with --backend opencl")
    return size, out


def run(args) -> int:
    from PIL import Image

    from sdcl.files import write_bytes
    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import StableDiffusion

    config = get_config(args.model)
    size, out = check(args, config)
    devices = {}
    if args.backend == "opencl":
        from sdcl.opencl_impl.devices import select_device
        main = args.device
        devices = {stage: select_device(sel if sel is not None else main)
                   for stage, sel in (("text encoder", args.text_device), ("UNet", None), ("VAE", args.vae_device))}
    check_memory(config, size, 2 if args.dtype == "float16" else 4, devices)
    weights = _load_weights(args, config)
    if args.storage == "half":
        from sdcl.opencl_impl.storage import half_weights
        weights = {m: half_weights(ws) for m, ws in weights.items()}
    text_b, unet_b, vae_b = _backends(args)
    pipe = StableDiffusion(config, weights, text_backend=text_b, unet_backend=unet_b, vae_backend=vae_b)
    image = pipe(args.prompt, negative_prompt=args.negative_prompt, seed=args.seed, steps=args.steps,
                 guidance=args.guidance, height=size, width=size, sampler=args.sampler, eta=args.eta,
                 progress=not args.quiet, dtype=np.dtype(args.dtype))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=IMAGE_SUFFIXES[out.suffix.lower()])
    write_bytes(out, buf.getvalue())
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, model {config.name}, backend {args.backend}, "
          f"seed {args.seed}, {args.steps} steps, {args.sampler})")
    for stage, seconds in pipe.timings.items():
        print(f"  {stage:15} {seconds * 1e3:10.1f} ms")
    return 0


def _load_weights(args, config):
    from sdcl.reference.pipeline import init_weights
    dtype = np.dtype(args.dtype)
    if args.checkpoint:
        from sdcl.checkpoint import load_checkpoint
        return load_checkpoint(Path(args.checkpoint), config, dtype=dtype)
    return init_weights(config, seed=args.weight_seed, dtype=dtype)


def _backends(args):
    from sdcl.reference.pipeline import NUMPY
    if args.backend == "reference":
        return NUMPY, NUMPY, NUMPY
    from sdcl.opencl_impl.backend import opencl_backend
    main = args.device
    pick = lambda sel: opencl_backend(sel if sel is not None else main)  # noqa: E731
    return pick(args.text_device), pick(None), pick(args.vae_device)
