#!/usr/bin/env python3
"""Prompt to image in half mode (linear and conv2d weights stored as float16; on an NVIDIA GPU the tensor-core
float16 variants), or with --float16 in float16 (every weight and activation in half), against the same pipeline in
float32 on the same device: the image's PSNR (at least 35 dB, the
check Apple publishes for its float16 port of SD) and the latents' relative L2 error. The gate runs the same check
on its tiny models (conformance/models.py, `half_storage/pipeline` and `pipeline_vs_float32` rows); this is the
full-size one.

    python scripts/half_psnr.py --device nvidia --model sd21-base --size 512 --steps 20
    python scripts/half_psnr.py --model tiny-sd2 --size 64 --steps 4        # any device, in seconds
    python scripts/half_psnr.py --float16 --device nvidia                  # float16 activations too

Weights: seeded random (no download), or --checkpoint PATH (a .safetensors SD checkpoint of --model's layout).
Exit status 1 when the PSNR is below 35 dB.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="PYOPENCL_CTX-style selector (default: sdcl's default device)")
    p.add_argument("--model", default="sd21-base")
    p.add_argument("--checkpoint", default=None, help="a checkpoint's path (default: seeded random weights)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompt", default="a lighthouse at dusk, oil painting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--float16", action="store_true", help="every weight and activation in float16")
    p.add_argument("--out", default=None, help="write the row as JSON here")
    args = p.parse_args(argv)

    from sdcl.conformance.models import _half_pipeline_row
    from sdcl.opencl_impl.backend import runtime_for
    from sdcl.opencl_impl.storage import half_weights
    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import init_weights
    rt = runtime_for(args.device)
    config = get_config(args.model)
    if args.checkpoint:
        from sdcl.checkpoint import load_checkpoint
        weights = load_checkpoint(args.checkpoint, config)
    else:
        weights = init_weights(config, seed=0)
    w32 = {m: {k: np.asarray(v, np.float32) for k, v in ws.items()} for m, ws in weights.items()}
    del weights
    half = (lambda ws: {k: v.astype(np.float16) for k, v in ws.items()}) if args.float16 else half_weights
    w_half = {m: {k: rt.to_device(v) for k, v in half(ws).items()} for m, ws in w32.items()}
    row = _half_pipeline_row(rt, config, args.model, rt.info["device"], w32, w_half,
                             dtype="float16" if args.float16 else "float32", prompt=args.prompt,
                             seed=args.seed, steps=args.steps, height=args.size, width=args.size)
    print(f"{args.model} {args.size}x{args.size}, {args.steps} steps, on {rt.info['device']}: {row.metric} "
          f"({row.seconds:.1f} s) -> {'pass' if row.passed else 'FAIL'}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"model": args.model, "size": args.size, "steps": args.steps, "device": rt.info["device"],
                       "float16": args.float16,
                       "passed": row.passed, "metric": row.metric, "latent_rel_l2": row.worst_rel_l2}, f, indent=1)
    return 0 if row.passed else 1


if __name__ == "__main__":
    sys.exit(main())
