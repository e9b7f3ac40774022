"""``isscli compact``: physically remove zero ISS components and write a smaller checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli import api
from isscli.api.common import output_path
from isscli.cli.common import (
    ArchOption,
    ConfigOption,
    ForceOption,
    RenameFileOption,
    RenameOption,
    SpecOption,
    claim_outputs,
    request_from,
)
from isscli.cli.output import JSON_HELP, Notes, console, emit, note, table


def compact(
    checkpoint: Path = typer.Argument(..., help="A pruned checkpoint (left untouched)."),
    spec: Optional[Path] = SpecOption,
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output checkpoint. Default: CKPT.compact.safetensors."
    ),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Compare the outputs of both models on random inputs before writing."
    ),
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Remove every ISS component whose receivers are all zero; the smaller model computes the same outputs."""
    output = output_path(output, checkpoint, "compact")
    claim_outputs(locals(), "output", "json_path")
    request = request_from(api.CompactRequest, locals())
    result = api.compact(request, Notes())
    difference = result.verification.max_output_difference if result.verification else None
    report = {"checkpoint": str(checkpoint), "output": str(result.output),
              "sets": [{"name": s.name, "components_before": s.components_before,
                        "components_after": s.components_after} for s in result.sets],
              "parameters_before": result.parameters_before, "parameters_after": result.parameters_after,
              "max_output_difference": difference}

    def render() -> None:
        rows = [(s.name, s.components_before, s.components_after, s.components_before - s.components_after)
                for s in result.sets]
        console.print(table(f"compact {checkpoint}", ("set", "units before", "units after", "removed"), rows))
        ratio = result.parameters_before / max(result.parameters_after, 1)
        console.print(f"parameters: {result.parameters_before:,} → {result.parameters_after:,} ({ratio:.2f}× smaller)")
        if difference is not None:
            console.print(f"verified: max |output difference| = {difference:.3g} on random inputs")

    emit(report, json_path, render, "isscli.compact/1")
    note(f"compacted checkpoint written to {result.output}")
