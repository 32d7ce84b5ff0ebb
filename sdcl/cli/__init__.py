"""The `sdcl` command: one module per subcommand (devices, generate, conformance, tune, ladder, perf, dashboard,
report).

Every failure a user can cause is one line naming what is wrong and the value given, plus an optional hint, and a
documented exit code (sdcl.errors): 0 success; 1 a check failed (a gate row, a benchmark regression); 2 bad input (an
argument, a file, a checkpoint, a configuration); 3 the environment or the device (no OpenCL platform, a missing
feature, a kernel that does not build, too little memory, a missing package, a full disk); 4 an internal error (a bug);
130 interrupted (Ctrl-C); 143 terminated (SIGTERM). `--debug` (or SDCL_DEBUG=1) shows the traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import traceback
import warnings

from sdcl.errors import (EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED,
                         BadInput, SdclError, Terminated)

from sdcl.cli import conformance, devices, generate, ladder, perf, report, tune

COMMANDS = (devices, generate, conformance, tune, ladder, perf, report)

EPILOG = ("exit codes: 0 success; 1 a check failed (gate, regression); 2 bad input; 3 environment or device problem; "
          "4 internal error; 130 interrupted; 143 terminated")


class Parser(argparse.ArgumentParser):
    """argparse with its errors as sdcl's: one line (BadInput), the usage as the hint."""

    def error(self, message: str):
        raise BadInput(message, hint=f"{self.prog} --help")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    common.add_argument("--plugin", action="append", default=argparse.SUPPRESS, metavar="PATH",
                        help="add the variants of a plugin module or package folder (sdcl.registry.plugins); "
                             "repeatable")
    p = Parser(prog="sdcl", description="Stable Diffusion on OpenCL, checked against a NumPy reference",
               epilog=EPILOG, parents=[common])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub, [common])
    return p


def exit_code(e: BaseException) -> int:
    """The exit code of an exception that reached the command line (a failed check is not an exception: its
    command returns EXIT_CHECK_FAILED)."""
    if isinstance(e, SdclError):
        return e.exit_code
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, Terminated):
        return EXIT_TERMINATED
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return EXIT_ENVIRONMENT
    if isinstance(e, (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                      PermissionError)):
        return EXIT_BAD_INPUT      # a wrong argument, file or configuration (CheckpointError is a ValueError)
    if isinstance(e, (MemoryError, ImportError, OSError)) or _is_device_error(e):
        return EXIT_ENVIRONMENT
    return EXIT_INTERNAL


def _is_device_error(e: BaseException) -> bool:
    """The OpenCL runtime's errors: no device, a missing feature, a failed build, the driver's own errors."""
    try:
        import pyopencl as cl

        from sdcl.opencl_impl.devices import DeviceError
        from sdcl.opencl_impl.runtime import KernelBuildError
    except ImportError:
        return False
    return isinstance(e, (DeviceError, KernelBuildError, cl.Error))


def _message(e: BaseException) -> tuple:
    """(one line, hint or None)."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", None
    if isinstance(e, Terminated):
        return "terminated (SIGTERM)", None
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    elif isinstance(e, (MemoryError,)):
        text = "out of host memory" + (f": {text}" if text != "MemoryError" else "")
    elif isinstance(e, ImportError) and e.name:
        text = f"the package {e.name} is needed here and is not installed"
    lines = text.splitlines()
    hint = getattr(e, "hint", None)
    if len(lines) > 1 and hint is None:
        hint = "--debug shows the whole message"
    if exit_code(e) == EXIT_INTERNAL:
        lines[0] = f"internal error ({type(e).__name__}): {lines[0]}"
        hint = hint or "this is a bug in sdcl: run again with --debug and report the traceback"
    return lines[0], hint


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"sdcl: warning: {message}", file=sys.stderr)


def _terminate(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SDCL_DEBUG") == "1"
    words = [a for a in argv if not a.startswith("-")]
    command = " ".join(words[:2] if words[:1] == ["perf"] else words[:1])
    warnings.showwarning = _show_warning
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:          # not the main thread (a library caller): leave SIGTERM alone
        previous = None
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "plugin", None):
            from sdcl.registry import load_plugin
            for path in args.plugin:
                load_plugin(path)
        return args.run(args)
    except SystemExit as e:     # --help and --version exit 0 through argparse
        return e.code if isinstance(e.code, int) else 0
    except BaseException as e:  # noqa: BLE001  (everything reaches the user as one line and an exit code)
        if debug:
            traceback.print_exc()
        line, hint = _message(e)
        print(f"sdcl{' ' + command if command else ''}: error: {line}", file=sys.stderr)
        if hint:
            print(f"  hint: {hint}", file=sys.stderr)
        return exit_code(e)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
