#!/usr/bin/env bash
# Issue 6's GPU check, one call on an H100/H200 in under 8 minutes (the `device` tool; first run
# benchmarks/device_wheels.sh here):   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#  1. `diga bench` at the paper's network, batch and crop (config/gta5_to_cityscapes.yaml: DeepLabV2-R101,
#     3 + 3 crops of 512x896, evaluation at 1024x2048), every mode, the fp32 eager baseline in the same process;
#  2. torch.compile on the warm-up iteration and evaluation (compilation takes minutes, so only those two);
#  2b. the translator with config/gpu_24gb.yaml (two parts per iteration): its peak memory for a 24 GB card;
#  3. bf16 + channels_last against fp32 on one random batch of the paper's network (logits, loss, gradient);
#  4. the host-device synchronisations left inside the warm-up and self-training iterations;
#  5. the data loader at the paper's crop with 0, 1 and 8 workers.
# Everything lands in $OUT (benchmarks/scratch/gpu without the device tool); copy the tables into
# benchmarks/RESULTS.md with the card, the date and the torch version.
set -uo pipefail
OUT=${OUT:-benchmarks/scratch/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! python3 -c "import jsonschema" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# CONFIG, EVAL_SIZE, LOADER and COMPILE_STAGES can be overridden to try the script on a CPU with small configs
# (tests/test_bench.py);
# LIMIT_SCALE multiplies every step's time limit there (a CPU without native bf16 runs the bf16 modes ~10x slower).
CONFIG=${CONFIG:-config/gta5_to_cityscapes.yaml}
EVAL_SIZE=${EVAL_SIZE:-1024 2048}
LOADER=${LOADER:-benchmarks/loader_gta5_size.yaml}
LIMIT_SCALE=${LIMIT_SCALE:-1}
# COMPILE_STAGES: the stages step 2 compiles (on a CPU, inductor takes minutes for the warm-up's graph).
COMPILE_STAGES=${COMPILE_STAGES:-warmup evaluate}
# MODE_STAGES: the stages step 1 times; ONLY: the steps to run (default all), to finish a check cut short.
MODE_STAGES=${MODE_STAGES:-translator warmup selftrain evaluate}
ONLY=${ONLY:-}
# The fp32 baseline takes seconds per iteration at the paper's size (5.5 s for the warm-up on an H200), so it is
# timed over FP32_ITERATIONS only.
FP32_ITERATIONS=${FP32_ITERATIONS:-2}
step() {  # name, time limit (s), command...: a step that fails or overruns is reported and the next one runs
  local name=$1 limit=$(( $2 * LIMIT_SCALE )); shift 2
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  echo "== $name ($(date +%T))"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | grep -v '^\[bench\] .* \.\.\.$'
  echo "== $name: exit ${PIPESTATUS[0]}"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__)"; } | tee "$OUT/device.txt"
step modes 160 python3 -m diga bench --config $CONFIG --stages $MODE_STAGES --modes fp32 tf32 bf16 bf16+cl \
  --iterations 10 --fp32-iterations $FP32_ITERATIONS --warmup 2 --eval-size $EVAL_SIZE --out "$OUT/bench_modes.csv"
step compile 145 python3 -m diga bench --config $CONFIG --stages $COMPILE_STAGES --modes bf16+cl bf16+cl+compile \
  --iterations 15 --fp32-iterations 1 --warmup 5 --eval-size $EVAL_SIZE --out "$OUT/bench_compile.csv"
step translator_24gb 35 python3 -m diga bench --config $CONFIG config/gpu_24gb.yaml --stages translator --modes bf16+cl \
  --iterations 3 --warmup 1 --out "$OUT/bench_translator_24gb.csv"
# Host-device synchronisations left inside the training iterations (each prints a warning with its stack).
step syncs 40 python3 -m diga bench --config $CONFIG --stages warmup selftrain --modes bf16+cl --iterations 2 \
  --fp32-iterations 1 --warmup 1 --sync-debug --out "$OUT/bench_syncs.csv"
[ -f "$OUT/syncs.log" ] && grep -c "called a synchronizing CUDA operation" "$OUT/syncs.log" | sed 's/^/synchronisation warnings: /'
step numerics 30 python3 -m diga bench-numerics --config $CONFIG --batch 3 --out "$OUT/numerics.json"
step make_toy 30 python3 -m diga make-toy --config $LOADER
step data 40 python3 -m diga bench-data --config $LOADER --workers 0 1 8 --batches 30 --out "$OUT/bench_data.csv"
