"""The command line's path for a user's own class, through the library requests it calls: checkpoint files of a
forecaster and a bidirectional tagger (the classes of ``benchmarks/own_models.py``, named as ``--model`` names
them), pruned to a quarter of their units, compacted (verified through their forward), scored and timed.

    python benchmarks/any_model_files.py [--hidden 256] [--repeats 7] [--threads 2] [--json out.json]

The weights are random (seeded): this measures what ``--model`` costs and buys in speed, and that the
compacted model computes what the pruned one does; quality after learning ISS is ``own_models.py``'s subject.
Timing is ``isscli bench``'s: batch 10 of the data's 30 steps, interleaved repeats, medians.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import isscli
from isscli.live.usermodel import ModelSource, build_model

HERE = Path(__file__).resolve().parent
MODELS = {
    "forecaster": ("Forecaster", "regression"),
    "tagger": ("Tagger", "tagging"),
}


def tensor_data(kind: str, rows: int = 200, steps: int = 30) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    if kind == "forecaster":
        x = torch.randn(rows, steps, 8, generator=generator)
        return {"x": x, "y": x[:, -1, 0].clone()}
    tokens = torch.randint(0, 100, (rows, steps), generator=generator)
    return {"x": tokens, "y": tokens % 12}


def run(kind: str, hidden: int, repeats: int, folder: Path) -> dict[str, Any]:
    name, objective = MODELS[kind]
    theirs = {"model": f"{HERE / 'own_models.py'}:{name}", "model_args": {"hidden": hidden},
              "data": folder / f"{kind}.data.safetensors"}
    save_file(tensor_data(kind), str(theirs["data"]))
    torch.manual_seed(0)
    dense = folder / f"{kind}.safetensors"
    model = build_model(ModelSource(theirs["model"], theirs["model_args"]))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(dense))
    pruned = isscli.prune(isscli.PruneRequest(checkpoint=dense, keep_fraction=0.25, force=True,
                                              output=folder / f"{kind}.pruned.safetensors", **theirs))
    small = isscli.compact(isscli.CompactRequest(checkpoint=pruned.output, force=True,
                                                 output=folder / f"{kind}.small.safetensors", **theirs))
    scores = {role: isscli.evaluate(isscli.EvaluateRequest(checkpoint=path, objective=objective, **theirs))
              for role, path in (("pruned", pruned.output), ("compact", small.output))}
    timed = isscli.bench(isscli.BenchRequest(checkpoint=small.output, against=dense, repeats=repeats, **theirs))
    models = {m.role: m for m in timed.models}
    assert timed.comparison is not None  # a baseline was given
    return {
        "model": kind, "hidden_before": small.module_sizes_before, "hidden_after": small.hidden_sizes,
        "parameters": [small.parameters_before, small.parameters_after],
        "max_output_difference": small.verification.max_output_difference,
        "loss_pruned_vs_compact": [scores["pruned"].loss, scores["compact"].loss],
        "multiply_add_reduction": timed.comparison.multiply_add_reduction,
        "ms_batch10": [models[role].timings["full"].median_ms for role in ("baseline", "model")],
        "speedup_batch10": timed.comparison.speedups["model"]["full"],
        "speedup_batch1": timed.comparison.speedups["model"]["latency"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    with tempfile.TemporaryDirectory() as folder:
        rows = [run(kind, arguments.hidden, arguments.repeats, Path(folder)) for kind in MODELS]
    for row in rows:
        print(f"{row['model']}: hidden {row['hidden_before']} → {row['hidden_after']}, parameters "
              f"{row['parameters'][0]:,} → {row['parameters'][1]:,}, compaction difference "
              f"{row['max_output_difference']:.2g}, loss pruned {row['loss_pruned_vs_compact'][0]:.6g} vs compact "
              f"{row['loss_pruned_vs_compact'][1]:.6g}; batch 10 × 30: {row['ms_batch10'][0]:.3g} → "
              f"{row['ms_batch10'][1]:.3g} ms ({row['speedup_batch10']:.2f}×, MACs "
              f"{row['multiply_add_reduction']:.2f}×); batch 1: {row['speedup_batch1']:.2f}×")
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
