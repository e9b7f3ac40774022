"""``isscli prune``: zero the ISS components whose group norm is at most τ."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli import api
from isscli.api.common import output_path
from isscli.cli.common import ForceOption, RenameFileOption, RenameOption, SpecOption, request_from
from isscli.cli.output import JSON_HELP, console, emit, note, table
from isscli.errors import IsscliError


def prune(
    checkpoint: Path = typer.Argument(..., help="The checkpoint to prune (left untouched)."),
    group_threshold: Optional[float] = typer.Option(
        None, "--group-threshold", help="τ: zero every ISS component whose group norm ‖w_k‖ is ≤ τ (required)."
    ),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", hidden=True,
                                              help="Old name of --group-threshold."),
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
    if threshold is not None:
        note("--threshold of prune is now --group-threshold (group norm ≤ τ); the old name will go", warning=True)
        group_threshold = threshold if group_threshold is None else group_threshold
    if group_threshold is None:
        raise IsscliError("prune needs `group_threshold`", "give e.g. --group-threshold 1e-4")
    request = request_from(api.PruneRequest, locals(), output=output_path(output, checkpoint, "pruned"))
    result = api.prune(request)

    def render() -> None:
        rows = [(s.name, s.components, s.alive_before, s.alive_after, s.alive_before - s.alive_after)
                for s in result.sets]
        columns = ("set", "K", "nonzero before", "nonzero after", "zeroed")
        console.print(table(f"prune {checkpoint} (τ = {group_threshold:g})", columns, rows))
        console.print(f"weight sparsity of the grouped tensors: {result.weight_sparsity_before:.2%} → "
                      f"{result.weight_sparsity_after:.2%}")

    emit({"checkpoint": str(checkpoint), **result.to_json()}, json_path, render)
    note(f"pruned checkpoint written to {result.output}")
