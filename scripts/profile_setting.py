"""Where a split row's knob setting spends its time: cProfile of the gate's check of one or more settings of a row
(conformance.runner.check_row with `part`), in one process, as one gate worker runs them.

    python scripts/profile_setting.py --device nvidia linear:mma_f16_half:float16 0,1,2 [--profile thorough]

The first setting also computes the row's float64 references (held for the next ones, as in a worker).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from sdcl.conformance.runner import References, check_row, row_configs
from sdcl.opencl_impl.devices import select_device
from sdcl.opencl_impl.runtime import Runtime
from sdcl.registry import REGISTRY

import sdcl.conformance.profiles  # noqa: F401  (registers the Hypothesis profiles)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("row", help="op:variant:dtype")
    ap.add_argument("parts", help="the settings to check, by index in the row's order (comma-separated)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--profile", default="thorough")
    ap.add_argument("--top", type=int, default=35, help="functions listed per setting, by cumulative time")
    args = ap.parse_args()
    op, variant, dtype = args.row.split(":")
    rt = Runtime(select_device(args.device))
    spec = REGISTRY[op]
    configs = row_configs(rt, spec, spec.variant(variant), args.profile)
    print(f"{args.row}: {len(configs)} knob settings on {rt.info['device']}", flush=True)
    refs = References()
    for k in (int(x) for x in args.parts.split(",")):
        prof, t0 = cProfile.Profile(), time.perf_counter()
        prof.enable()
        row = check_row(rt, spec, variant, dtype, args.profile, refs=refs, configs=configs, part=k)
        prof.disable()
        print(f"setting {k} {configs[k]}: {time.perf_counter() - t0:.2f} s, {row.verdict} at {row.cases} cases "
              f"{row.failure[:300]}", flush=True)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue(), flush=True)


if __name__ == "__main__":
    main()
