"""A planted slowdown: a copy of a real kernel file with extra work at the top of one entry point, used as a
--kernel-overlay to prove that `sdcl perf check` catches a slower kernel (tests/test_perf_history.py).

The extra work is a straight-line chain of `DELAY` dependent multiply-adds per work-item whose result feeds a
store that never happens (the value is never -1) but that the compiler cannot prove dead. Straight-line code,
not a loop, and no early return: PoCL vectorises a kernel across work-items only when its body has neither, and a
de-vectorised kernel would be a 5x slowdown rather than the tens of percent a real regression looks like. The
kernel's results are unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

from sdcl.resources import kernel_dir


def plant_delay(source: str, entry: str, delay: int) -> str:
    """`source` with `delay` multiply-adds inserted at the start of `__kernel void <entry>(...)`."""
    m = re.search(r"__kernel\s+void\s+" + re.escape(entry) + r"\s*\(([^)]*)\)\s*\{", source)
    if m is None:
        raise ValueError(f"no __kernel void {entry}(...) in the source")
    params = [p.strip() for p in m.group(1).split(",")]
    outs = [p for p in params if "__global" in p and "*" in p and "const" not in p]
    if not outs:
        raise ValueError(f"{entry}: no writable __global pointer parameter to sink the planted work into")
    out = re.findall(r"\w+", outs[0])[-1]
    chain = " ".join(["d = d * 0.999f + 1.0f;"] * delay)
    block = (f"\n    {{ /* planted slowdown */ float d = (float)get_global_id(0); {chain} "
             f"if (d == -1.0f) {out}[0] = 0; }}")
    return source[:m.end()] + block + source[m.end():]


def planted_overlay(folder: Path, op: str, variant: str = "naive", delay: int = 48) -> Path:
    """Write kernels/<op>.cl with a planted delay in <op>_<variant> into folder; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = (kernel_dir() / f"{op}.cl").read_text()
    (folder / f"{op}.cl").write_text(plant_delay(src, f"{op}_{variant}", delay))
    return folder
