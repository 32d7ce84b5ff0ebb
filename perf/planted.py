"""A planted slowdown: a copy of a real kernel file with extra work at the top of one entry point, used as a
--kernel-overlay to prove that `sdcl perf check` catches a slower kernel (tests/integration/test_perf_history.py).
The other entry points of the file are unchanged.

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


# `__kernel [__attribute__((...))] void <entry>(`
_ENTRY = r"__kernel\s+(?:__attribute__\s*\(\(.*?\)\)\s*)?void\s+{}\s*\("


def plant_delay(source: str, entry: str, delay: int) -> str:
    """`source` with `delay` multiply-adds inserted at the start of `__kernel void <entry>(...)`."""
    m = re.search(_ENTRY.format(re.escape(entry)) + r"([^)]*)\)\s*\{", source)
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


def kernel_file_of(entry: str, folder: Path | None = None) -> Path:
    """The kernel file (relative to `folder`, default sdcl's kernels/) that defines `__kernel void <entry>(...)`."""
    folder = Path(folder) if folder else kernel_dir()
    pattern = re.compile(_ENTRY.format(re.escape(entry)))
    found = [p for p in sorted(folder.rglob("*.cl")) if pattern.search(p.read_text())]
    if len(found) != 1:
        raise ValueError(f"{len(found)} kernel files in {folder} define {entry}, expected one: {found}")
    return found[0].relative_to(folder)


def planted_overlay(folder: Path, op: str, variant: str = "naive", delay: int = 48) -> Path:
    """Write a copy of the kernel file holding <op>_<variant> (at its path relative to kernels/) with a planted delay in
    that entry point into folder; returns the folder."""
    folder = Path(folder)
    entry = f"{op}_{variant}"
    rel = kernel_file_of(entry)
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    (folder / rel).write_text(plant_delay((kernel_dir() / rel).read_text(), entry, delay))
    return folder
