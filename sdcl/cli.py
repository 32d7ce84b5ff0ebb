"""The `sdcl` command: devices, generate, conformance (and the perf commands as they land)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _cmd_devices(args) -> int:
    from sdcl.opencl_impl.devices import DeviceError, default_device, device_info, platforms
    plats = platforms()
    if not plats:
        default_device()  # raises the error that says how to install PoCL
    try:
        default = default_device().int_ptr
    except DeviceError:
        default = None
    rows = []
    for i, p in enumerate(plats):
        for j, d in enumerate(p.get_devices()):
            info = {"selector": f"{i}:{j}", **device_info(d), "default": d.int_ptr == default}
            rows.append(info)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        star = "*" if r["default"] else " "
        print(f"{star} {r['selector']:5} {r['platform']} / {r['device']} ({r['type']}, {r['version']})")
        print(f"        compute units {r['compute_units']}, max work-group {r['max_work_group_size']}, "
              f"local mem {r['local_mem_kib']} KiB, global mem {r['global_mem_mib']} MiB "
              f"(max alloc {r['max_alloc_mib']} MiB), fp64 {'yes' if r['fp64'] else 'no'}, "
              f"fp16 {'yes' if r['fp16'] else 'no'}")
    print("(* = default; select with --device SELECTOR or PYOPENCL_CTX=SELECTOR)")
    return 0


def _load_weights(args, config):
    from sdcl.reference.pipeline import init_weights
    dtype = np.dtype(args.dtype)
    if args.checkpoint:
        from sdcl.checkpoint import load_checkpoint
        return load_checkpoint(args.checkpoint, config, dtype=dtype)
    return init_weights(config, seed=args.weight_seed, dtype=dtype)


def _backends(args):
    from sdcl.reference.pipeline import NUMPY
    if args.backend == "reference":
        return NUMPY, NUMPY, NUMPY
    from sdcl.opencl_impl.backend import opencl_backend
    main = args.device
    pick = lambda sel: opencl_backend(sel if sel is not None else main)
    return pick(args.text_device), pick(None), pick(args.vae_device)


def _cmd_generate(args) -> int:
    from PIL import Image

    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import StableDiffusion

    config = get_config(args.model)
    if args.dtype == "float16" and args.backend != "reference":
        raise ValueError("--dtype float16 runs on the reference backend only: the OpenCL kernels compute in "
                         "float32 or float64")
    weights = _load_weights(args, config)
    if args.storage == "half":
        if args.backend == "reference" or args.dtype != "float32":
            raise ValueError("--storage half stores the OpenCL backend's linear and conv2d weights as float16 beside "
                             "float32 compute: use it with --backend opencl and --dtype float32")
        from sdcl.opencl_impl.storage import half_weights
        weights = {m: half_weights(ws) for m, ws in weights.items()}
    text_b, unet_b, vae_b = _backends(args)
    pipe = StableDiffusion(config, weights, text_backend=text_b, unet_backend=unet_b, vae_backend=vae_b)
    size = args.size or config.vae.sample_size
    image = pipe(args.prompt, negative_prompt=args.negative_prompt, seed=args.seed, steps=args.steps,
                 guidance=args.guidance, height=size, width=size, sampler=args.sampler, eta=args.eta,
                 progress=not args.quiet, dtype=np.dtype(args.dtype))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, model {config.name}, backend {args.backend}, "
          f"seed {args.seed}, {args.steps} steps, {args.sampler})")
    for stage, seconds in pipe.timings.items():
        print(f"  {stage:15} {seconds * 1e3:10.1f} ms")
    return 0


def _write_default_table(folder) -> int:
    """Rebuild default.json (the knobs for devices without a table) from the device tables in `folder`."""
    import json

    from sdcl.files import write_text
    from sdcl.perf.tuner import default_table
    from sdcl.resources import shipped_tuning_dir
    folder = Path(folder) if folder else shipped_tuning_dir()
    tables = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.name != "default.json"]
    path = write_text(folder / "default.json", json.dumps(default_table(tables), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} from {len(tables)} device table(s)")
    return 0


def _cmd_tune(args) -> int:
    from sdcl.opencl_impl.backend import runtime_for
    from sdcl.perf.tuner import tune
    if args.write_default:
        return _write_default_table(args.write_default)
    ops = args.ops.split(",") if args.ops else None
    other = {"sd15": "sd21", "sd21-base": "sd15"}.get(args.model)

    def shapes_of_model(spec, case) -> bool:  # registry SD cases are named sd15_* / sd21_* (others: shared)
        return not args.trace_size and (other is None or not case.name.startswith(other))

    rt = runtime_for(args.device)
    extra = None
    if args.trace_size:
        if other is None:
            raise SystemExit("sdcl tune --trace-size needs --model sd15 or sd21-base (the model to trace)")
        from sdcl.perf.tuner import traced_cases
        extra = traced_cases(rt, args.model, args.trace_size)
    tune(rt, ops=ops, max_configs=args.max_configs, reps=args.reps, case_filter=shapes_of_model, extra_cases=extra)
    return 0


def _cmd_ladder(args) -> int:
    from sdcl.perf.ladder import run
    rows = [int(r) for r in args.rows.split(",")] if args.rows else None
    run(args.device, args.model, args.size, args.reps, args.out, torch_baseline=not args.no_torch, rows=rows)
    return 0


def _cmd_conformance(args) -> int:
    from sdcl.conformance.gate import main as gate_main
    return gate_main(args)


def _cmd_perf_run(args) -> int:
    from sdcl.perf import cli
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return cli.run(args.db, args.device, args.quick, args.full_size, args.k, extra, args.keep_json, args.processes)


def _cmd_perf_import(args) -> int:
    from sdcl.perf import cli
    return cli.import_file(args.db, args.files, args.commit)


def _cmd_perf_check(args) -> int:
    from sdcl.perf import cli
    return cli.check(args.db, args.device, args.threshold, args.alpha, args.metric, args.verbose)


def _cmd_perf_peak(args) -> int:
    from sdcl.perf import cli
    return cli.peak(args.device, args.refresh)


def _cmd_dashboard(args) -> int:
    from sdcl.perf import cli
    return cli.dashboard(args.db, args.out, args.ladder)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sdcl", description="Stable Diffusion on OpenCL, checked against a NumPy reference")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("devices", help="list OpenCL platforms and devices with the capabilities that matter")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=_cmd_devices)

    g = sub.add_parser("generate", help="text to image")
    g.add_argument("prompt")
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--model", default="sd21-base", help="sd15, sd21-base, tiny-sd1, tiny-sd2")
    g.add_argument("--checkpoint", help="a real checkpoint: LDM .safetensors file or diffusers folder")
    g.add_argument("--weight-seed", type=int, default=0, help="seed of the random weights when no checkpoint")
    g.add_argument("--backend", choices=("reference", "opencl"), default="reference")
    g.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="weights and activations in memory (float16: reference backend, computed in float32)")
    g.add_argument("--storage", choices=("float32", "half"), default="float32",
                   help="OpenCL backend: half stores the linear and conv2d weights as float16 (half-storage variants, "
                        "float32 compute)")
    g.add_argument("--device", help="OpenCL device selector (PYOPENCL_CTX syntax), for all stages")
    g.add_argument("--text-device", help="device for the text encoder, if not --device")
    g.add_argument("--vae-device", help="device for the VAE decoder, if not --device")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--guidance", type=float, default=7.5)
    g.add_argument("--size", type=int, help="image height and width (default: the model's)")
    g.add_argument("--sampler", default="ddim", choices=("ddim", "euler", "dpmpp_2m"))
    g.add_argument("--eta", type=float, default=0.0)
    g.add_argument("--output", "-o", default="out.png")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(fn=_cmd_generate)

    t = sub.add_parser("tune", help="search each variant's knobs at the real SD shapes; store the fastest verified in "
                                    "the device's tuning table ($SDCL_TUNING_DIR, else ~/.cache/sdcl/tuning)")
    t.add_argument("--device", help="device selector (PYOPENCL_CTX syntax); default: PoCL")
    t.add_argument("--model", default="all", choices=("sd15", "sd21-base", "all"), help="whose SD shapes to tune")
    t.add_argument("--ops", help="comma-separated op names (default: every op with variants or knobs)")
    t.add_argument("--max-configs", type=int, default=24, help="knob settings per variant (random sample beyond)")
    t.add_argument("--reps", type=int, default=5)
    t.add_argument("--trace-size", type=int, metavar="SIZE",
                   help="tune, instead of the registry's SD cases, the shapes one text-encoder pass, UNet step and VAE "
                        "decode of --model at SIZE x SIZE send to each op (e.g. the GEMMs inside the conv variants) "
                        "that the database has no entry for")
    t.add_argument("--write-default", metavar="FOLDER", nargs="?", const="",
                   help="only rebuild default.json (the knobs for devices without a table) from the device tables in "
                        "FOLDER (default: the tuning/ folder of this checkout or installation)")
    t.set_defaults(fn=_cmd_tune)

    la = sub.add_parser("ladder", help="cumulative per-optimization timings of text encoder, UNet step, VAE decode")
    la.add_argument("--device", help="device selector (PYOPENCL_CTX syntax); default: PoCL")
    la.add_argument("--model", default="sd21-base", help="sd21-base, sd15 (or a tiny config)")
    la.add_argument("--size", type=int, default=512, help="image size (latent = size / 8)")
    la.add_argument("--reps", type=int, default=3)
    la.add_argument("--out", default="ladder", help="folder for ladder-*.json and .md")
    la.add_argument("--no-torch", action="store_true", help="skip the torch rows")
    la.add_argument("--rows", help="comma-separated row numbers to measure (0 = naive; default: all)")
    la.set_defaults(fn=_cmd_ladder)

    c = sub.add_parser("conformance", help="the conformance gate: every op, layer and the pipeline vs the reference")
    c.add_argument("--device", help="device selector (PYOPENCL_CTX syntax); default: PoCL")
    c.add_argument("--profile", default="ci", choices=("ci", "dev", "thorough"))
    c.add_argument("--report", default="conformance-report", help="folder for report.json, junit.xml, report.md")
    c.add_argument("--ops", help="comma-separated op names (default: all)")
    c.add_argument("--skip-models", action="store_true", help="ops only")
    c.add_argument("--jobs", "-j", type=int, default=0,
                   help="worker processes, each with its own context on the device (default: one per core, at most 4; "
                        "1: in this process)")
    c.set_defaults(fn=_cmd_conformance)

    # perf: benchmarks beside a torch baseline, their history, regression check and dashboard (docs/PERF.md)
    from sdcl.perf.history import default_path as _perf_db
    pf = sub.add_parser("perf", help="benchmarks: run, import, check for regressions, device peak")
    psub = pf.add_subparsers(dest="perf_command", required=True)
    pr = psub.add_parser("run", help="run the benchmark suite (pytest perf) and append the run to the history")
    pr.add_argument("--device", help="OpenCL device selector (PYOPENCL_CTX syntax); default: PoCL")
    pr.add_argument("--db", default=_perf_db(), help="history file (default: $SDCL_PERF_DB or perf-history.sqlite)")
    pr.add_argument("--quick", action="store_true", help="only the CI subset (pytest -m quick)")
    pr.add_argument("--full-size", action="store_true", help="include the full-size end-to-end runs (-m fullsize)")
    pr.add_argument("-k", help="pytest -k expression: only the matching benchmarks")
    pr.add_argument("--keep-json", help="also keep the run's pytest-benchmark JSON (processes merged) at this path")
    pr.add_argument("--processes", type=int, default=2,
                    help="run the suite in this many processes, one after another, and merge their rounds "
                         "(default 2, as asv: the regression check needs the processes of two runs not to overlap)")
    pr.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: more pytest arguments")
    pr.set_defaults(fn=_cmd_perf_run)
    pi = psub.add_parser("import", help="import pytest-benchmark JSON files (--benchmark-json), or merge other history "
                                           ".sqlite files, into the history")
    pi.add_argument("files", nargs="+")
    pi.add_argument("--db", default=_perf_db())
    pi.add_argument("--commit", help="record this commit id instead of the file's commit_info")
    pi.set_defaults(fn=_cmd_perf_import)
    pc = psub.add_parser("check", help="compare the newest run with the history; exit 1 on a regression")
    pc.add_argument("--db", default=_perf_db())
    pc.add_argument("--device", help="device key, or a substring of one (e.g. portable); default: every device")
    pc.add_argument("--threshold", type=float, default=0.05, help="smallest slowdown that counts (default 0.05)")
    pc.add_argument("--alpha", type=float, default=0.01, help="Mann-Whitney significance level (default 0.01)")
    pc.add_argument("--metric", choices=("kernel", "wall"), default="kernel",
                    help="kernel: profiling-event rounds where recorded (default); wall: pytest-benchmark's rounds")
    pc.add_argument("--verbose", "-v", action="store_true", help="a line for every benchmark")
    pc.set_defaults(fn=_cmd_perf_check)
    pp = psub.add_parser("peak", help="the device's measured peak FLOP/s and bandwidth (cached per device)")
    pp.add_argument("--device")
    pp.add_argument("--refresh", action="store_true", help="measure again")
    pp.set_defaults(fn=_cmd_perf_peak)

    db = sub.add_parser("dashboard", help="write a static, offline dashboard of the benchmark history")
    db.add_argument("--db", default=_perf_db())
    db.add_argument("--out", default="perf-dashboard", help="output folder (index.html and one page per device)")
    db.add_argument("--ladder", action="append", help="a ladder JSON to show (also read: ladder*.json beside --db)")
    db.set_defaults(fn=_cmd_dashboard)
    return p


def _device_errors() -> tuple:
    """The OpenCL runtime's own errors (no device, kernel build failure) print as one clear line too."""
    try:
        from sdcl.opencl_impl.devices import DeviceError
        from sdcl.opencl_impl.runtime import KernelBuildError
        return (DeviceError, KernelBuildError)
    except ImportError:
        return ()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, *_device_errors()) as e:
        print(f"sdcl {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
