#!/usr/bin/env python3
"""A/B of knob settings of one variant at the registry's SD shapes on one device: the variant's kernel time at each
setting, the settings timed in turn shape by shape (so both see the same machine state), and each one's ratio to
the first.

    python scripts/ab_knobs.py --device nvidia --op conv2d --variant implicit_mma_f16 --dtype float16 LDSM=0 LDSM=1
    python scripts/ab_knobs.py ... --op conv2d --variant implicit_mma_f16 LDSM=1@/tmp/old-kernels LDSM=1

--case adds a shape the registry's SD cases lack (repeatable; random inputs; its parts apart by spaces or "_"):
arrays as DIMxDIM... (a vector as DIMx), positional integers as they are, keyword integers as NAME=VALUE, e.g. the
UNet's 1280-channel 3x3 at 16 x 16:

    python scripts/ab_knobs.py ... --op conv2d --case "2x1280x16x16 1280x1280x3x3 1280x padding=1" SPLITK=1 SPLITK=0

A setting is KNOB=VALUE[,KNOB=VALUE...] laid over the variant's declared knobs, with @DIR the kernel sources of DIR
(a kernels/ folder of another commit: `git archive HEAD~1 kernels | tar -x -C /tmp/old`) laid over sdcl's;
device time is the sum of the profiling events of the kernels one call launches (sdcl.perf.tuner.time_variant),
the median of --reps calls. --ptxas then rebuilds each program a setting built with NVIDIA's -cl-nv-verbose and
prints, per kernel, what the driver's PTX assembler reports (registers, stack frame, spill stores and loads) and
the PTX's counts of mma.sync, ldmatrix, cp.async and local-memory (stack) loads and stores: where a kernel's
arrays did not stay in registers; --ptx-dir DIR writes each program's PTX there. SDCL_BUILD_OPTIONS (e.g.
"-cl-opt-disable") applies to every setting of a run: compare runs for options.
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


def case_of(text: str, i: int):
    """A Case from --case's text (see the module's text)."""
    import re

    from sdcl.registry import Case
    from sdcl.registry.fuzz import randn
    args, kwargs = [], {}
    tokens = re.split(r"[\s_]+", text.strip())     # "_" for a shell that splits on spaces
    for j, tok in enumerate(tokens):
        if re.fullmatch(r"\d+(x\d+)*x?", tok) and "x" in tok:
            args.append(randn(500 + 16 * i + j, tuple(int(d) for d in tok.split("x") if d))[0])
        elif "=" in tok:
            name, _, value = tok.partition("=")
            kwargs[name] = int(value)
        else:
            args.append(int(tok))
    return Case(f"case_{i}_{'_'.join(tokens)}"[:38], tuple(args), kwargs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device")
    p.add_argument("--op", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("-k", dest="only", help="only the SD cases whose name contains this")
    p.add_argument("--case", action="append", default=[], help="a shape of its own (see the module's text)")
    p.add_argument("--ptxas", action="store_true", help="NVIDIA: each setting's kernels' registers, spills and PTX "
                                                         "instruction counts")
    p.add_argument("--ptx-dir", type=Path, help="with --ptxas: write each program's PTX here too")
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
    cases += [case_of(text, i) for i, text in enumerate(args.case)]
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
    if args.ptxas and not rt.info.get("nvidia_ptx"):
        print(f"--ptxas: {rt.info['device']} is not an NVIDIA GPU (-cl-nv-verbose is NVIDIA's)")
    elif args.ptxas:
        for path, built in programs.items():     # rt.programs: (file, options) of each program built, beside the
            for key in sorted(k for k in built if len(k) == 2 and isinstance(k[1], tuple)):   # kernels and limits
                ptxas(rt, path, *key, args.ptx_dir)
    return 0


def ptxas(rt, path: tuple, file: str, options: tuple, ptx_dir: Path | None = None) -> None:
    """One program rebuilt with -cl-nv-verbose: the assembler's lines of its build log, and its PTX's counts (the PTX
    itself in ptx_dir, named by the file and a hash of the options and kernel folder)."""
    import hashlib
    import re

    import pyopencl as cl

    from sdcl.registry import plugins
    from sdcl.opencl_impl.runtime import kernel_source
    source = kernel_source(file, path + tuple(plugins.KERNEL_DIRS))
    prg = cl.Program(rt.context, source).build(options=list(options) + ["-cl-nv-verbose"])
    log = prg.get_build_info(rt.device, cl.program_build_info.LOG)
    ptx = prg.get_info(cl.program_info.BINARIES)[0].decode(errors="replace")
    counts = {what: len(re.findall(pattern, ptx)) for what, pattern in (
        ("mma.sync", r"\bmma\.sync"), ("ldmatrix", r"\bldmatrix"), ("cp.async", r"\bcp\.async\.c[ag]"),
        ("ld.local", r"\bld\.local"), ("st.local", r"\bst\.local"))}
    print(f"# {file} from {path[0]}: {' '.join(options)}")    # SDCL_BUILD_OPTIONS's among them
    if ptx_dir is not None:
        ptx_dir.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha1(repr((str(path[0]), options)).encode()).hexdigest()[:10]
        out = ptx_dir / f"{file.replace('/', '-').removesuffix('.cl')}-{tag}.ptx"
        out.write_text(ptx)
        print(f"  PTX written to {out}")
    print("  PTX: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for line in log.splitlines():
        if "ptxas" in line and ("registers" in line or "stack" in line or "spill" in line or "Compiling" in line):
            print("  " + line.strip())


if __name__ == "__main__":
    sys.exit(main())
