"""A/B of two commits' benchmarks on one machine: is a change the regression check reports the code's, or the
machine's?

A history compares runs taken at different times, possibly on different machines of the same kind (a lent GPU is
a fresh host on each loan). This script runs the benchmark suite of an older commit (extracted with `git archive`)
and of the working tree in alternating processes (new, old, new, old, ...) on the same device, so both see the
same machine, merges each side's processes into one run (perf.cli.merge_processes), stores the two runs (old
first) in a history and prints `sdcl perf check` on it.

    python scripts/ab_perf.py --old add435d4 --device nvidia -k "tiled_reg or group_norm_silu" --db ab.sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sdcl.perf.cli import check, merge_processes, pytest_command
from sdcl.perf.history import History

ROOT = Path(__file__).resolve().parents[1]


def extract(commit: str, dest: Path) -> str:
    """The tree of `commit` under dest; returns the full commit id."""
    full = subprocess.check_output(["git", "rev-parse", commit], cwd=ROOT, text=True).strip()
    archive = subprocess.run(["git", "archive", full], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return full


def importable(tree: Path, site: Path) -> tuple:
    """(suite folder, PYTHONPATH entry) that run `tree`'s benchmarks on `tree`'s own code. A tree with the sdcl.*
    namespace gets an `sdcl` package in `site` whose subpackages link to the tree's folders, as its pyproject.toml
    maps them; an older tree (top-level packages, suite in perf/) runs from the tree itself."""
    import tomllib
    if not (tree / "perf" / "benchmarks").is_dir():
        return tree / "perf", tree
    mapping = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    pkg = site / "sdcl"
    pkg.mkdir(parents=True)
    for f in (tree / mapping.get("sdcl", "sdcl")).iterdir():
        (pkg / f.name).symlink_to(f)
    for name, folder in mapping.items():
        parts = name.split(".")
        if len(parts) == 2:                      # sdcl.x -> folder; deeper names live inside their parent's folder
            (pkg / parts[1]).symlink_to(tree / folder)
    return tree / "perf" / "benchmarks", site


def bench(suite: Path, path: Path | None, json_path: Path, device: str | None, keyword: str, extra: list) -> dict | None:
    cmd = pytest_command(str(json_path), device, keyword=keyword, extra=extra, suite_dir=suite)
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    print(f"$ (in {suite}) {' '.join(cmd)}", flush=True)
    subprocess.call(cmd, cwd=suite, env=env)
    return json.loads(json_path.read_text()) if json_path.exists() and json_path.stat().st_size else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the older commit (anything git rev-parse takes)")
    ap.add_argument("--device", help="OpenCL device selector (PYOPENCL_CTX syntax)")
    ap.add_argument("-k", required=True, help="pytest -k expression: the benchmarks to compare")
    ap.add_argument("--processes", type=int, default=2, help="processes per side, alternating (default 2)")
    ap.add_argument("--db", default="ab-history.sqlite", help="history file the two runs are added to")
    ap.add_argument("--keep-json", help="folder for the merged JSON of each side")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: more pytest arguments")
    a = ap.parse_args()
    extra = [x for x in a.pytest_args if x != "--"]
    new_id = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    dirty = bool(subprocess.check_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                         text=True).strip())
    with tempfile.TemporaryDirectory(prefix="sdcl-ab-") as tmp:
        tmp = Path(tmp)
        (tmp / "old").mkdir()
        old_id = extract(a.old, tmp / "old")
        old_suite, old_path = importable(tmp / "old", tmp / "old-site")
        sides = {"new": (ROOT / "perf" / "benchmarks", None), "old": (old_suite, old_path)}
        docs = {"old": [], "new": []}
        for i in range(a.processes):
            for side, (suite, path) in sides.items():
                doc = bench(suite, path, tmp / f"{side}-{i}.json", a.device, a.k, extra)
                if doc:
                    docs[side].append(doc)
        if not docs["old"] or not docs["new"]:
            print("ab_perf: a side completed no benchmark", file=sys.stderr)
            return 2
        stamps = sorted(d.get("datetime") or "" for side in docs.values() for d in side)
        with History(a.db) as h:  # the old side first: the check takes the newest run as the one to judge
            for side, commit, is_dirty, stamp in (("old", old_id, False, stamps[0]),
                                                  ("new", new_id, dirty, stamps[-1])):
                merged = merge_processes(docs[side])
                merged["commit_info"] = dict(merged.get("commit_info") or {}, id=commit, dirty=is_dirty)
                merged["datetime"] = stamp
                if a.keep_json:
                    Path(a.keep_json).mkdir(parents=True, exist_ok=True)
                    (Path(a.keep_json) / f"ab-{side}.json").write_text(json.dumps(merged, indent=1))
                h.import_json(merged, source=f"ab_perf.py {side} ({commit[:8]})")
    return check(a.db, verbose=True)


if __name__ == "__main__":
    sys.exit(main())
