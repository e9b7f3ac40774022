#!/usr/bin/env bash
# The paper's CPU benchmark (Wen et al., 2018, Table 1): the ISS model (373, 315) against the
# 2×1500 LSTM LM (embedding 1500, vocabulary 10,000), batch 10 × 30 steps, timed side by side.
# The paper measured 10.59× on 24 Xeon cores with MKL; its multiply-add reduction is 7.48×,
# which is the gate here. Pass --unstructured to add the random-sparse CSR model of Fig. 1.
#
#   benchmarks/bench_paper_lm.sh [--threads N] [--unstructured] [any other `isscli bench` option]
#
# Writes the JSON report to ${OUT:-bench_paper_lm.json}; exits 1 when the speed-up is below 7.48×.
set -euo pipefail

ISSCLI=${ISSCLI:-isscli}
if ! command -v "$ISSCLI" >/dev/null 2>&1; then
    ISSCLI="python -m isscli"
fi

exec $ISSCLI bench --shapes 373,315 --against-shapes 1500,1500 \
    --batch 10 --steps 30 --repeats "${REPEATS:-7}" --warmup "${WARMUP:-2}" \
    --fail-below 7.48 --json "${OUT:-bench_paper_lm.json}" "$@"
