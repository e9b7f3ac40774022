#!/usr/bin/env bash
# Issue 3's CPU benchmark: Zaremba's small PTB model (2×200), then ISS by group-Lasso
# fine-tuning, prune, compact, eval before/after and bench, all from the CLI.
#
#   benchmarks/ptb_small_iss.sh [OUT_DIR]        (env: DATA, LAMBDA, FT_EPOCHS, TAU)
#
# Targets: dense test perplexity within 5% of 114.5; fine-tuning removes ≥ 40% of each layer's
# units with ≤ 3% perplexity loss; compact and eval give the same perplexity (to 0.01).
set -euo pipefail
OUT=${1:-runs/ptb-small}
DATA=${DATA:-../shared/data/ptb}
LAMBDA=${LAMBDA:-0.002}
FT_EPOCHS=${FT_EPOCHS:-7}
TAU=${TAU:-1e-4}
ISSCLI=${ISSCLI:-isscli}
mkdir -p "$OUT"

[ -f "$OUT/dense.safetensors" ] || $ISSCLI train --preset small --data "$DATA" -o "$OUT/dense.safetensors" \
    --json "$OUT/train.json"
[ -f "$OUT/iss.safetensors" ] || $ISSCLI finetune "$OUT/dense.safetensors" --lambda "$LAMBDA" --keep last \
    --epochs "$FT_EPOCHS" --data "$DATA" -o "$OUT/iss.safetensors" --json "$OUT/finetune.json"
source "$(dirname "$0")/iss_tail.sh"
