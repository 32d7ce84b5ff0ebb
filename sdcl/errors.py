"""The errors a user can cause or meet, each with the exit code `sdcl` gives it (README: exit codes).

- BadInput (2): an argument, a file or a configuration that is wrong; the message names it and the value given.
- EnvironmentProblem (3): the machine or the device cannot do what was asked (no OpenCL platform, a feature the
  device lacks, too little memory, a missing package, a full disk).
Both are ValueError / RuntimeError subclasses, so library callers can catch them as such. `hint` is an optional
second line: what to do about it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1      # a gate row failed, a benchmark regressed
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERNAL = 4          # a bug in sdcl: --debug shows the traceback
EXIT_INTERRUPTED = 130     # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143      # SIGTERM (128 + SIGTERM)


class SdclError(Exception):
    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class BadInput(SdclError, ValueError):
    exit_code = EXIT_BAD_INPUT


class EnvironmentProblem(SdclError, RuntimeError):
    exit_code = EXIT_ENVIRONMENT


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that `finally` blocks (temporary files, transactions) run."""
