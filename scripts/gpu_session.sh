#!/usr/bin/env bash
# The GPU machine's runs, batched into few calls (device time is scarce). Run from the repo root there, with the
# wheels of ../shared/device/fetch-wheels.sh carried in .whl:
#   bash scripts/gpu_session.sh STAGE...      stages: gate tune gemm ladder profile perf generate
# Everything a stage writes goes under $OUT (the device tool brings it back).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 SDCL_CACHE_DIR=/tmp/sdcl-cache
mkdir -p /etc/OpenCL/vendors && echo libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd
DEV=${SDCL_DEVICE:-nvidia}
python3 -m sdcl.cli devices | tee "$OUT/devices.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$OUT/devices.txt"
for stage in "$@"; do
  echo "=== $stage ($(date +%T))"
  case "$stage" in
    gate)     python3 -m sdcl.cli conformance --device "$DEV" --report "$OUT/gate" ;;
    tune)     python3 -m sdcl.cli tune --device "$DEV" --model sd21-base --max-configs ${MAX_CONFIGS:-12} --reps 5 \
                ${TUNE_OPS:+--ops $TUNE_OPS} \
                | tee "$OUT/tune.log"; cp tuning/*.json "$OUT/" ;;
    gemm)     python3 scripts/bench_gemm.py --device "$DEV" --out "$OUT/gemm.json" ;;
    ladder)   python3 -m sdcl.cli ladder --device "$DEV" --model sd21-base --size 512 --reps ${REPS:-3} \
                ${ROWS:+--rows $ROWS} --out "$OUT" ;;
    profile)  python3 scripts/profile_step.py --device "$DEV" --out "$OUT/profile.json" | tee "$OUT/profile.txt"
              python3 scripts/profile_step.py --device "$DEV" --half --out "$OUT/profile-half.json" \
                | tee "$OUT/profile-half.txt" ;;
    perf)     # appends to $OUT/perf-history.sqlite (copy the device's history there first to extend it);
              # PERF_ARGS: e.g. "-k test_op" or "--full-size -k 'test_layer or test_e2e'"
              eval "SDCL_PERF_DB=\"$OUT/perf-history.sqlite\" python3 -m sdcl.cli perf run --device \"$DEV\" ${PERF_ARGS:-}" ;;
    generate) python3 -m sdcl.cli generate "a lighthouse at dusk" --model sd21-base --backend opencl --device "$DEV" \
                --steps ${STEPS:-20} --quiet -o "$OUT/sd21-opencl.png" ;;
    *)        echo "unknown stage $stage"; exit 2 ;;
  esac
done
