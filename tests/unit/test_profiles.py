"""The profiles' shares of the work: fuzzed examples per knob setting, the tiny sizes of the oclgrind profile, and the
tuning tables' knob settings that the ci profile checks."""

from hypothesis import given, settings

import sdcl.conformance.profiles  # noqa: F401  (registers the profiles)
from sdcl.conformance.runner import examples_per_config
from sdcl.conformance.strategies import cases
from sdcl.opencl_impl.selection import table_configs
from sdcl.registry import REGISTRY


def test_thorough_spreads_at_least_2000_examples_over_the_settings():
    for n in (1, 3, 17, 52):
        done, total = 0, 0
        for i in range(n):
            k = examples_per_config("thorough", n - i, done)
            done += k
            total += k
        assert total >= 2000 and total < 2000 + 10 * n
    assert examples_per_config("ci", 52) == settings.get_profile("ci").max_examples
    assert examples_per_config("ci", 51, 12, default=False) == 4     # a table's setting: the first 4 cases
    assert examples_per_config("oclgrind", 1, 4, default=False) == settings.get_profile("oclgrind").max_examples
    assert examples_per_config("dev", 52) == 10               # the floor per setting


def test_a_setting_that_did_not_launch_leaves_its_share_to_the_rest():
    # three settings, the second refused at launch (ran 0): the third makes up the row's 2000
    first = examples_per_config("thorough", 3)
    assert first + examples_per_config("thorough", 1, done=first) >= 2000


def test_oclgrind_sizes_stay_tiny():
    seen = []

    @settings(max_examples=40, database=None, derandomize=True)
    @given(case=cases(REGISTRY["conv2d"], max_size=17))
    def draw(case):
        seen.append(max(max(a.shape) for a in case.arrays()))
    draw()
    assert seen and max(seen) <= 17


def test_table_configs_take_defaults_and_every_ranked_entry():
    tables = [{"ops": {"matmul": {"defaults": {"tiled": {"TS": 16}},
                                  "shapes": {"a": [["cpu_reg", {"MR": 4}, 1.0], ["tiled", {"TS": 32}, 2.0]],
                                             "b": [["tiled", {"TS": 16}, 1.0]]}}}},
              {"ops": {"linear": {"defaults": {"tiled_reg": {"MWG": 128}}, "shapes": {}}}}]
    assert table_configs(tables, "matmul", "tiled") == [{"TS": 16}, {"TS": 32}]
    assert table_configs(tables, "linear", "tiled_reg_half") == [{"MWG": 128}]   # a half variant: its base's
    assert table_configs(tables, "matmul", "naive") == []
    assert table_configs(tables, "matmul", "cpu_reg") == [{"MR": 4}]


def test_gate_tasks_are_ops_under_ci_and_rows_otherwise():
    from sdcl.conformance.gate import _tasks
    assert _tasks(["silu", "matmul"], skip_models=False) == ["models", "matmul", "silu"]   # longest first
    rows = _tasks(["silu"], skip_models=True, profile="thorough")
    assert rows == ["silu:naive:float32", "silu:naive:float64", "silu:naive:float16",
                    "silu:vec:float32", "silu:vec:float64", "silu:vec:float16"]  # each row
    # reported as it finishes


def test_emulate_ptx_runs_the_tensor_core_variants_emulated_and_only_where_asked(monkeypatch):
    """With --emulate-ptx (SDCL_EMULATE_PTX=1) a variant whose one missing feature is NVIDIA PTX runs with
    MMA_EMULATE 1 at settings that fit the device (its tiles and copies checked through the emulation); without it,
    it skips with the reason; a device with the PTX runs it as it is."""
    from types import SimpleNamespace

    from sdcl.conformance.runner import EMULATE_PTX, row_configs, skip_reason

    cpu = SimpleNamespace(info={"fp64": True, "max_work_group_size": 1024, "local_mem_kib": 64},
                          tuning_dirs=("/nonexistent", "/nonexistent"))
    spec = REGISTRY["conv2d"]
    v = spec.variant("implicit_mma_f16")
    monkeypatch.delenv(EMULATE_PTX, raising=False)
    assert "nvidia_ptx" in skip_reason(cpu, spec, v, "float16")
    monkeypatch.setenv(EMULATE_PTX, "1")
    assert skip_reason(cpu, spec, v, "float16") is None
    assert "float32, float16 only" in skip_reason(cpu, spec, v, "float64")
    for profile in ("oclgrind", "ci"):
        configs = row_configs(cpu, spec, v, profile)
        assert configs and all(k["MMA_EMULATE"] == 1 and v.constraint(k, cpu.info) for k in configs)
        assert configs[0]["NHWC"] == v.knobs["NHWC"]         # the default's path first, at small tiles
    naive = spec.variant("naive")
    assert all("MMA_EMULATE" not in k for k in row_configs(cpu, spec, naive, "oclgrind"))
    ptx = SimpleNamespace(info={**cpu.info, "nvidia_ptx": True}, tuning_dirs=cpu.tuning_dirs)
    assert all(k["MMA_EMULATE"] == 0 for k in row_configs(ptx, spec, v, "oclgrind"))
