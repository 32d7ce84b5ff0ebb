"""Every knob setting is checked: a bug present at one setting only (here gemm_tiled built with TS=32, dropping the
last k of a partial tail tile) fails the gate's row under ci (the shipped tuning tables use TS=32) and under dev
(every setting of the space), naming the setting, while the defaults alone pass; and the tuner, whose candidate
passes at a shape where the bug does not show (K a multiple of 32), rejects it on the fuzzed shapes before storing it.
"""

import dataclasses

import numpy as np
import pytest

from sdcl.conformance.runner import check_row, row_configs
from sdcl.opencl_impl.runtime import Runtime
from sdcl.registry import REGISTRY, Case
from sdcl.resources import kernel_dir

LOOP = "for (int kk = 0; kk < TS; ++kk)"
PLANTED = "for (int kk = 0; kk < ((TS == 32 && K - k0 < TS) ? K - k0 - 1 : TS); ++kk)"


@pytest.fixture
def planted(rt, tmp_path):
    """A runtime whose gemm/tiled.cl carries the TS=32-only bug (its folder first on the kernel path)."""
    src = (kernel_dir() / "gemm" / "tiled.cl").read_text()
    assert src.count(LOOP) == 1
    (tmp_path / "kernels" / "gemm").mkdir(parents=True)
    (tmp_path / "kernels" / "gemm" / "tiled.cl").write_text(src.replace(LOOP, PLANTED))
    return Runtime(rt.device, kernel_path=(tmp_path / "kernels", kernel_dir()), tuning_dir=tmp_path / "tuning")


def test_a_bug_at_one_knob_setting_fails_the_row(planted):
    spec = REGISTRY["matmul"]
    v = spec.variant("tiled")
    assert v.knobs["TS"] != 32
    control = check_row(planted, spec, "tiled", "float32", "ci", sd=False)          # the defaults only
    assert control.passed and control.configs == 1, control.failure
    for profile in ("ci", "dev"):
        configs = row_configs(planted, spec, v, profile)
        assert v.complete({"TS": 32}) in configs
        row = check_row(planted, spec, "tiled", "float32", profile, configs=configs, sd=False)
        assert not row.passed and row.failure.startswith("knobs {'TS': 32}"), (profile, row.failure)


def test_the_tuner_rejects_knobs_that_fail_at_fuzzed_shapes(planted, rt, monkeypatch):
    from sdcl.opencl_impl.selection import call_key
    from sdcl.perf.tuner import tune
    spec = REGISTRY["matmul"]
    only_32 = dataclasses.replace(spec.variant("tiled"), knobs={"TS": 32}, space={})
    monkeypatch.setitem(REGISTRY, "matmul", dataclasses.replace(spec, variants=(spec.variant("naive"), only_32)))
    rng = np.random.default_rng(0)
    case = Case("k64", (rng.standard_normal((40, 64)), rng.standard_normal((64, 24))))
    key = call_key(spec.reference, case.args)
    quiet = dict(reps=1, log=lambda *a: None, case_filter=lambda s, c: False, extra_cases={"matmul": [case]})
    control = tune(Runtime(rt.device, tuning_dir=planted.tuning_dir / "control"), ops=["matmul"], **quiet)
    assert ["tiled", {"TS": 32}] in [e[:2] for e in control["ops"]["matmul"]["shapes"][key]]
    table = tune(planted, ops=["matmul"], **quiet)
    assert [e[0] for e in table["ops"]["matmul"]["shapes"][key]] == ["naive"]
    assert "tiled" not in table["ops"]["matmul"]["defaults"]
    log = (planted.tuning_dir / next(p.name for p in planted.tuning_dir.glob("*.log.json"))).read_text()
    assert "wrong at fuzzed shapes in float32" in log


def test_a_setting_the_device_refuses_is_noted_and_the_rest_checked(rt, monkeypatch):
    """A non-default setting whose launch the device refuses (here: every 32 x 32 work-group) is listed in the row's
    notes with the reason, not failed; the other settings are checked and the row passes."""
    from sdcl.opencl_impl.runtime import LaunchLimitError
    planted = Runtime(rt.device)
    real = planted.launch

    def launch(op, knl, global_size, local_size, *args):
        if local_size is not None and tuple(local_size)[:2] == (32, 32):
            raise LaunchLimitError("planted: 32 x 32 work-groups refused")
        return real(op, knl, global_size, local_size, *args)
    monkeypatch.setattr(planted, "launch", launch)
    spec = REGISTRY["matmul"]
    configs = [{"TS": 16}, {"TS": 32}, {"TS": 8}]
    row = check_row(planted, spec, "tiled", "float32", "dev", configs=configs, sd=False)
    assert row.passed, row.failure
    assert row.configs == 2 and "{'TS': 32}" in row.notes and "planted: 32 x 32" in row.notes


def test_another_devices_setting_is_checked_at_the_source_level(planted, tmp_path, monkeypatch):
    """Under ci on a CPU device, a setting that only another device's tuning table gives is built with
    -cl-opt-disable (its source checked, not this device's code for it) and still fails the row on the TS=32-only
    bug; the default and this device's own table's setting are built as the device runs them. Elsewhere (a GPU,
    or the dev profile) nothing is built with it. The shipped tables here: this device type's (TS 8) and another
    device's (TS 32), read after the first (TS 8 is checked before the failing 32)."""
    import json

    import sdcl.opencl_impl.runtime as runtime
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    kind = planted.info["type"]
    (shipped / "default.json").write_text(json.dumps(
        {"by_type": {kind: {"device": None, "ops": {"matmul": {"defaults": {"tiled": {"TS": 8}}}}}}}))
    (shipped / "z-another-device.json").write_text(json.dumps(
        {"device": "another", "ops": {"matmul": {"defaults": {"tiled": {"TS": 32}}}}}))
    monkeypatch.setattr(runtime, "shipped_tuning_dir", lambda: shipped)
    spec = REGISTRY["matmul"]
    v = spec.variant("tiled")
    for profile in ("ci", "dev"):
        planted.programs.clear()
        configs = row_configs(planted, spec, v, profile)
        assert {"TS": 8} in configs and {"TS": 32} in configs, configs
        row = check_row(planted, spec, "tiled", "float32", profile, configs=configs, sd=False)
        assert not row.passed and row.failure.startswith("knobs {'TS': 32}"), (profile, row.failure)
        built = {key[1] for key in planted.programs if len(key) == 2 and key[0] == "gemm/tiled.cl"}     # programs
        ts = {next(o for o in opts if o.startswith("-DTS=")): "-cl-opt-disable" in opts for opts in built}
        source_level = profile == "ci" and kind == "CPU"
        assert ts == {f"-DTS={v.knobs['TS']}": False, "-DTS=8": False, "-DTS=32": source_level}, (profile, ts)
        assert ("checked at the source level" in row.notes) == source_level, row.notes
