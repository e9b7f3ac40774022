"""``isscli show``: pictures and a text summary of a checkpoint's ISS."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli.cli.common import RenameFileOption, RenameOption, SpecOption, claim_outputs, renames_from
from isscli.cli.output import JSON_HELP, console, emit, note, safe, table


def show(
    checkpoint: Path = typer.Argument(..., help="A checkpoint."),
    spec: Optional[Path] = SpecOption,
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Folder for the PNGs (zero-pattern, group-norms, units). Default: text only."
    ),
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
    force: bool = typer.Option(False, "--force", help="Replace pictures and the --json report if they exist."),
) -> None:
    """Summarise the ISS of CKPT; with -o, draw its zero pattern, group-length histogram and units per layer."""
    from isscli import api  # the library, and torch, only when the command runs
    from isscli.api.showing import PICTURES

    claim_outputs(locals(), "json_path", folders={"output": tuple(PICTURES)})
    result = api.show(api.ShowRequest(checkpoint=checkpoint, spec=spec, renames=renames_from(rename, rename_file),
                                      output=output))
    summaries, written, report = result.sets, result.pictures, result.to_json()
    report["checkpoint"] = str(checkpoint)

    def render() -> None:
        rows = [
            (
                s["name"],
                s["components"],
                s["nonzero"],
                s["removable"],
                s["norm_median"],
                s["norm_max"],
                f"{s['zero_weights']:.1%}",
            )
            for s in summaries
        ]
        columns = ("set", "K", "nonzero", "removable", "‖w_k‖ median", "‖w_k‖ max", "zeros")
        console.print(table(f"ISS of {checkpoint}", columns, rows))
        for s in summaries:
            console.print(f"{safe(s['name'])}: group lengths ‖w_k‖ from 0 to {s['norm_max']:.3g}  {s['histogram']}")

    emit(report, json_path, render, "isscli.show/1")
    for path in written:
        note(f"picture written to {path}")
