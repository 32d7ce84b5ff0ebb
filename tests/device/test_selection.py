"""The tuning tables and the selection policy: what runs when a table says so, when none does, on a device without a
table, and where `sdcl tune` writes."""

import json

import numpy as np

from sdcl.opencl_impl import selection
from sdcl.opencl_impl.runtime import Runtime
from sdcl.opencl_impl.selection import Policy, load_table
from sdcl.perf.tuner import default_table
from sdcl.registry import REGISTRY
from sdcl.resources import shipped_tuning_dir


def _linear_args(rt, dtype=np.float32):
    return (rt.to_device(np.ones((4, 16), dtype)), rt.to_device(np.ones((8, 16), dtype)), None)


def test_a_table_entry_picks_the_fastest_allowed_variant(rt):
    args = _linear_args(rt)
    key = selection.call_key(REGISTRY["linear"].reference, args)
    table = {"ops": {"linear": {"shapes": {key: [["tiled", {"TS": 8}, 1.0], ["naive", {}, 2.0]]}, "defaults": {}}}}
    assert Policy(table, info=rt.info)("linear", args) == ("tiled", {"TS": 8})
    # a ladder row that does not allow tiled yet takes the fastest of what it allows
    assert Policy(table, {"linear": ["naive"]}, info=rt.info)("linear", args) == ("naive", {})


def test_a_tuned_variant_is_not_picked_for_a_dtype_it_does_not_implement(rt):
    """mma_tf32 is float32 only: a float64 call at its tuned shape goes to the next variant of the entry."""
    if not rt.info["fp64"]:
        return
    args = _linear_args(rt, np.float64)
    key = selection.call_key(REGISTRY["linear"].reference, args)
    table = {"ops": {"linear": {"shapes": {key: [["mma_tf32", {}, 1.0], ["tiled", {"TS": 8}, 2.0]]}}}}
    assert Policy(table, info=rt.info)("linear", args) == ("tiled", {"TS": 8})
    assert Policy(table, info=rt.info)("linear", _linear_args(rt)) == ("mma_tf32", {})


def test_without_an_entry_the_most_advanced_variant_for_the_device_type_runs(rt):
    name, _ = Policy({"ops": {}}, info=rt.info)("linear", _linear_args(rt))
    assert name == ("cpu_reg" if rt.info["type"] == "CPU" else "tiled_reg")


def test_unknown_device_gets_the_default_table_of_its_type(tmp_path):
    cpu = {"device": "cpu-x", "device_type": "CPU", "ops": {"linear": {"defaults": {"cpu_reg": {"MR": 2}}}}}
    gpu = {"device": "gpu-y", "device_type": "GPU", "ops": {"linear": {"defaults": {"cpu_reg": {"MR": 4},
                                                                                    "tiled_reg": {"MWG": 128}}}}}
    (tmp_path / "default.json").write_text(json.dumps(default_table([gpu, cpu])))
    dirs = (tmp_path / "user", tmp_path)
    got = load_table({"platform": "New", "device": "Thing", "type": "CPU"}, dirs)
    assert got["ops"]["linear"]["defaults"] == {"cpu_reg": {"MR": 2}} and got["ops"]["linear"]["shapes"] == {}
    assert load_table({"platform": "New", "device": "Gpu", "type": "GPU"}, dirs)["ops"]["linear"]["defaults"][
        "tiled_reg"] == {"MWG": 128}


def test_a_device_without_a_table_borrows_its_nearest_siblings_but_the_tuner_does_not(tmp_path):
    """PoCL names a CPU by its vector ISA: a device with no shipped table takes the shipped table of the device of its
    platform and type whose name shares the longest start with its own (per-shape choices included), marked
    borrowed; another platform's or type's never; the tuner's read (borrow=False) sees only the type's knobs."""
    def table(platform, device, dtype, pick):
        info = {"platform": platform, "device": device, "type": dtype}
        t = {"device": f"{platform} / {device}", "device_type": dtype,
             "ops": {"conv2d": {"defaults": {}, "shapes": {"x=1": [[pick, {}, 1.0]]}}}}
        (tmp_path / (selection.device_slug(info) + ".json")).write_text(json.dumps(t))
    table("Portable Computing Language", "pthread-skylake-avx512-AMD EPYC", "CPU", "winograd4x4")
    table("Portable Computing Language", "pthread-zen4-Other", "CPU", "im2col")
    table("Portable Computing Language", "pthread-skylake-GPUish", "GPU", "naive")
    table("Other Platform", "pthread-haswell-AMD EPYC", "CPU", "direct_tiled")
    dirs = (tmp_path / "user", tmp_path)
    mine = {"platform": "Portable Computing Language", "device": "pthread-haswell-AMD EPYC", "type": "CPU"}
    got = load_table(mine, dirs)
    assert got["borrowed_from"] == "Portable Computing Language / pthread-skylake-avx512-AMD EPYC"
    assert got["ops"]["conv2d"]["shapes"] == {"x=1": [["winograd4x4", {}, 1.0]]}
    assert "borrowed_from" not in load_table(mine, dirs, borrow=False)
    assert load_table(mine, dirs, borrow=False)["ops"].get("conv2d", {}).get("shapes", {}) == {}
    gpu = load_table({"platform": "Portable Computing Language", "device": "pthread-haswell-GPU", "type": "GPU"}, dirs)
    assert gpu["borrowed_from"].endswith("pthread-skylake-GPUish")       # its type's, not the nearer-named CPU's
    assert "borrowed_from" not in load_table({"platform": "Third", "device": "x", "type": "CPU"}, dirs)


def test_a_shipped_table_of_some_ops_takes_the_ops_it_lacks_from_its_sibling_whole(tmp_path):
    """PoCL on an AVX2 EPYC ships a table of its GEMM ops only (tuned there: the AVX-512 sibling's KV 16 x 4 x 4
    register blocks spill AVX2's 16 vector registers) and takes every other op from the sibling: whole ops, never
    the sibling's shapes inside an op it has (its ranking for a shape it did not time could beat its own nearest
    one), with no "no table" warning; the tuner's read (borrow=False) still sees only its own."""
    def table(device, ops):
        info = {"platform": "Portable Computing Language", "device": device, "type": "CPU"}
        (tmp_path / (selection.device_slug(info) + ".json")).write_text(json.dumps(
            {"device": f"PoCL / {device}", "device_type": "CPU",
             "ops": {op: {"defaults": {}, "shapes": {shape: [[pick, {}, 1.0]]}} for op, shape, pick in ops}}))
        return info
    table("pthread-skylake-avx512-AMD EPYC", [("conv2d", "x=1", "winograd4x4"), ("linear", "x=2", "tiled_reg")])
    mine = table("pthread-haswell-AMD EPYC", [("linear", "x=1", "cpu_reg")])
    got = load_table(mine, (tmp_path / "user", tmp_path))
    assert got["ops"]["conv2d"]["shapes"] == {"x=1": [["winograd4x4", {}, 1.0]]}
    assert got["ops"]["linear"]["shapes"] == {"x=1": [["cpu_reg", {}, 1.0]]}      # not the sibling's x=2
    assert got["borrowed_ops"] == {"from": "PoCL / pthread-skylake-avx512-AMD EPYC", "ops": ["conv2d"]}
    assert "borrowed_from" not in got and got["device"] == "PoCL / pthread-haswell-AMD EPYC"
    own = load_table(mine, (tmp_path / "user", tmp_path), borrow=False)
    assert "conv2d" not in own["ops"] and "borrowed_ops" not in own


def test_a_shipped_table_of_some_ops_leaves_the_others_at_its_types_knobs(tmp_path):
    """A device table tuned for one op (the H100's, group_norm_silu only) lies over default.json's knobs for its
    type: its op takes the device's entries, every other op keeps the type's (not the variants' declared CPU-style
    defaults, which the H100 ran: layer_norm 0.90 -> 3.45 ms of its float16 text encoder)."""
    info = {"platform": "P", "device": "Gpu", "type": "GPU"}
    gpu = {"device": "gpu-y", "device_type": "GPU",
           "ops": {"layer_norm": {"defaults": {"reduce": {"WG": 256, "TPR": 32, "VEC": 1}}},
                   "group_norm_silu": {"defaults": {"fused": {"WG": 256, "VEC": 1, "SPLIT": 1}}}}}
    (tmp_path / "default.json").write_text(json.dumps(default_table([gpu])))
    mine = {"device": "P / Gpu", "device_type": "GPU",
            "ops": {"group_norm_silu": {"defaults": {"fused": {"WG": 256, "VEC": 1, "SPLIT": 8}},
                                        "shapes": {"x=1x128x512x512": [["fused", {"SPLIT": 64}, 1e-4]]}}}}
    (tmp_path / (selection.device_slug(info) + ".json")).write_text(json.dumps(mine))
    got = load_table(info, (tmp_path / "user", tmp_path))["ops"]
    assert got["layer_norm"]["defaults"] == {"reduce": {"WG": 256, "TPR": 32, "VEC": 1}}
    assert got["group_norm_silu"]["defaults"] == {"fused": {"WG": 256, "VEC": 1, "SPLIT": 8}}
    assert got["group_norm_silu"]["shapes"] == mine["ops"]["group_norm_silu"]["shapes"]


def test_the_users_table_overrides_the_shipped_one_entry_by_entry(tmp_path):
    info = {"platform": "P", "device": "D", "type": "CPU"}
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    slug = selection.device_slug(info) + ".json"
    selection.save_table(info, {"device": "d", "ops": {"matmul": {"defaults": {"tiled": {"TS": 8}},
                                                                  "shapes": {"a": [["tiled", {}, 1.0]],
                                                                             "b": [["naive", {}, 1.0]]}}}}, shipped)
    selection.save_table(info, {"device": "d", "ops": {"matmul": {"shapes": {"b": [["tiled", {"TS": 32}, 0.5]]}}}},
                         user)
    got = load_table(info, (user, shipped))
    assert got["ops"]["matmul"]["shapes"] == {"a": [["tiled", {}, 1.0]], "b": [["tiled", {"TS": 32}, 0.5]]}
    assert got["ops"]["matmul"]["defaults"] == {"tiled": {"TS": 8}}
    assert (shipped / slug).is_file() and (user / slug).is_file()


def test_the_shipped_tables_name_only_declared_variants_and_valid_knobs():
    folder = shipped_tuning_dir()
    data = json.loads((folder / "default.json").read_text())
    assert set(data["by_type"]) >= {"CPU", "GPU"}
    tables = list(data["by_type"].values()) + [json.loads(p.read_text()) for p in folder.glob("*.json")
                                               if p.name != "default.json"]
    assert len(tables) >= 4
    for table in tables:
        entries = [(op, e) for op, top in table["ops"].items() for e in [top] + [top[d] for d in selection.TYPED
                                                                               if d in top]]
        for op, entry in entries:
            for name, knobs in entry["defaults"].items():
                v = REGISTRY[op].variant(name)
                assert set(knobs) <= set(v.knobs) | set(v.space), (op, name, knobs)
            for key, ranked in entry["shapes"].items():
                assert [r[2] for r in ranked] == sorted(r[2] for r in ranked), (op, key)
                for name, knobs, _ in ranked:
                    v = REGISTRY[op].variant(name)
                    assert set(knobs) <= set(v.knobs) | set(v.space), (op, name, knobs)


def test_without_an_entry_a_variant_needing_a_missing_feature_is_passed_over(rt):
    """mma_tf32 needs NVIDIA PTX: on a GPU without it (info says so), untuned selection takes tiled_reg instead,
    even in a ladder row that lists mma_tf32 last."""
    info = {**rt.info, "type": "GPU", "nvidia_ptx": False}
    allowed = {"linear": ["naive", "tiled", "tiled_reg", "mma_tf32"]}
    assert Policy({"ops": {}}, allowed, info=info)("linear", _linear_args(rt))[0] == "tiled_reg"
    allowed = {"linear": ["naive", "tiled", "mma_tf32"]}
    assert Policy({"ops": {}}, allowed, info={**info, "nvidia_ptx": True})("linear", _linear_args(rt))[0] == "mma_tf32"


def test_ladder_rows_come_from_the_declared_tiers():
    from sdcl.perf import ladder
    names = [name for name, _, _ in ladder.rungs()]
    assert names[0] == "naive" and names[-1] == "+ streaming"
    declared = {(op, v.name) for op, spec in REGISTRY.items() for v in spec.variants}
    listed = {(op, n) for _, ops, _ in ladder.rungs() for op, ns in ops.items() for n in ns}
    assert listed == declared      # every declared variant has its row, and nothing else is listed
    i = names.index("+ tensor-core GEMM (3xTF32)")
    assert "mma_tf32" in ladder.allowed_through(i)["matmul"]
    assert "mma_tf32" not in ladder.allowed_through(i - 1)["matmul"]
    # replayed launches come after the float32 kernel rows, before the rows that change the weights' storage
    assert names.index("+ replayed launches") == names.index("+ half storage") - 1
    assert ladder.modes_through(names.index("+ half storage")) == {"half", "replay"}
    # float16 activations after every kernel row, streaming last (it streams the float16 weights)
    assert names[-2:] == ["+ float16 activations", "+ streaming"]
    assert "float16" not in ladder.modes_through(len(names) - 3)
    assert ladder.modes_through(len(names) - 1) == {"half", "replay", "float16", "streaming"}


def test_ladder_tensor_core_row_is_not_measured_where_its_variants_cannot_run(rt):
    from sdcl.perf import ladder
    i = [name for name, _, _ in ladder.rungs()].index("+ tensor-core GEMM (3xTF32)")
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


def test_tune_with_traced_shapes_covers_the_gemms_inside_the_conv_variants(rt, tmp_path):
    """`sdcl tune --trace-size`: the shapes a model's pass sends to each op, e.g. the matmuls that the conv variants
    run (no registry SD case lists them), are tuned into the runtime's tuning folder (never the package) and then
    found by the policy; a traced shape that the table already holds is not tuned again."""
    from sdcl.perf.tuner import traced_cases, tune
    rt = Runtime(rt.device, tuning_dir=tmp_path / "tuning")
    rt.profile = True                  # every launch would leave its event
    traced = traced_cases(rt, "tiny-sd2", 64, log=lambda *a: None)
    assert traced["matmul"] and traced["batched_matmul"] and traced["attention"]
    first, again = traced["matmul"][0], traced["matmul"][0]     # made when read, from a seed of its own: not kept
    assert first is not again and all(np.array_equal(a, b) for a, b in zip(first.arrays(), again.arrays()))
    assert not rt.events, "tracing reads shapes only: it launches nothing (a 512 x 512 trace ran out of memory)"
    rt.profile = False
    spec = REGISTRY["matmul"]
    registry_keys = {selection.call_key(spec.reference, c.args, c.kwargs) for c in spec.sd_cases()}
    keys = [selection.call_key(spec.reference, c.args, c.kwargs) for c in traced["matmul"]]
    assert not set(keys) & registry_keys
    shipped = set(load_table(rt.info, rt.tuning_dirs)["ops"].get("matmul", {}).get("shapes", {}))
    quiet = dict(max_configs=1, reps=1, log=lambda *a: None, case_filter=lambda s, c: False)
    table = tune(rt, ops=["matmul"], extra_cases={"matmul": traced["matmul"]}, **quiet)
    written = tmp_path / "tuning" / (selection.device_slug(rt.info) + ".json")
    assert json.loads(written.read_text()) == table and written.with_suffix(".log.json").is_file()
    shapes = table["ops"]["matmul"]["shapes"]
    assert set(shapes) == set(keys) - shipped
    key = next(iter(shapes))
    case = traced["matmul"][keys.index(key)]
    args = tuple(rt.to_device(np.asarray(a, np.float32)) for a in case.args)
    variant, knobs, _ = shapes[key][0]
    assert Policy(load_table(rt.info, rt.tuning_dirs), info=rt.info)("matmul", args) == (variant, knobs)
    first = {k: e[0][2] for k, e in shapes.items()}
    again = tune(rt, ops=["matmul"], extra_cases={"matmul": traced["matmul"]}, **quiet)
    assert {k: e[0][2] for k, e in again["ops"]["matmul"]["shapes"].items()} == first
    # --variants: only those are timed again, at every traced shape the table holds, and merged into its ranking
    before = again["ops"]["matmul"]["shapes"]
    merged = tune(rt, ops=["matmul"], extra_cases={"matmul": traced["matmul"]}, variants={"tiled"},
                  **quiet)["ops"]["matmul"]["shapes"]
    assert set(merged) == set(before)
    for k, ranking in merged.items():
        assert [r for r in ranking if r[0] != "tiled"] == [r for r in before[k] if r[0] != "tiled"]
        assert [r[2] for r in ranking] == sorted(r[2] for r in ranking)
        new = [r for r in ranking if r[0] == "tiled"]
        assert len(new) == 1 and new != [r for r in before[k] if r[0] == "tiled"]   # timed again


def test_float16_computing_variants_run_only_in_half_mode(rt):
    """attention's flash_mma_f16 rounds q, k, v to half: on an NVIDIA GPU (info says so) a float32 call never gets
    it, tuned fastest or not, until the policy is in half mode (storage.half_mode, as a model stored in half sets
    it); and back out of half mode, float32 variants again."""
    from sdcl.opencl_impl.storage import half_mode
    info = {**rt.info, "type": "GPU", "nvidia_ptx": True}
    q = rt.to_device(np.ones((1, 8, 32), np.float32))
    args = (q, q, q, 2)
    key = selection.call_key(REGISTRY["attention"].reference, args)
    for table in ({"ops": {}},
                  {"ops": {"attention": {"shapes": {key: [["flash_mma_f16", {"WARPS": 2}, 1.0],
                                                         ["flash", {"BQ": 32}, 2.0]]}}}}):
        p = Policy(table, info=info)
        assert p("attention", args)[0] != "flash_mma_f16"
        rt_like = type("R", (), {"policy": p})()
        half_mode(rt_like)
        assert p("attention", args)[0] == "flash_mma_f16"
        half_mode(rt_like, False)
        assert p("attention", args)[0] != "flash_mma_f16"
    # the ladder's rows before the tensor-core float16 tier do not allow it, half mode or not
    assert Policy({"ops": {}}, {"attention": ["naive", "flash"]}, info=info, half=True)("attention", args)[0] == "flash"


def test_a_float16_call_runs_a_tensor_core_variant_wherever_one_handles_it(rt):
    """The table's ranking is float32's: at a shape where tiled was timed faster than mma_f16_half, a float16 call on an
    NVIDIA GPU (info says so) still gets mma_f16_half (tensor cores read its half inputs as they are), at its declared
    knobs, not those float32 timed (float32 stages through registers, float16 by cp.async: other tiles win); a
    float32 call the ranking's first; a device without NVIDIA PTX the ranking's first in float16 too. The op's
    float16 entry (`sdcl tune --dtype float16`) serves float16 calls only: its ranking at the shape, else its
    defaults."""
    info = {**rt.info, "type": "GPU", "nvidia_ptx": True}
    spec = REGISTRY["linear"]
    declared = spec.variant("mma_f16_half").knobs
    entry = [["tiled", {"TS": 8}, 1.0], ["mma_f16_half", {"MWG": 64}, 2.0], ["naive", {}, 3.0]]
    for dtype, want in ((np.float16, ("mma_f16_half", declared)), (np.float32, ("tiled", {"TS": 8}))):
        args = _linear_args(rt, dtype)
        table = {"ops": {"linear": {"shapes": {selection.call_key(spec.reference, args): entry},
                                    "defaults": {"mma_f16_half": {"MWG": 256}}}}}
        assert Policy(table, info=info)("linear", args) == want
    args = _linear_args(rt, np.float16)
    key = selection.call_key(spec.reference, args)
    table = {"ops": {"linear": {"shapes": {key: [entry[0], entry[2]]}}}}
    assert Policy(table, info=info)("linear", args) == ("mma_f16_half", declared)
    assert Policy(table, info={**info, "nvidia_ptx": False})("linear", args) == ("tiled", {"TS": 8})
    # float16 timings: the ranking at the shape, else the float16 defaults; never for a float32 call
    timed16 = {"shapes": {key: [["mma_f16_half", {"MWG": 64, "STAGES": 4}, 0.5]]},
               "defaults": {"mma_f16_half": {"NWG": 128}}}
    table = {"ops": {"linear": {"shapes": {key: [entry[0]]}, "float16": timed16}}}
    assert Policy(table, info=info)("linear", args) == ("mma_f16_half", {"MWG": 64, "STAGES": 4})
    assert Policy(table, info=info)("linear", _linear_args(rt)) == ("tiled", {"TS": 8})
    table["ops"]["linear"]["float16"]["shapes"] = {}
    assert Policy(table, info=info)("linear", args) == ("mma_f16_half", {"NWG": 128})


def test_float16_timings_survive_the_table_overlays_and_default_json(tmp_path):
    """A device's float16 entry passes through load_table's overlays (shipped type table < shipped device table <
    the user's) entry by entry, and default.json keeps its defaults per device type; table_text writes it."""
    gpu = {"device": "gpu-y", "device_type": "GPU", "ops": {"linear": {
        "defaults": {"mma_f16_half": {"MWG": 128}}, "shapes": {},
        "float16": {"defaults": {"mma_f16_half": {"MWG": 64}}, "shapes": {"s1": [["mma_f16_half", {}, 1.0]]}}}}}
    (tmp_path / "default.json").write_text(json.dumps(default_table([gpu])))
    info = {"platform": "P", "device": "Gpu", "type": "GPU"}
    user = {"device": "gpu-y", "ops": {"linear": {"float16": {"shapes": {"s2": [["mma_f16_half", {"NWG": 64}, 2.0]]}}}}}
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / f"{selection.device_slug(info)}.json").write_text(selection.table_text(user))
    got = load_table(info, (tmp_path / "user", tmp_path))["ops"]["linear"]
    assert got["defaults"] == {"mma_f16_half": {"MWG": 128}}
    assert got["float16"]["defaults"] == {"mma_f16_half": {"MWG": 64}}       # default.json's, per type
    assert got["float16"]["shapes"] == {"s2": [["mma_f16_half", {"NWG": 64}, 2.0]]}   # not a device table's shapes
    assert json.loads(selection.table_text(gpu)) == gpu
    assert selection.table_configs([gpu], "linear", "mma_f16_half") == [{"MWG": 128}, {"MWG": 64}, {}]


def test_tuning_in_float16_keeps_its_timings_apart(rt, tmp_path):
    """`sdcl tune --dtype float16` times the variants that implement float16 on float16 inputs and writes them under
    the op's float16 entry, leaving float32's as they were; the policy then takes them for float16 calls only."""
    from sdcl.perf.tuner import tune
    from sdcl.registry import Case
    rt = Runtime(rt.device, tuning_dir=tmp_path / "tuning")
    rng = np.random.default_rng(0)
    case = Case("small", (rng.standard_normal((2, 24, 40)), rng.standard_normal((48, 40)), rng.standard_normal(48)), {})
    quiet = dict(max_configs=2, reps=1, log=lambda *a: None, case_filter=lambda s, c: False)
    before = Policy(load_table(rt.info, rt.tuning_dirs), info=rt.info)
    table = tune(rt, ops=["linear"], extra_cases={"linear": [case]}, dtype="float16", **quiet)
    key = selection.call_key(REGISTRY["linear"].reference, case.args)
    entry = table["ops"]["linear"]
    assert key not in entry["shapes"] and key in entry["float16"]["shapes"]
    ranking = entry["float16"]["shapes"][key]
    assert all("float16" in REGISTRY["linear"].variant(n).dtypes for n, _, _ in ranking)
    assert [r[2] for r in ranking] == sorted(r[2] for r in ranking)
    policy = Policy(load_table(rt.info, rt.tuning_dirs), info=rt.info)
    half_args = tuple(rt.to_device(a.astype(np.float16)) for a in case.args)
    assert policy("linear", half_args) == tuple(ranking[0][:2])
    float_args = tuple(rt.to_device(a.astype(np.float32)) for a in case.args)
    assert policy("linear", float_args) == before("linear", float_args)


def test_the_tuner_samples_the_settings_nearest_the_default_first():
    from sdcl.perf.tuner import sampled
    import random
    configs = [{"A": 1, "B": 1, "C": 1}] + [{"A": a, "B": b, "C": c} for a in (1, 2) for b in (1, 2) for c in (1, 2, 3)
                                         if (a, b, c) != (1, 1, 1)]
    got = sampled(configs, 5, random.Random(0))
    assert got[0] == configs[0] and len(got) == 5
    assert all(sum(k[n] != 1 for n in "ABC") == 1 for k in got[1:])     # four settings one knob away: all of them
    assert len({str(k) for k in got}) == 5
    assert sampled(configs, 50, random.Random(0)) == configs


def test_a_shape_the_table_lacks_runs_the_ranking_of_the_nearest_tuned_shape(rt):
    """group_norm_silu tuned at two shapes: a call at a shape between them runs the nearer one's pick (its knobs as
    timed); a call that differs in a scalar (num_groups) or in an array's rank has no comparable entry and runs
    the most advanced variant at its defaults; the nearest entry's variant is passed over where it does not run; a
    key not in call_key's form (an older table's) is never taken as near."""
    def args(shape, groups=32):
        x = rt.to_device(np.ones(shape, np.float32))
        return (x, groups, rt.to_device(np.ones(shape[1], np.float32)), rt.to_device(np.ones(shape[1], np.float32)))

    ref = REGISTRY["group_norm_silu"].reference
    key = lambda a: selection.call_key(ref, a)   # noqa: E731
    big, small = key(args((1, 128, 512, 512))), key(args((2, 1280, 8, 8)))
    table = {"ops": {"group_norm_silu": {"defaults": {}, "shapes": {
        big: [["reduce", {"SPLIT": 64, "VEC": 1, "WG": 256}, 1.0], ["fused", {"VEC": 1, "WG": 256}, 9.0]],
        small: [["naive", {"WG": 128}, 1.0]], "1x128x512x512": [["fused", {"VEC": 1, "WG": 4}, 0.1]]}}}}
    pick = lambda a: Policy(table, info=rt.info)("group_norm_silu", a)   # noqa: E731
    assert pick(args((1, 256, 256, 256))) == ("reduce", {"SPLIT": 64, "VEC": 1, "WG": 256})
    assert pick(args((2, 640, 16, 16))) == ("naive", {"WG": 128})
    assert pick(args((1, 256, 256, 256), groups=16))[0] == "fused"     # no entry at 16 groups: the default rule
    assert pick(args((2, 256, 256)))[0] == "fused"                     # rank 3: not comparable
    # the nearest entry's first variant cannot run here: its next one
    info = {**rt.info, "nvidia_ptx": False}
    with_ptx = {"ops": {"linear": {"defaults": {}, "shapes": {
        selection.call_key(REGISTRY["linear"].reference, _linear_args(rt)):
            [["mma_tf32", {"TM": 16}, 1.0], ["tiled", {"TS": 8}, 2.0]]}}}}
    lin = (rt.to_device(np.ones((6, 16), np.float32)), rt.to_device(np.ones((8, 16), np.float32)), None)
    assert Policy(with_ptx, info=info)("linear", lin) == ("tiled", {"TS": 8})
