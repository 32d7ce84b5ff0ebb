"""The tuning databases and the selection policy: what runs when a database says so, when none does, and on a device
without a database."""

import json

import numpy as np

from opencl_impl import selection
from opencl_impl.selection import Policy, load_db
from perf.tuner import default_db


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
    from conformance.registry import REGISTRY
    data = json.loads((selection.TUNING_DIR / "default.json").read_text())
    assert set(data["by_type"]) >= {"CPU", "GPU"}
    for part in data["by_type"].values():
        for op, entry in part["ops"].items():
            for name, knobs in entry["defaults"].items():
                v = REGISTRY[op].variant(name)
                assert set(knobs) <= set(v.knobs) | set(v.space), (op, name, knobs)
