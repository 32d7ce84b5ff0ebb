#!/usr/bin/env bash
# The GPU machine's runs, batched into few calls (device time is scarce). Run from the repo root there, with the
# wheels of ../shared/device/fetch-wheels.sh and a wheel of sdcl itself carried in .whl (here, before the call:
# `rm -f .whl/sdcl-*.whl && pip wheel --no-deps -q -w .whl .`):
#   bash scripts/gpu_session.sh STAGE...
# Everything runs from a scratch folder, not the checkout: the checkout's sdcl/ folder on sys.path would shadow the
# installed namespace (its sdcl.reference, sdcl.kernels ... live in other folders of the checkout).
# stages: gate deep profsetting xdist devtests attncheck gemmcheck tune tunetrace gemm gemmsd gemmsdhalf ladder profile perf halfpsnr abknobs keep generate pack (pack: $OUT as one all.tgz, since
# the device tool brings back only a few files)
# Everything a stage writes goes under $OUT (the device tool brings it back).
set -uo pipefail
REPO=$PWD
OUT=$(realpath -m "${OUT:-out}")
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SDCL_CACHE_DIR=${SDCL_CACHE_DIR:-/tmp/sdcl-cache} SDCL_TUNING_DIR=$OUT/tuning
# CLBlast, the GEMM benchmarks' OpenCL BLAS baseline: Debian's libclblast1 (and ocl-icd's loader where the machine has
# none) carried unpacked in .whl/clblast (`apt-get download libclblast1 ocl-icd-libopencl1`, `dpkg -x`)
if [ -f .whl/clblast/libclblast.so.1 ]; then
  export SDCL_CLBLAST_LIB=$REPO/.whl/clblast/libclblast.so.1
  ldconfig -p | grep -q libOpenCL.so.1 || export LD_LIBRARY_PATH=$REPO/.whl/clblast${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
mkdir -p /tmp/run && cd /tmp/run
mkdir -p /etc/OpenCL/vendors && echo libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd
DEV=${SDCL_DEVICE:-nvidia}
python3 -m sdcl.cli devices | tee "$OUT/devices.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$OUT/devices.txt"
for stage in "$@"; do
  echo "=== $stage ($(date +%T))"
  case "$stage" in
    gate)     # GATE_ARGS: more arguments (e.g. "--ops silu": one cheap op and every model check)
              python3 -m sdcl.cli conformance --device "$DEV" --report "$OUT/gate${GATE_NAME:+-$GATE_NAME}" \
                ${GATE_ARGS:-} ;;
    attncheck) PYOPENCL_TEST="$DEV" python3 -m pytest -q -p no:cacheprovider $REPO/tests/device/test_norm_attention_variants.py \
                 -k attention 2>&1 | tail -5 | tee "$OUT/attncheck.txt"
               python3 -m sdcl.cli conformance --device "$DEV" --ops attention --skip-models --report "$OUT/gate-attention" \
                 | tail -5 ;;
    tune)     python3 -m sdcl.cli tune --device "$DEV" --model sd21-base --max-configs ${MAX_CONFIGS:-12} --reps 5 \
                ${TUNE_OPS:+--ops $TUNE_OPS} ${TUNE_VARIANTS:+--variants $TUNE_VARIANTS} \
                ${TUNE_DTYPE:+--dtype $TUNE_DTYPE} \
                | tee -a "$OUT/tune.log" ;;
    tunetrace) # TRACE_TIMEOUT: stop after so many seconds, keeping the database of the ops finished (saved per op)
               timeout ${TRACE_TIMEOUT:-3000} python3 -m sdcl.cli tune --device "$DEV" --model sd21-base \
                 --trace-size ${SIZE:-512} --ops ${TRACE_OPS:-matmul,batched_matmul,linear,attention} \
                 --max-configs ${MAX_CONFIGS:-8} --reps ${TUNE_REPS:-3} ${TUNE_VARIANTS:+--variants $TUNE_VARIANTS} \
                 ${TUNE_DTYPE:+--dtype $TUNE_DTYPE} \
                 | grep -e "->" -e traced -e rejected \
                 | tee -a "$OUT/tune.log" ;;
    gemmcheck) # every gemm config's edge, tail and prefetch paths against float64 ($REPO/tests/device/test_gemm_variants.py)
               PYOPENCL_TEST="$DEV" timeout ${CHECK_TIMEOUT:-400} python3 -m pytest -q -p no:cacheprovider \
                 $REPO/tests/device/test_gemm_variants.py 2>&1 | tail -15 | tee "$OUT/gemmcheck.txt" ;;
    devtests) # the device tier of the tests, on the GPU (TESTS_TIMEOUT: stop after so many seconds; TESTS: a file
              # or folder of tests/device; TEST_ARGS: more pytest arguments, e.g. -x)
               PYOPENCL_TEST="$DEV" timeout ${TESTS_TIMEOUT:-400} python3 -m pytest -q -p no:cacheprovider \
                 ${TEST_ARGS:-} $REPO/${TESTS:-tests/device} 2>&1 | tail -25 | tee "$OUT/devtests${TESTS:+-$(basename $TESTS .py)}.txt" ;;
    deep)     # the gate at a deeper profile (PROFILE: thorough or dev), every knob setting; OPS: a subset; reports grow
              # row by row, and a split row's settings.jsonl setting by setting, so a run stopped at DEEP_TIMEOUT keeps
              # what it checked; RESUME: an earlier call's settings.jsonl (carried in .whl) whose settings are taken
              # (--resume) instead of checked again
              deep="$OUT/deep-${PROFILE:-thorough}${DEEP_NAME:+-$DEEP_NAME}"
              [ -n "${RESUME:-}" ] && mkdir -p "$deep" && cp "$REPO/$RESUME" "$deep/settings.jsonl"
              timeout ${DEEP_TIMEOUT:-500} python3 -m sdcl.cli conformance --device "$DEV" --profile ${PROFILE:-thorough} \
                --skip-models ${OPS:+--ops $OPS} ${ROWS:+--rows $ROWS} --jobs ${JOBS:-12} ${RESUME:+--resume} \
                --report "$deep" | tail -40 ;;
    xdist)    # the gate as a pytest plugin (pytest --sdcl) over N xdist workers, for each N of XDIST_N, each run cold (its
              # own kernel cache), in an empty folder as another repository runs it; wall times in xdist.txt
              for n in ${XDIST_N:-1 8}; do
                s0=$(date +%s.%N)
                SDCL_CACHE_DIR=/tmp/sdcl-cache-xdist-$n-$RANDOM python3 -m pytest -p no:cacheprovider -q --sdcl \
                  --sdcl-device "${XDIST_DEVICES:-$DEV}" -n $n --sdcl-report "$OUT/xdist-n$n" \
                  --junitxml "$OUT/xdist-n$n/pytest-junit.xml" ${XDIST_ARGS:-} 2>&1 | tail -4
                echo "pytest --sdcl --sdcl-device ${XDIST_DEVICES:-$DEV} -n $n: $(python3 -c "print(round($(date +%s.%N) - $s0, 1))") s" \
                  | tee -a "$OUT/xdist.txt"
              done ;;
    profsetting) # where a split row's knob setting spends its time: PROF_ROW (op:variant:dtype), PROF_PARTS (0,1,2)
              python3 $REPO/scripts/profile_setting.py --device "$DEV" ${PROF_ROW:-linear:mma_f16_half:float16} \
                ${PROF_PARTS:-0,1,2} --profile ${PROFILE:-thorough} 2>&1 | grep -v CompilerWarning \
                | tee -a "$OUT/profile-setting.txt" ;;
    abknobs)  # AB_ARGS: scripts/ab_knobs.py's arguments (op, variant, dtype, the knob settings to compare at SD shapes)
              python3 $REPO/scripts/ab_knobs.py --device "$DEV" $AB_ARGS | tee -a "$OUT/ab-knobs.txt" ;;
    pack)     (cd "$OUT" && tar czf /tmp/all.tgz . && rm -rf ./* && mv /tmp/all.tgz .) ;;
    gemm)     python3 $REPO/scripts/bench_gemm.py --device "$DEV" --out "$OUT/gemm.json" ;;
    gemmsd)   # the SD GEMM shapes as the policy runs them, against CLBlast and torch
              python3 $REPO/scripts/bench_gemm.py --sd --device "$DEV" --out "$OUT/gemm-sd.json" | tee "$OUT/gemm-sd.txt" ;;
    gemmsdhalf) # linear's SD shapes in half mode (float16 weight) against torch float16
              python3 $REPO/scripts/bench_gemm.py --sd --half --device "$DEV" --out "$OUT/gemm-sd-half.json" \
                | tee "$OUT/gemm-sd-half.txt" ;;
    ladder)   python3 -m sdcl.cli ladder --device "$DEV" --model sd21-base --size 512 --reps ${REPS:-3} \
                ${ROWS:+--rows $ROWS} --out "$OUT" ${LADDER_ARGS:-} ;;
    profile)  # MODES: which of float32 half float16 to profile (default: all three); SHAPES: N, also each stage's N
              # heaviest op calls with their variants and FLOP rates; PROFILE_ARGS: more arguments (--reps 3)
              for m in ${MODES:-float32 half float16}; do
                flag=$([ "$m" = float32 ] || echo "--$m"); sfx=$([ "$m" = float32 ] || echo "-$m")
                python3 $REPO/scripts/profile_step.py --device "$DEV" $flag ${SHAPES:+--shapes $SHAPES} \
                  ${PROFILE_ARGS:-} --out "$OUT/profile$sfx.json" \
                  | tee "$OUT/profile$sfx.txt"
              done ;;
    perf)     # appends to $OUT/perf-history.sqlite (copy the device's history there first to extend it);
              # PERF_ARGS: e.g. "-k test_op" or "--full-size -k 'test_layer or test_e2e'"
              eval "SDCL_PERF_DB=\"$OUT/perf-history.sqlite\" python3 -m sdcl.cli perf run --device \"$DEV\" ${PERF_ARGS:-}" ;;
    halfpsnr) # prompt to PNG with half-stored weights (on NVIDIA the tensor-core float16 variants), then in float16,
              # against float32: PSNR >= 35 dB, the latents' relative error (scripts/half_psnr.py); MODES: half float16
              for m in ${MODES:-half float16}; do
                flag=$([ "$m" = half ] || echo "--$m")
                python3 $REPO/scripts/half_psnr.py --device "$DEV" --model sd21-base --size ${SIZE:-512} $flag \
                  --steps ${STEPS:-20} --out "$OUT/$m-psnr.json" | tee "$OUT/$m-psnr.txt"
              done ;;
    keep)     # the tuning table written so far, kept on the machine for the next call (KEEP=restore: copy it back)
              if [ "${KEEP:-}" = restore ]; then mkdir -p "$OUT/tuning" && cp -r /tmp/kept-tuning/. "$OUT/tuning/"
              else mkdir -p /tmp/kept-tuning && cp -r "$OUT/tuning/." /tmp/kept-tuning/ 2>/dev/null; fi ;;
    generate) python3 -m sdcl.cli generate "a lighthouse at dusk" --model sd21-base --backend opencl --device "$DEV" \
                --steps ${STEPS:-20} --quiet ${GEN_ARGS:-} -o "$OUT/sd21-opencl.png" ;;
    *)        echo "unknown stage $stage"; exit 2 ;;
  esac
done
