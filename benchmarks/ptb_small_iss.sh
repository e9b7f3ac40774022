#!/usr/bin/env bash
# Issue 3's CPU benchmark: Zaremba's small PTB model (2×200), then ISS by group-Lasso
# fine-tuning, prune, compact, λ = 0 recovery of the compacted model, eval and bench, all
# from the CLI. This is the path of BENCHMARKS.md's attempts 3a → 3b → 3c → 3f.
#
#   benchmarks/ptb_small_iss.sh [OUT_DIR]        (env: DATA, LAMBDA, TAU, DROPOUT, ISSCLI, PYTHON)
#
# Targets: dense test perplexity within 5% of 114.5; ≥ 40% fewer units in each layer with
# ≤ 3% perplexity loss; compact and eval give the same perplexity (to 0.01).
set -euo pipefail
OUT=${1:-runs/ptb-small}
DATA=${DATA:-../shared/data/ptb}
LAMBDA=${LAMBDA:-0.012}
TAU=${TAU:-1e-4}
DROPOUT=${DROPOUT:-0.1}
ISSCLI=${ISSCLI:-isscli}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

# A spec with per-set multipliers (λ_set = λ · multiplier).
multipliers() {  # SPEC_IN SPEC_OUT M0 M1
    $PYTHON - "$@" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
for iss, multiplier in zip(spec["sets"], sys.argv[3:]):
    iss["multiplier"] = float(multiplier)
json.dump(spec, open(sys.argv[2], "w"), indent=1)
PY
}

[ -f "$OUT/dense.safetensors" ] || $ISSCLI train --preset small --data "$DATA" -o "$OUT/dense.safetensors" \
    --json "$OUT/train.json"
$ISSCLI groups "$OUT/dense.safetensors" -o "$OUT/spec-derived.json" --force >/dev/null
multipliers "$OUT/spec-derived.json" "$OUT/spec.json" 1 1.5       # layer 1 lags behind: push it harder
multipliers "$OUT/spec-derived.json" "$OUT/spec-l0.json" 2 0.75   # then layer 0
# 3a: 3 epochs of group Lasso at lr 1; 3b: 1 more with the multipliers swapped.
[ -f "$OUT/iss1.safetensors" ] || $ISSCLI finetune "$OUT/dense.safetensors" --lambda "$LAMBDA" --spec "$OUT/spec.json" \
    --weight-threshold "$TAU" --keep last --epochs 3 --data "$DATA" -o "$OUT/iss1.safetensors" --json "$OUT/finetune1.json"
[ -f "$OUT/iss.safetensors" ] || $ISSCLI finetune "$OUT/iss1.safetensors" --lambda "$LAMBDA" --spec "$OUT/spec-l0.json" \
    --weight-threshold "$TAU" --keep last --epochs 1 --data "$DATA" -o "$OUT/iss.safetensors" --json "$OUT/finetune2.json"
# 3c: prune, compact; eval dense, pruned and compact; bench compact against dense (OUT/shrink.json).
$ISSCLI shrink "$OUT/iss.safetensors" --baseline "$OUT/dense.safetensors" -o "$OUT" --data "$DATA" \
    --group-threshold "$TAU" --evaluate baseline,pruned,compact --bench-repeats 9 --force
# 3f: λ = 0 recovery of the compacted model, with dropout.
[ -f "$OUT/recovered.safetensors" ] || $ISSCLI finetune "$OUT/compact.safetensors" --lambda 0 --dropout "$DROPOUT" \
    --epochs 8 --lr 1 --decay-after 3 --lr-decay 0.5 --data "$DATA" -o "$OUT/recovered.safetensors" \
    --json "$OUT/recover.json"
