"""`sdcl ladder`: what each optimization buys on a device: cumulative rows of text encoder, UNet step and VAE decode
timings, beside torch."""

from __future__ import annotations

from sdcl.cli.checks import check_memory, integer, nonempty, writable_folder
from sdcl.errors import BadInput


def add_parser(sub, parents) -> None:
    from sdcl.reference.configs import CONFIGS
    la = sub.add_parser("ladder", parents=parents,
                        help="cumulative per-optimization timings of text encoder, UNet step, VAE decode")
    la.add_argument("--device", type=nonempty, help="device selector (PYOPENCL_CTX syntax); default: PoCL")
    la.add_argument("--model", default="sd21-base", choices=sorted(CONFIGS))
    la.add_argument("--size", type=integer(8), default=512, help="image size (latent = size / 8)")
    la.add_argument("--reps", type=integer(1), default=3)
    la.add_argument("--out", default="ladder", type=nonempty, help="folder for ladder-*.json and .md")
    la.add_argument("--no-torch", action="store_true", help="skip the torch rows")
    la.add_argument("--rows", type=nonempty, help="comma-separated row numbers to measure (0 = naive; "
                                                            "default: all)")
    la.set_defaults(run=run)


def run(args) -> int:
    from sdcl.opencl_impl.devices import select_device
    from sdcl.perf.ladder import rungs, run as ladder_run
    from sdcl.reference.configs import get_config
    writable_folder(args.out, "--out")
    config = get_config(args.model)
    if args.size % config.vae_scale:
        raise BadInput(f"--size must be a multiple of {config.vae_scale} for {config.name}, got {args.size}")
    check_memory(config, args.size, 4, {"ladder": select_device(args.device)})
    rows = None
    if args.rows:
        n = len(rungs())
        try:
            rows = [int(r) for r in args.rows.split(",")]
        except ValueError:
            raise BadInput(f"--rows must be comma-separated row numbers, got {args.rows!r}") from None
        if any(not 0 <= r < n for r in rows):
            raise BadInput(f"--rows must be in 0..{n - 1}, got {args.rows}")
    ladder_run(args.device, args.model, args.size, args.reps, args.out, torch_baseline=not args.no_torch, rows=rows)
    return 0
