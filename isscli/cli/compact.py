"""``isscli compact``: physically remove zero ISS components and write a smaller checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli import api
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
from isscli.cli.options import HELP, option
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
        True, "--verify/--no-verify",
        help="Run both models and compare their outputs before writing (random inputs; with --model, --data's rows or "
             "--input-shape). A checkpoint whose forward isscli cannot run is refused unless --no-verify.",
    ),
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    model: Optional[str] = option("model"),
    model_args: Optional[str] = option("model_args"),
    data: Optional[Path] = option("data", HELP["model_data"]),
    input_shape: Optional[str] = option("input_shape"),
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Remove every ISS component whose receivers are all zero; the smaller model computes the same outputs."""
    from isscli.api.common import output_path  # the library, and torch, only when the command runs

    output = output_path(output, checkpoint, "compact")
    claim_outputs(locals(), "output", "json_path")
    request = request_from(api.CompactRequest, locals())
    result = api.compact(request, Notes())
    difference = result.verification.max_output_difference if result.verification else None
    report = {"checkpoint": str(checkpoint), "output": str(result.output),
              "sets": [{"name": s.name, "components_before": s.components_before,
                        "components_after": s.components_after} for s in result.sets],
              "parameters_before": result.parameters_before, "parameters_after": result.parameters_after,
              "max_output_difference": difference,
              "verified_on": result.verification.inputs if result.verification else None,
              "relative_difference": result.verification.relative if result.verification else None,
              "assumption": result.assumption, "model": {"model": model, "model_args": model_args} if model else None}

    def render() -> None:
        rows = [(s.name, s.components_before, s.components_after, s.components_before - s.components_after)
                for s in result.sets]
        console.print(table(f"compact {checkpoint}", ("set", "units before", "units after", "removed"), rows))
        ratio = result.parameters_before / max(result.parameters_after, 1)
        console.print(f"parameters: {result.parameters_before:,} → {result.parameters_after:,} ({ratio:.2f}× smaller)")
        if result.verification is not None:
            what = "of the largest |output|" if result.verification.relative else ""
            console.print(f"verified: max |output difference| = {difference:.3g} {what} "
                          f"({result.verification.inputs})".replace("  ", " "))
        else:
            console.print("[yellow]not verified (--no-verify)[/]")

    emit(report, json_path, render, "isscli.compact/1")
    note(f"compacted checkpoint written to {result.output}")
