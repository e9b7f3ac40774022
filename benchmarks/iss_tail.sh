# Shared last steps of the ISS benchmark scripts (sourced, not run): prune the fine-tuned model,
# compact it, evaluate dense/pruned/compact on the test split and bench compact against dense.
# Expects ISSCLI, OUT, DATA and TAU, and OUT/{dense,iss}.safetensors.
$ISSCLI prune "$OUT/iss.safetensors" --threshold "$TAU" -o "$OUT/pruned.safetensors" --force
$ISSCLI compact "$OUT/pruned.safetensors" -o "$OUT/compact.safetensors" --force --json "$OUT/compact.json"
for model in dense pruned compact; do
    $ISSCLI eval "$OUT/$model.safetensors" --data "$DATA" --split test --json "$OUT/eval-$model.json"
done
$ISSCLI bench "$OUT/compact.safetensors" --against "$OUT/dense.safetensors" --repeats 9 --json "$OUT/bench.json"
