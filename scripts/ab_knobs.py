#!/usr/bin/env python3
"""A/B of knob settings of one variant at the registry's SD shapes on one device: the variant's kernel time at each
setting, the settings timed in turn shape by shape (so both see the same machine state), and each one's ratio to
the first.

    python scripts/ab_knobs.py --device nvidia --op conv2d --variant implicit_mma_f16 --dtype float16 LDSM=0 LDSM=1
    python scripts/ab_knobs.py ... --op conv2d --variant implicit_mma_f16 LDSM=1@/tmp/old-kernels LDSM=1

A setting is KNOB=VALUE[,KNOB=VALUE...] laid over the variant's declared knobs, with @DIR the kernel sources of DIR
(a kernels/ folder of another commit: `git archive HEAD~1 kernels | tar -x -C /tmp/old`) laid over sdcl's;
device time is the sum of the profiling events of the kernels one call launches (sdcl.perf.tuner.time_variant),
the median of --reps calls.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def setting(text: str) -> dict:
    out = {}
    for part in filter(None, text.split("@")[0].split(",")):
        name, _, value = part.partition("=")
        out[name] = int(value)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device")
    p.add_argument("--op", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("-k", dest="only", help="only the SD cases whose name contains this")
    p.add_argument("settings", nargs="+", help="KNOB=VALUE[,KNOB=VALUE...]")
    args = p.parse_args()

    from sdcl.opencl_impl.backend import runtime_for
    from sdcl.perf.tuner import time_variant
    from sdcl.registry import REGISTRY

    rt = runtime_for(args.device)
    ours, programs = rt.kernel_path, {}

    def kernels_of(text: str) -> None:     # the setting's kernel sources, with the programs built from them
        path = (Path(text.split("@")[1]),) + ours if "@" in text else ours
        rt.kernel_path, rt.programs = path, programs.setdefault(path, rt.programs if path == ours else {})

    spec = REGISTRY[args.op]
    v = spec.variant(args.variant)
    settings = [v.complete({**v.knobs, **setting(s)}) for s in args.settings]
    cases = [c for c in spec.sd_cases() if not args.only or args.only in c.name]
    print(f"# {args.op}:{args.variant} {args.dtype} on {rt.info['device']}; ms of kernels, median of {args.reps}")
    print(f"# {'case':38} " + " ".join(f"{s:>16}" for s in args.settings))
    totals = [0.0] * len(settings)
    for case in cases:
        row = []
        for i, knobs in enumerate(settings):
            kernels_of(args.settings[i])
            try:
                row.append(time_variant(rt, args.op, args.variant, knobs, case, np.dtype(args.dtype), args.reps))
            except Exception as e:      # a setting this device refuses at this shape: said, not timed
                print(f"  {case.name}: {args.settings[i]}: {type(e).__name__}: {str(e).splitlines()[0]}")
                row.append(float("nan"))
        totals = [t + r for t, r in zip(totals, row)]
        print(f"  {case.name:38} " + " ".join(f"{r * 1e3:10.3f} {r / row[0]:5.2f}" for r in row))
    print(f"  {'total':38} " + " ".join(f"{t * 1e3:10.3f} {t / totals[0]:5.2f}" for t in totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
