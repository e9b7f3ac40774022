"""``isscli prune``: zero the ISS components whose group norm is at most τ."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from isscli.atomic import check_output_path
from isscli.checkpoint import load_checkpoint, make_provenance, save_checkpoint
from isscli.cli.common import ForceOption, RenameFileOption, RenameOption, SpecOption, default_output, resolve_spec
from isscli.cli.output import JSON_HELP, console, emit, note, table
from isscli.errors import IsscliError
from isscli.surgery import prune as prune_tensors


def prune(
    checkpoint: Path = typer.Argument(..., help="The checkpoint to prune (left untouched)."),
    threshold: float = typer.Option(
        ..., "--threshold", "-t", help="τ: zero every ISS component whose group norm is ≤ τ."
    ),
    weight_threshold: Optional[float] = typer.Option(
        None, "--weight-threshold", help="Also zero single weights with |w| < this (the paper uses τ = 1e-4)."
    ),
    spec: Optional[Path] = SpecOption,
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output checkpoint. Default: CKPT.pruned.safetensors."
    ),
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Zero whole ISS components (and optionally small weights); write a new checkpoint of the same shape."""
    if threshold < 0 or (weight_threshold is not None and weight_threshold < 0):
        raise IsscliError("thresholds must be ≥ 0", "give e.g. --threshold 1e-4")
    output = output or default_output(checkpoint, "pruned")
    check_output_path(output, [checkpoint], overwrite=force)
    loaded = load_checkpoint(checkpoint)
    group_spec = resolve_spec(loaded, spec, rename, rename_file)
    result = prune_tensors(loaded.tensors, group_spec, threshold, weight_threshold)
    provenance = make_provenance(
        "prune",
        loaded,
        spec=group_spec.to_json(),
        threshold=threshold,
        weight_threshold=weight_threshold,
        parent_provenance=loaded.provenance,
    )
    save_checkpoint(output, result.tensors, loaded.config, provenance, inputs=(checkpoint,), overwrite=force,
                    masks=loaded.masks, mask_info=loaded.mask_info)  # same shapes: a masked model stays masked
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "output": str(output),
        "threshold": threshold,
        "weight_threshold": weight_threshold,
        "sets": [
            {"name": c.name, "components": c.components, "alive_before": c.before, "alive_after": c.after}
            for c in result.sets
        ],
        "weight_sparsity_before": result.sparsity_before,
        "weight_sparsity_after": result.sparsity_after,
    }

    def render() -> None:
        rows = [(c.name, c.components, c.before, c.after, c.before - c.after) for c in result.sets]
        console.print(
            table(
                f"prune {checkpoint} (τ = {threshold:g})",
                ("set", "K", "nonzero before", "nonzero after", "zeroed"),
                rows,
            )
        )
        console.print(
            f"weight sparsity of the grouped tensors: {result.sparsity_before:.2%} → {result.sparsity_after:.2%}"
        )

    emit(report, json_path, render)
    note(f"pruned checkpoint written to {output}")
