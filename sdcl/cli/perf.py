"""`sdcl perf run|import|check|peak` and `sdcl dashboard`: benchmarks beside torch, their history, the regression
check and the dashboard (docs/PERF.md). `perf check` exits 1 on a regression; a crash or bad input never exits 1."""

from __future__ import annotations

import argparse

from sdcl.cli.checks import finite, integer, nonempty


def add_parser(sub, parents) -> None:
    from sdcl.perf.history import default_path
    db_help = "history file (default: $SDCL_PERF_DB or perf-history.sqlite)"
    pf = sub.add_parser("perf", parents=parents, help="benchmarks: run, import, check for regressions, device peak")
    psub = pf.add_subparsers(dest="perf_command", required=True, metavar="COMMAND", parser_class=sub._parser_class)
    pr = psub.add_parser("run", parents=parents, help="run the benchmark suite and append the run to the history")
    pr.add_argument("--device", type=nonempty, help="OpenCL device selector (PYOPENCL_CTX syntax); "
                                                                "default: PoCL")
    pr.add_argument("--db", default=default_path(), type=nonempty, help=db_help)
    pr.add_argument("--quick", action="store_true", help="only the CI subset (pytest -m quick)")
    pr.add_argument("--full-size", action="store_true", help="include the full-size end-to-end runs (-m fullsize)")
    pr.add_argument("-k", help="pytest -k expression: only the matching benchmarks")
    pr.add_argument("--keep-json", type=nonempty,
                    help="also keep the run's pytest-benchmark JSON (processes merged) at this path")
    pr.add_argument("--processes", type=integer(1), default=2,
                    help="run the suite in this many processes, one after another, and merge their rounds "
                         "(default 2, as asv: the regression check needs the processes of two runs not to overlap)")
    pr.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: more pytest arguments")
    pr.set_defaults(run=run_run)
    pi = psub.add_parser("import", parents=parents, help="import pytest-benchmark JSON files (--benchmark-json), or "
                                                          "merge other history .sqlite files, into the history")
    pi.add_argument("files", nargs="+")
    pi.add_argument("--db", default=default_path(), type=nonempty, help=db_help)
    pi.add_argument("--commit", help="record this commit id instead of the file's commit_info")
    pi.set_defaults(run=run_import)
    pc = psub.add_parser("check", parents=parents, help="compare the newest run with the history; exit 1 on a "
                                                         "regression")
    pc.add_argument("--db", default=default_path(), type=nonempty, help=db_help)
    pc.add_argument("--device", help="device key, or a substring of one (e.g. portable); default: every device")
    pc.add_argument("--threshold", type=finite(0.0, 10.0), default=0.05,
                    help="smallest slowdown that counts (default 0.05)")
    pc.add_argument("--alpha", type=finite(0.0, 1.0), default=0.01,
                    help="Mann-Whitney significance level (default 0.01)")
    pc.add_argument("--metric", choices=("kernel", "wall"), default="kernel",
                    help="kernel: profiling-event rounds where recorded (default); wall: pytest-benchmark's rounds")
    pc.add_argument("--verbose", "-v", action="store_true", help="a line for every benchmark")
    pc.set_defaults(run=run_check)
    pp = psub.add_parser("peak", parents=parents, help="the device's measured peak FLOP/s and bandwidth (cached per "
                                                        "device)")
    pp.add_argument("--device", type=nonempty)
    pp.add_argument("--refresh", action="store_true", help="measure again")
    pp.set_defaults(run=run_peak)

    db = sub.add_parser("dashboard", parents=parents, help="write a static, offline dashboard of the benchmark "
                                                            "history")
    db.add_argument("--db", default=default_path(), type=nonempty, help=db_help)
    db.add_argument("--out", default="perf-dashboard", type=nonempty,
                    help="output folder (index.html and one page per device)")
    db.add_argument("--ladder", action="append", help="a ladder JSON to show (also read: ladder*.json beside --db)")
    db.set_defaults(run=run_dashboard)


def run_run(args) -> int:
    from sdcl.perf import cli
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return cli.run(args.db, args.device, args.quick, args.full_size, args.k, extra, args.keep_json, args.processes)


def run_import(args) -> int:
    from sdcl.perf import cli
    return cli.import_file(args.db, args.files, args.commit)


def run_check(args) -> int:
    from sdcl.perf import cli
    return cli.check(args.db, args.device, args.threshold, args.alpha, args.metric, args.verbose)


def run_peak(args) -> int:
    from sdcl.perf import cli
    return cli.peak(args.device, args.refresh)


def run_dashboard(args) -> int:
    from sdcl.perf import cli
    return cli.dashboard(args.db, args.out, args.ladder)
