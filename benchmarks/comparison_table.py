"""Print the markdown table of benchmarks/compare_unstructured.sh from the JSON files it wrote.

    python benchmarks/comparison_table.py OUT_DIR

Parameters are what a model stores: every weight of a dense or compacted model, the kept
weights (plus the unmasked tensors) of a masked one. Times are the median of the bench runs,
each measured side by side with the dense model in the same run; the speed-up is that run's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import isscli

ROWS = (("dense", "dense", None), ("iss", "ISS (structured, compacted)", "bench-iss.json"),
        ("set", "SET (unstructured, CSR)", "bench-set.json"),
        ("magnitude", "gradual magnitude pruning (CSR)", "bench-magnitude.json"),
        ("l1", "L1 + magnitude pruning (CSR)", "bench-l1.json"))


def stored_parameters(path: str) -> int:
    checkpoint = isscli.load(path)
    total = sum(tensor.numel() for tensor in checkpoint.tensors.values())
    return total - sum(int((~mask.bool()).sum()) for mask in (checkpoint.masks or {}).values())


def main(folder: str) -> None:
    out = Path(folder)
    header = "| model | parameters | test {metric} | full ms (batch 10 × 30) | dense ms, same run | speed-up |"
    lines = []
    for key, label, bench_file in ROWS:
        evaluation = json.loads((out / f"eval-{key}.json").read_text())
        metric = "accuracy" if "accuracy" in evaluation else "perplexity"
        value = f"{100 * evaluation['accuracy']:.2f}%" if metric == "accuracy" else f"{evaluation['perplexity']:.2f}"
        timing = "—", "—", "1.00×"
        if bench_file:
            bench = json.loads((out / bench_file).read_text())
            roles = {model["role"]: model for model in bench["models"]}
            model_ms = roles["model"]["timings"]["full"]["median_ms"]
            dense_ms = roles["baseline"]["timings"]["full"]["median_ms"]
            timing = f"{model_ms:.2f}", f"{dense_ms:.2f}", f"{dense_ms / model_ms:.2f}×"
        params = stored_parameters(evaluation["checkpoint"])
        lines.append(f"| {label} | {params:,} | {value} | {' | '.join(timing)} |")
    print(header.format(metric=metric))
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
