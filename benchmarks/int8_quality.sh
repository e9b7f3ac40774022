#!/usr/bin/env bash
# ISS × int8, what it costs in quality: a PTB small model and an SST-2 classifier, each dense → ISS → compact, then
# scored in fp32, int8 and bf16 on the test split, the int8 gate run as CI would run it, and the int8 ONNX files.
#
#   benchmarks/int8_quality.sh [OUT_DIR]        (env: PTB, SST2, DENSE_EPOCHS, ISSCLI)
#
# A documented shorter run than BENCHMARKS.md's PTB small (13 dense epochs, 4 + 4 target epochs): DENSE_EPOCHS
# (default 6) of Zaremba's small recipe, then --target-hidden 100,100 with 2 pruning and 2 recovery epochs.
# SST-2 is issue 5's path (bilstm-classifier, λ = 0.015, τ = 2e-3, 5 epochs).
set -euo pipefail
OUT=${1:-runs/int8}
PTB=${PTB:-../shared/data/ptb}
SST2=${SST2:-../shared/data/sst2}
DENSE_EPOCHS=${DENSE_EPOCHS:-6}
ISSCLI=${ISSCLI:-isscli}
mkdir -p "$OUT/ptb" "$OUT/sst2"

P=$OUT/ptb
[ -f "$P/dense.safetensors" ] || $ISSCLI train --preset small --epochs "$DENSE_EPOCHS" --data "$PTB" -o "$P/dense.safetensors"
[ -f "$P/iss.safetensors" ] || $ISSCLI finetune "$P/dense.safetensors" --target-hidden 100,100 --prune-epochs 2 \
    --recover-epochs 2 --decay-after 2 --lr-decay 0.5 --data "$PTB" -o "$P/iss.safetensors"
$ISSCLI compact "$P/iss.safetensors" -o "$P/compact.safetensors" --force

S=$OUT/sst2
[ -f "$S/dense.safetensors" ] || $ISSCLI train --preset bilstm-classifier --data "$SST2" -o "$S/dense.safetensors"
[ -f "$S/iss.safetensors" ] || $ISSCLI finetune "$S/dense.safetensors" --lambda 0.015 --weight-threshold 2e-3 \
    --keep last --epochs 5 --data "$SST2" -o "$S/iss.safetensors"
$ISSCLI prune "$S/iss.safetensors" --group-threshold 2e-3 -o "$S/pruned.safetensors" --force
$ISSCLI compact "$S/pruned.safetensors" -o "$S/compact.safetensors" --force

for pair in "ptb:$PTB" "sst2:$SST2"; do
    name=${pair%%:*} data=${pair#*:}
    for model in dense compact; do
        for precision in fp32 int8 bf16; do
            flag=$([ "$precision" = fp32 ] || echo "--quantize $precision")
            $ISSCLI eval "$OUT/$name/$model.safetensors" --data "$data" $flag --force \
                --json "$OUT/$name/eval-$model-$precision.json" >/dev/null
        done
    done
    # the CI gate: int8 compact within 1% (perplexity) or 0.5 point (accuracy) of fp32 compact
    limit=$([ "$name" = ptb ] && echo 0.01 || echo 0.005)
    $ISSCLI eval "$OUT/$name/compact.safetensors" --data "$data" --quantize int8 \
        --baseline "$OUT/$name/compact.safetensors" --max-loss "$limit"
    $ISSCLI export "$OUT/$name/compact.safetensors" --quantize int8 -o "$OUT/$name/compact.int8.onnx" --force \
        --json "$OUT/$name/export-int8.json" >/dev/null
done
