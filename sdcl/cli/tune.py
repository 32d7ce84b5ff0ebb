"""`sdcl tune`: search each variant's knobs at the real SD shapes (or the shapes a model's pass sends), keep the
fastest verified in the device's tuning table ($SDCL_TUNING_DIR, else ~/.cache/sdcl/tuning)."""

from __future__ import annotations

import json
from pathlib import Path

from sdcl.cli.checks import integer, nonempty
from sdcl.errors import BadInput


def add_parser(sub, parents) -> None:
    t = sub.add_parser("tune", parents=parents,
                       help="search each variant's knobs at the real SD shapes; store the fastest verified in the "
                            "device's tuning table ($SDCL_TUNING_DIR, else ~/.cache/sdcl/tuning)")
    t.add_argument("--device", type=nonempty, help="device selector (PYOPENCL_CTX syntax); default: PoCL")
    t.add_argument("--model", default="all", choices=("sd15", "sd21-base", "all"), help="whose SD shapes to tune")
    t.add_argument("--ops", type=nonempty, help="comma-separated op names (default: every op with variants "
                                                         "or knobs)")
    t.add_argument("--max-configs", type=integer(1), default=24,
                   help="knob settings per variant (beyond: the default and the settings nearest it, a knob "
                        "apart, then two)")
    t.add_argument("--reps", type=integer(1), default=5)
    t.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                   help="time in this dtype (float16: the variants a float16 model runs, kept apart in the table "
                        "for float16 calls; their tiles differ from float32's)")
    t.add_argument("--trace-size", type=integer(8), metavar="SIZE",
                   help="tune, instead of the registry's SD cases, the shapes one text-encoder pass, UNet step and VAE "
                        "decode of --model at SIZE x SIZE send to each op (e.g. the GEMMs inside the conv variants) "
                        "that the table has no entry for")
    t.add_argument("--variants", type=nonempty,
                   help="comma-separated variant names: time only these (e.g. a variant just added) and merge their "
                        "timings into each shape's ranking in the table, traced shapes it already has included")
    t.add_argument("--write-default", metavar="FOLDER", nargs="?", const="",
                   help="only rebuild default.json (the knobs for devices without a table) from the device tables in "
                        "FOLDER (default: the tuning/ folder of this checkout or installation)")
    t.set_defaults(run=run)


def write_default_table(folder) -> int:
    """Rebuild default.json (the knobs for devices without a table) from the device tables in `folder`."""
    from sdcl.files import write_text
    from sdcl.perf.tuner import default_table
    from sdcl.resources import shipped_tuning_dir
    folder = Path(folder) if folder else shipped_tuning_dir()
    if not folder.is_dir():
        raise BadInput(f"--write-default {folder}: no such folder")
    tables = []
    for p in sorted(folder.glob("*.json")):
        if p.name != "default.json" and not p.name.endswith(".log.json"):
            try:
                tables.append(json.loads(p.read_text()))
            except ValueError as e:
                raise BadInput(f"{p}: not a tuning table ({e})") from None
    path = write_text(folder / "default.json", json.dumps(default_table(tables), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} from {len(tables)} device table(s)")
    return 0


def run(args) -> int:
    from sdcl.registry import REGISTRY
    if args.write_default is not None:
        return write_default_table(args.write_default)
    ops = args.ops.split(",") if args.ops else None
    unknown = [o for o in ops or [] if o not in REGISTRY]
    if unknown:
        raise BadInput(f"--ops: unknown op(s) {', '.join(unknown)}", hint="the registry has " + ", ".join(REGISTRY))
    variants = set(args.variants.split(",")) if args.variants else None
    declared = {v.name for op in ops or REGISTRY for v in REGISTRY[op].variants}
    if variants and variants - declared:
        raise BadInput(f"--variants: {', '.join(sorted(variants - declared))} is not a variant of "
                       f"{args.ops or 'any op'}", hint="declared: " + ", ".join(sorted(declared)))
    other = {"sd15": "sd21", "sd21-base": "sd15"}.get(args.model)
    if args.trace_size and other is None:
        raise BadInput("--trace-size needs --model sd15 or sd21-base (the model to trace)")

    def shapes_of_model(spec, case) -> bool:  # registry SD cases are named sd15_* / sd21_* (others: shared)
        return not args.trace_size and (other is None or not case.name.startswith(other))

    from sdcl.opencl_impl.backend import runtime_for
    from sdcl.perf.tuner import traced_cases, tune
    rt = runtime_for(args.device)
    extra = traced_cases(rt, args.model, args.trace_size) if args.trace_size else None
    tune(rt, ops=ops, max_configs=args.max_configs, reps=args.reps, case_filter=shapes_of_model, extra_cases=extra,
         variants=variants, dtype=args.dtype)
    return 0
