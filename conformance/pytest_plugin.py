"""The gate as a pytest plugin (entry point `pytest11`: loaded by any pytest where sdcl is installed, and idle
until asked): `pytest --sdcl` adds one test per gate row, op x variant x dtype (built-in and plugin variants), and
one per device for the model checks, next to the repository's own tests.

    pytest --sdcl [--sdcl-device SEL[,SEL...]] [--sdcl-profile ci|dev|thorough|oclgrind] [--sdcl-ops a,b]
           [--sdcl-skip-models] [--sdcl-force op:variant,...] [--sdcl-report DIR] [-n N] [--junitxml FILE]

Each row runs what `sdcl conformance` runs for it (sdcl.conformance.gate.run_task: the fuzzed shapes and SD shapes
at every knob setting the profile checks); a failing row fails its test with the row's failure, a skipped row is a
skipped test with its reason. pytest's own outputs work as usual (`--junitxml`, `-k`, `-x`); `--sdcl-report DIR`
also writes the gate's report.md, report.json and junit.xml (DIR/<device> for each device when several are given),
the same files `sdcl conformance` writes. With pytest-xdist (`-n N`) the rows spread over N worker processes, each
with its own context on each device; several devices (`--sdcl-device nvidia:0,nvidia:1`) each get their rows, so the
workers spread over the devices of the host too.
"""

from __future__ import annotations

import json
import re

import pytest

_ROWS_KEY = "sdcl_rows"


def pytest_addoption(parser):
    g = parser.getgroup("sdcl", "sdcl conformance gate")
    g.addoption("--sdcl", action="store_true", help="add the sdcl gate's rows as tests")
    g.addoption("--sdcl-device", default=None,
                help="device selector(s), PYOPENCL_CTX syntax, comma-separated (default: sdcl's default, PoCL)")
    g.addoption("--sdcl-profile", default="ci", choices=("ci", "dev", "thorough", "oclgrind"))
    g.addoption("--sdcl-ops", default=None, help="comma-separated op names (default: every op of the registry)")
    g.addoption("--sdcl-skip-models", action="store_true", help="ops only")
    g.addoption("--sdcl-force", default=None, metavar="OP:VARIANT[,...]",
                help="run the model checks with these variants in place of the policy's choice")
    g.addoption("--sdcl-report", default=None, metavar="DIR", help="also write report.md, report.json, junit.xml")


class GateFailure(Exception):
    """A gate row that failed: the row's own text is the whole message."""


class RowItem(pytest.Item):
    """One gate task on one device: "op:variant:dtype" (one row) or "models" (the model checks' rows)."""

    def __init__(self, *, selector, task, **kwargs):
        super().__init__(**kwargs)
        self.selector, self.task = selector, task

    def runtest(self):
        from sdcl.conformance.gate import run_task
        cfg = self.config
        rows = run_task(self.selector, self.task, cfg.getoption("--sdcl-profile"), cfg._sdcl_force)
        self.user_properties.append((_ROWS_KEY, json.dumps({"device": self.selector,
                                                            "rows": [dict(r.__dict__) for r in rows]})))
        failed = [r for r in rows if r.verdict == "FAIL"]
        if failed:
            raise GateFailure("\n".join(f"{r.kind} {r.name} {r.variant} {r.dtype}: {r.failure}" for r in failed))
        if rows and all(r.verdict == "skip" for r in rows):
            pytest.skip(rows[0].skipped)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, GateFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return "sdcl-gate", None, self.name


def _devices(config) -> list:
    text = config.getoption("--sdcl-device")
    return [s for s in text.split(",") if s] if text else [None]


def _slug(selector) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", selector or "default")


def pytest_configure(config):
    if not config.getoption("--sdcl"):
        return
    from sdcl.conformance.gate import parse_force
    config._sdcl_force = parse_force(config.getoption("--sdcl-force"))


@pytest.hookimpl(tryfirst=True)        # before pytest's -k / -m selection, which then applies to the rows too
def pytest_collection_modifyitems(session, config, items):
    if not config.getoption("--sdcl"):
        return
    from sdcl.conformance.gate import parse_ops, row_tasks
    try:
        names = parse_ops(config.getoption("--sdcl-ops"))
    except ValueError as e:
        raise pytest.UsageError(f"--sdcl-ops: {e}") from None
    tasks = row_tasks(names, config.getoption("--sdcl-skip-models"))
    for selector in _devices(config):
        prefix = f"sdcl[{selector}]" if selector else "sdcl"
        items.extend(RowItem.from_parent(session, name=f"{prefix}::{task}", selector=selector, task=task)
                     for task in tasks)


def pytest_runtest_logreport(report):
    """On the controller (or without xdist): collect each row test's rows for --sdcl-report."""
    if report.when != "call":
        return
    for key, value in getattr(report, "user_properties", ()):
        if key == _ROWS_KEY:
            _LOGGED.append(json.loads(value))


_LOGGED: list = []


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    folder = config.getoption("--sdcl-report") if config.getoption("--sdcl") else None
    if not folder or hasattr(config, "workerinput"):        # an xdist worker: the controller writes
        return
    from pathlib import Path

    from sdcl.conformance.gate import device_name
    from sdcl.conformance.report import Row, write_reports
    devices = _devices(config)
    for selector in devices:
        rows = [Row(**d) for logged in _LOGGED if logged["device"] == selector for d in logged["rows"]]
        ops = [r for r in rows if r.kind == "op"]
        order = {name: i for i, name in enumerate(_registry_order())}
        ops.sort(key=lambda r: (order.get(r.name, 1e9), r.variant, r.dtype))
        out = Path(folder) / _slug(selector) if len(devices) > 1 else Path(folder)
        write_reports(ops + [r for r in rows if r.kind != "op"], out, device_name(selector),
                      config.getoption("--sdcl-profile"))


def _registry_order() -> list:
    from sdcl.registry import REGISTRY
    return list(REGISTRY)
