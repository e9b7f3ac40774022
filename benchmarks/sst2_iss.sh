#!/usr/bin/env bash
# Issue 5's classifier benchmark: a bidirectional LSTM on SST-2, dense vs ISS.
#
#   benchmarks/sst2_iss.sh [OUT_DIR]     (env: DATA, LAMBDA, TAU, FT_EPOCHS)
#
# Target: ISS with ≥ 50% fewer recurrent units and ≤ 1 point accuracy loss on SST-2 test.
set -euo pipefail
OUT=${1:-runs/sst2}
DATA=${DATA:-../shared/data/sst2}
LAMBDA=${LAMBDA:-0.05}
TAU=${TAU:-2e-3}
FT_EPOCHS=${FT_EPOCHS:-5}
ISSCLI=${ISSCLI:-isscli}
mkdir -p "$OUT"

[ -f "$OUT/dense.safetensors" ] || $ISSCLI train --preset bilstm-classifier --data "$DATA" \
    -o "$OUT/dense.safetensors" --json "$OUT/train.json"
[ -f "$OUT/iss.safetensors" ] || $ISSCLI finetune "$OUT/dense.safetensors" --lambda "$LAMBDA" --weight-threshold "$TAU" \
    --keep last --epochs "$FT_EPOCHS" --data "$DATA" -o "$OUT/iss.safetensors" --json "$OUT/finetune.json"
$ISSCLI shrink "$OUT/iss.safetensors" --baseline "$OUT/dense.safetensors" -o "$OUT" --data "$DATA" \
    --group-threshold "$TAU" --evaluate baseline,pruned,compact --bench-repeats 9 --force
