"""The tuning databases and the selection policy: what runs when a database says so, when none does, and on a device
without a database."""

import json

import numpy as np

from sdcl.opencl_impl import selection
from sdcl.opencl_impl.selection import Policy, load_db
from sdcl.perf.tuner import default_db


def _linear_args(rt):
    return (rt.to_device(np.ones((4, 16), np.float32)), rt.to_device(np.ones((8, 16), np.float32)), None)


def test_a_database_entry_picks_the_fastest_allowed_candidate(rt):
    args = _linear_args(rt)
    key = selection.call_key(selection.Policy().registry["linear"].reference, args)
    db = {"ops": {"linear": {"shapes": {key: {"candidates": [
        {"variant": "tiled", "knobs": {"TS": 8}, "seconds": 1.0},
        {"variant": "naive", "knobs": {}, "seconds": 2.0}]}}, "defaults": {}}}}
    assert Policy(db, info=rt.info)("linear", args) == ("tiled", {"TS": 8})
    # a ladder row that does not allow tiled yet takes the fastest of what it allows
    assert Policy(db, {"linear": ["naive"]}, info=rt.info)("linear", args) == ("naive", {})


def test_without_an_entry_the_most_advanced_variant_for_the_device_type_runs(rt):
    name, _ = Policy({"ops": {}}, info=rt.info)("linear", _linear_args(rt))
    assert name == ("cpu_reg" if rt.info["type"] == "CPU" else "tiled_reg")


def test_unknown_device_gets_the_default_database_of_its_type(tmp_path, monkeypatch):
    cpu = {"device": "cpu-x", "device_type": "CPU", "ops": {"linear": {"defaults": {"cpu_reg": {"MR": 2}}}}}
    gpu = {"device": "gpu-y", "device_type": "GPU", "ops": {"linear": {"defaults": {"cpu_reg": {"MR": 4},
                                                                                    "tiled_reg": {"MWG": 128}}}}}
    (tmp_path / "default.json").write_text(json.dumps(default_db([gpu, cpu])))
    monkeypatch.setattr(selection, "TUNING_DIR", tmp_path)
    got = load_db({"platform": "New", "device": "Thing", "type": "CPU"})
    assert got["ops"]["linear"]["defaults"] == {"cpu_reg": {"MR": 2}} and got["ops"]["linear"]["shapes"] == {}
    assert load_db({"platform": "New", "device": "Gpu", "type": "GPU"})["ops"]["linear"]["defaults"]["tiled_reg"] \
        == {"MWG": 128}


def test_the_repo_default_database_names_only_registered_variants_and_valid_knobs():
    from sdcl.registry import REGISTRY
    data = json.loads((selection.TUNING_DIR / "default.json").read_text())
    assert set(data["by_type"]) >= {"CPU", "GPU"}
    for part in data["by_type"].values():
        for op, entry in part["ops"].items():
            for name, knobs in entry["defaults"].items():
                v = REGISTRY[op].variant(name)
                assert set(knobs) <= set(v.knobs) | set(v.space), (op, name, knobs)


def test_without_an_entry_a_variant_needing_a_missing_feature_is_passed_over(rt):
    """mma_tf32 needs NVIDIA PTX: on a GPU without it (info says so), untuned selection takes tiled_reg instead,
    even in a ladder row that lists mma_tf32 last."""
    info = {**rt.info, "type": "GPU", "nvidia_ptx": False}
    allowed = {"linear": ["naive", "tiled", "tiled_reg", "mma_tf32"]}
    assert Policy({"ops": {}}, allowed, info=info)("linear", _linear_args(rt))[0] == "tiled_reg"
    assert Policy({"ops": {}}, allowed, info={**info, "nvidia_ptx": True})("linear", _linear_args(rt))[0] == "mma_tf32"


def test_ladder_tensor_core_row_is_not_measured_where_its_variants_cannot_run(rt):
    from sdcl.perf import ladder
    i = [name for name, _ in ladder.RUNGS].index("+ tensor-core GEMM (3xTF32)")
    assert not ladder._for_device(i, {**rt.info, "type": "GPU", "nvidia_ptx": False})
    assert ladder._for_device(i, {**rt.info, "type": "GPU", "nvidia_ptx": True})
    if rt.info.get("nvidia_ptx"):
        return
    from sdcl.reference.configs import get_config
    from sdcl.reference.pipeline import init_weights
    config = get_config("tiny-sd2")
    [row] = ladder.measure_opencl(rt, config, init_weights(config, seed=0), 64, reps=1, log=lambda *a: None,
                                  rows_wanted={i})
    assert row["not_for_device"] and "unet_ms" not in row
    assert "not measured" in ladder.to_markdown({"model": "m", "size": 64, "device": "d", "rows": [row]})


def test_tune_with_traced_shapes_covers_the_gemms_inside_the_conv_variants(rt, tmp_path, monkeypatch):
    """`sdcl tune --trace-size`: the shapes a model's pass sends to each op, e.g. the matmuls that the conv variants
    run (no registry SD case lists them), are tuned and then found by the policy; a traced shape that the database
    already holds is not tuned again."""
    from sdcl.perf.tuner import traced_cases, tune
    monkeypatch.setattr(selection, "TUNING_DIR", tmp_path)
    traced = traced_cases(rt, "tiny-sd2", 64, log=lambda *a: None)
    assert traced["matmul"] and traced["batched_matmul"] and traced["attention"]
    spec = Policy().registry["matmul"]
    registry_keys = {selection.call_key(spec.reference, c.args, c.kwargs) for c in spec.sd_cases()}
    keys = [selection.call_key(spec.reference, c.args, c.kwargs) for c in traced["matmul"]]
    assert not set(keys) & registry_keys
    quiet = dict(max_configs=1, reps=1, log=lambda *a: None, case_filter=lambda s, c: False)
    db = tune(rt, ops=["matmul"], extra_cases={"matmul": traced["matmul"]}, **quiet)
    shapes = db["ops"]["matmul"]["shapes"]
    assert set(shapes) == set(keys) and all("_traced_" in e["case"] for e in shapes.values())
    case, key = traced["matmul"][0], keys[0]
    best = min(shapes[key]["candidates"], key=lambda c: c["seconds"])
    args = tuple(rt.to_device(np.asarray(a, np.float32)) for a in case.args)
    assert Policy(db, info=rt.info)("matmul", args) == (best["variant"], best["knobs"])
    first = {k: e["seconds"] for k, e in shapes.items()}
    again = tune(rt, ops=["matmul"], extra_cases={"matmul": traced["matmul"]}, **quiet)
    assert {k: e["seconds"] for k, e in again["ops"]["matmul"]["shapes"].items()} == first
