"""``isscli show``: pictures and a text summary of a checkpoint's ISS."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli.cli.common import RenameFileOption, RenameOption, SpecOption, claim_outputs, renames_from
from isscli.cli.output import JSON_HELP, console, emit, note, safe, table
from isscli.errors import OutputError

#: The pictures ``-o`` draws, by file name, and the function of :mod:`isscli.pictures` that draws each.
PICTURES = {"zero-pattern.png": "zero_pattern", "group-norms.png": "group_norm_histogram", "units.png": "units_chart"}


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
    from isscli import pictures  # the library, and torch, only when the command runs
    from isscli.api.common import resolve_spec
    from isscli.checkpoint import load_checkpoint

    claim_outputs(locals(), "json_path", folders={"output": tuple(PICTURES)})
    loaded = load_checkpoint(checkpoint)
    group_spec = resolve_spec(loaded, spec, renames_from(rename, rename_file))
    summaries = [pictures.set_summary(loaded.tensors, iss) for iss in group_spec.sets]
    written = []
    if output is not None:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create the folder {output} ({error.strerror})",
                              "choose a writable folder with -o") from None
        for name, drawer in PICTURES.items():
            getattr(pictures, drawer)(loaded.tensors, group_spec, output / name)
            written.append(str(output / name))
    report = {"checkpoint": str(checkpoint), "sets": summaries, "pictures": written}

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
