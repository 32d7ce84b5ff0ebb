"""`sdcl conformance`: the gate, every op variant, the model layers and the tiny pipeline against the reference."""

from __future__ import annotations

from sdcl.cli.checks import nonempty
from sdcl.conformance import PROFILES


def add_parser(sub, parents) -> None:
    c = sub.add_parser("conformance", parents=parents,
                       help="the conformance gate: every op, layer and the pipeline vs the reference")
    c.add_argument("--device", type=nonempty, help="device selector (PYOPENCL_CTX syntax); default: PoCL")
    c.add_argument("--profile", default="ci", choices=PROFILES)
    c.add_argument("--report", default="conformance-report", type=nonempty,
                   help="folder for report.json, junit.xml, report.md")
    c.add_argument("--ops", type=nonempty, help="comma-separated op names (default: all)")
    c.add_argument("--rows", type=nonempty, metavar="OP:VARIANT:DTYPE[,...]",
                   help="these rows only, in place of every row of --ops (e.g. linear:tiled_reg_half:float32)")
    c.add_argument("--skip-models", action="store_true", help="ops only")
    c.add_argument("--force", type=nonempty, metavar="OP:VARIANT[,...]",
                   help="run the model checks with these variants in place of the policy's choice (e.g. a "
                        "plugin's: --force add:vec,mul:vec)")
    c.add_argument("--emulate-ptx", action="store_true",
                   help="on a device without NVIDIA PTX, run the tensor-core variants through their emulation "
                        "(MMA_EMULATE 1: their tiles, copies and tails, not the PTX instructions) instead of "
                        "skipping them; slow under Oclgrind")
    c.add_argument("--jobs", "-j", type=int, default=0,
                   help="worker processes, each with its own context on the device (default: one per core, at most "
                        "4; 1: in this process); under dev and thorough on a GPU they share a row's knob settings")
    c.add_argument("--resume", action="store_true",
                   help="take the knob settings that a stopped run into this --report folder checked (rows split "
                        "over the workers on a GPU; same device and profile) from its settings.jsonl instead of "
                        "checking them again")
    c.set_defaults(run=run)


def run(args) -> int:
    from sdcl.cli.checks import writable_folder
    from sdcl.conformance.gate import main as gate_main
    writable_folder(args.report, "--report")
    if args.emulate_ptx:        # an environment variable, so that the gate's worker processes see it too
        import os
        from sdcl.conformance.runner import EMULATE_PTX
        os.environ[EMULATE_PTX] = "1"
    return gate_main(args)
