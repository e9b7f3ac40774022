#!/usr/bin/env bash
# Issue 15: the paper's Table 1 on one GPU, and the CUDA speed-up measured — every GPU check in one
# script, so that a short lease of a GPU machine is enough (run it there as it is):
#
#   benchmarks/gpu_table1.sh                         # DEVICE=cuda, the large preset, ../shared/data/ptb
#   STOP_AFTER=28 benchmarks/gpu_table1.sh           # split the training: run the script again to continue
#
# 1. bench, CUDA: the ISS model (373, 315) against 2×1500, batch 10 and batch 1, eager and with CUDA graphs;
# 2. training-step time of the large preset with λ = 0, λ > 0 and λ > 0 with τ (regularizer overhead);
# 3. the Table-1 run: train --preset large --lambda 0.00245 --dropout 0.4 (paper: (373, 315), test 78.65),
#    resumable (--save-every; a second invocation continues with --resume);
# 4. shrink: prune (τ = 1e-4) → compact (verified) → eval on the test split → bench against 2×1500.
#
# env: DEVICE (cuda), PRESET (large), DATA, OUT (runs/gpu-table1), PRECISION (bf16), REPEATS (20),
#      SHAPES (373,315), AGAINST (1500,1500), STOP_AFTER (unset: train to the end), TRAIN_FLAGS (extra flags,
#      e.g. --max-batches 2 for a smoke test), ISSCLI, PYTHON. tests/test_gpu_paths.py runs it on the CPU at
#      tiny sizes, so that the first GPU run cannot fail on a typo.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-large}
DATA=${DATA:-../shared/data/ptb}
OUT=${OUT:-runs/gpu-table1}
PRECISION=${PRECISION:-bf16}
REPEATS=${REPEATS:-20}
SHAPES=${SHAPES:-373,315}
AGAINST=${AGAINST:-1500,1500}
PYTHON=${PYTHON:-python}
ISSCLI=${ISSCLI:-$PYTHON -m isscli}
mkdir -p "$OUT"
started=$(date +%s)

# 1. CUDA speed-ups of the paper's shapes (eager, then CUDA graphs where there is CUDA); a second invocation,
#    which continues the training, skips steps 1 and 2
if [ ! -f "$OUT/steps.json" ]; then
for batch in 10 1; do
    $ISSCLI bench --shapes "$SHAPES" --against-shapes "$AGAINST" --device "$DEVICE" --batch "$batch" \
        --repeats "$REPEATS" --json "$OUT/bench-b$batch.json"
    if [ "$DEVICE" != cpu ]; then
        $ISSCLI bench --shapes "$SHAPES" --against-shapes "$AGAINST" --device "$DEVICE" --batch "$batch" \
            --repeats "$REPEATS" --cuda-graphs --json "$OUT/bench-b$batch-graphs.json"
    fi
done

# 2. the training step, with and without the regularizer
$PYTHON "$HERE/regularizer_overhead.py" --preset "$PRESET" --device "$DEVICE" --json "$OUT/steps.json"
fi

# 3. the Table-1 run (resumable across invocations)
RESUME=()
if [ -f "$OUT/iss.resume.safetensors" ]; then RESUME=(--resume); fi
STOP=()
if [ -n "${STOP_AFTER:-}" ]; then STOP=(--stop-after "$STOP_AFTER"); fi
# shellcheck disable=SC2086
$ISSCLI train --preset "$PRESET" --lambda 0.00245 --dropout 0.4 --data "$DATA" --device "$DEVICE" \
    --precision "$PRECISION" --save-every 500 -o "$OUT/iss.safetensors" --force "${RESUME[@]}" "${STOP[@]}" \
    ${TRAIN_FLAGS:-} --json "$OUT/train.json"
if [ -f "$OUT/iss.resume.safetensors" ]; then
    echo "training stopped at epoch $STOP_AFTER: run the script again to continue"
    exit 0
fi

# 4. prune → compact → eval → bench against the dense shapes
$ISSCLI shrink "$OUT/iss.safetensors" -o "$OUT" --data "$DATA" --group-threshold 1e-4 --evaluate compact \
    --device "$DEVICE" --no-bench --force --json "$OUT/shrink-report.json"
SIZES=$($PYTHON -c "import json,sys; print(','.join(str(s[0]) for s in json.load(open(sys.argv[1]))['hidden_sizes_after']))" \
    "$OUT/shrink.json")
$ISSCLI bench --shapes "$SIZES" --against-shapes "$AGAINST" --device "$DEVICE" --repeats "$REPEATS" \
    --json "$OUT/bench-trained.json" --force
echo "done in $(( $(date +%s) - started )) s: compacted sizes $SIZES; reports in $OUT/"
