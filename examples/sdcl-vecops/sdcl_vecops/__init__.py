"""sdcl-vecops: an out-of-tree sdcl plugin (sdcl.registry.plugins) adding `vec`, a vectorized broadcasting kernel,
to the ops add and mul. Installed, its entry point (group `sdcl.variants`) makes sdcl load it; or
`sdcl --plugin path/to/sdcl_vecops ...` without installing."""

from pathlib import Path

from sdcl.registry import Variant

KERNELS = Path(__file__).parent / "kernels"


def _fits(knobs: dict, info: dict) -> bool:
    return knobs["WG"] <= info.get("max_work_group_size", 256)


def vec(op: str, launcher: str) -> Variant:
    """The variant's one declaration: VEC outputs per work-item, WG work-items per work-group."""
    return Variant("vec", {"VEC": 4, "WG": 256}, space={"VEC": [1, 4, 8, 16], "WG": [64, 256]}, constraint=_fits,
                   launcher=launcher, tier="vectorized elementwise")


VARIANTS = {"add": [vec("add", "sdcl_vecops.launch:add")], "mul": [vec("mul", "sdcl_vecops.launch:mul")]}
