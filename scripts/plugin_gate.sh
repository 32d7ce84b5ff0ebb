#!/usr/bin/env bash
# The out-of-tree variant path as a user takes it: install the example plugin (examples/sdcl-vecops: `vec`, a
# vectorized broadcasting add / mul) and its twin with a planted bug (examples/sdcl-vecops-planted: `vec_planted`)
# as packages, found through their `sdcl.variants` entry points, and gate add and mul. Passes when the gate passes
# every `vec` row and fails every `vec_planted` row, naming op and variant (exit 1 from sdcl conformance).
# They go into a scratch folder on PYTHONPATH, not into the environment, so nothing else sees the planted twin.
#   bash scripts/plugin_gate.sh [REPORT_DIR]
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
report=${1:-conformance-plugins}
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
# without build isolation where setuptools is at hand (no download); Python >= 3.12 venvs lack it
iso=$(python -c "import setuptools" 2>/dev/null && echo --no-build-isolation)
python -m pip install -q --no-deps $iso --target "$site" \
  "$here/examples/sdcl-vecops" "$here/examples/sdcl-vecops-planted" || exit 3
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" sdcl conformance --ops add,mul --skip-models --report "$report"
rc=$?
python - "$report/report.json" "$rc" <<'PY'
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["rows"] if r["kind"] == "op"]
verdicts = {(r["name"], r["variant"], r["dtype"]): r["verdict"] for r in rows}
wrong = [f"{k}: {v}" for k, v in verdicts.items()
         if k[1] == "vec" and v != "pass" or k[1] == "vec_planted" and v != "FAIL"]
for op in ("add", "mul"):
    for variant in ("vec", "vec_planted"):
        if not any(k[:2] == (op, variant) for k in verdicts):
            wrong.append(f"no row for {op} {variant}: the plugin was not loaded")
if sys.argv[2] != "1":
    wrong.append(f"sdcl conformance exited {sys.argv[2]}, not 1 (a failed row)")
print("plugin gate: " + ("as expected: every vec row passes, every vec_planted row fails" if not wrong
                         else "NOT as expected:\n  " + "\n  ".join(wrong)))
sys.exit(1 if wrong else 0)
PY
