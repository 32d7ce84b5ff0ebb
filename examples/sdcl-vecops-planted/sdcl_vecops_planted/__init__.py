"""sdcl-vecops-planted: the twin of sdcl-vecops with a planted bug, to show the gate failing on a plugin's variant
with the op and variant named. Its variant `vec_planted` runs sdcl-vecops's kernel with one change: in the vector
path, where b is full along the innermost axis (S3 = 1), b's elements are read one element late. Broadcasts along the
innermost axis and the element-by-element path stay right, so only some shapes show it."""

import hashlib
import tempfile
from pathlib import Path

import sdcl_vecops
from sdcl_vecops.launch import binary_launcher

from sdcl.registry import Variant

LINE = "const VREAL bv = S3 == 0 ? (VREAL)(b[off]) : VLOAD(b + off);"
PLANTED = "const VREAL bv = S3 == 0 ? (VREAL)(b[off]) : VLOAD(b + off + (VEC > 1));"

_source = (sdcl_vecops.KERNELS / "vecops.cl").read_text()
assert _source.count(LINE) == 1, "sdcl-vecops's kernel changed: re-plant the bug"
_planted = _source.replace(LINE, PLANTED)
KERNELS = Path(tempfile.gettempdir()) / f"sdcl-vecops-planted-{hashlib.sha1(_planted.encode()).hexdigest()[:12]}"
KERNELS.mkdir(exist_ok=True)
(KERNELS / "vecops_planted.cl").write_text(_planted)

add = binary_launcher("add", "vecops_planted.cl")
mul = binary_launcher("mul", "vecops_planted.cl")

VARIANTS = {op: [Variant("vec_planted", {"VEC": 4, "WG": 256}, space={"VEC": [1, 4], "WG": [64, 256]},
                         launcher=f"sdcl_vecops_planted:{op}", tier="vectorized elementwise")]
            for op in ("add", "mul")}
