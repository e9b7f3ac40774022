#!/usr/bin/env bash
# Issue 6's comparison: dense vs ISS (structured, compacted) vs SET, gradual magnitude pruning
# and L1 (unstructured, CSR inference), at matched parameter counts.
#
#   benchmarks/compare_unstructured.sh OUT_DIR
#
# env: DATA (corpus folder), PRESET (small | bilstm-classifier), DENSE and COMPACT (the dense
# parent and the ISS model compacted from it), MAG_FLAGS and L1_FLAGS (fine-tuning schedules),
# L1 (the L1 strength), ISSCLI; DENSITY overrides the matched density (e.g. to match the
# recurrent layers' multiply-adds instead of all parameters). Finished steps are skipped on a rerun.
set -euo pipefail
OUT=${1:?usage: compare_unstructured.sh OUT_DIR}
: "${DATA:?set DATA}" "${PRESET:?set PRESET}" "${DENSE:?set DENSE}" "${COMPACT:?set COMPACT}"
ISSCLI=${ISSCLI:-isscli}
PYTHON=${PYTHON:-python}
L1=${L1:-1e-4}
MAG_FLAGS=${MAG_FLAGS:---epochs 5 --prune-start 1 --prune-end 3}
L1_FLAGS=${L1_FLAGS:---epochs 3}
HERE=$(dirname "$0")
mkdir -p "$OUT"

DENSITY=${DENSITY:-$($PYTHON "$HERE/matched_density.py" "$DENSE" "$COMPACT")}
SPARSITY=$($PYTHON -c "print(f'{1 - $DENSITY:.6f}')")
echo "density $DENSITY (sparsity $SPARSITY)"

[ -f "$OUT/set.safetensors" ] || $ISSCLI train --preset "$PRESET" --method set --density "$DENSITY" \
    --data "$DATA" -o "$OUT/set.safetensors" --json "$OUT/set.train.json"
# shellcheck disable=SC2086
[ -f "$OUT/magnitude.safetensors" ] || $ISSCLI finetune "$DENSE" --magnitude-sparsity "$SPARSITY" $MAG_FLAGS \
    --data "$DATA" -o "$OUT/magnitude.safetensors" --json "$OUT/magnitude.train.json"
# shellcheck disable=SC2086
[ -f "$OUT/l1.safetensors" ] || $ISSCLI finetune "$DENSE" --l1 "$L1" $L1_FLAGS \
    --data "$DATA" -o "$OUT/l1.safetensors" --json "$OUT/l1.train.json"
$ISSCLI sparsify "$OUT/l1.safetensors" --sparsity "$SPARSITY" -o "$OUT/l1-sparse.safetensors" --force

declare -A MODELS=([dense]=$DENSE [iss]=$COMPACT [set]=$OUT/set.safetensors
                   [magnitude]=$OUT/magnitude.safetensors [l1]=$OUT/l1-sparse.safetensors)
for name in "${!MODELS[@]}"; do
    $ISSCLI eval "${MODELS[$name]}" --data "$DATA" --split test --json "$OUT/eval-$name.json"
done
$ISSCLI bench "$COMPACT" --against "$DENSE" --repeats 9 --json "$OUT/bench-iss.json"
for name in set magnitude l1; do
    $ISSCLI bench "${MODELS[$name]}" --unstructured --against "$DENSE" --repeats 9 --json "$OUT/bench-$name.json"
done
$PYTHON "$HERE/comparison_table.py" "$OUT"
