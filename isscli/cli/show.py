"""``isscli show``: pictures and a text summary of a checkpoint's ISS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, reads_of, writes
from isscli.cli.options import option
from isscli.cli.output import console, emit, note, safe, table
from isscli.io.atomic import Output


def show(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint.")],
    spec: Annotated[Optional[Path], option("spec")] = None,
    rename: Annotated[Optional[list[str]], option("rename")] = None,
    rename_file: Annotated[Optional[Path], option("rename_file")] = None,
    output: Annotated[Optional[Path], option("output", "Folder for the PNGs (zero-pattern, group-norms, units). "
                                                       "Default: text only.")] = None,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
    force: Annotated[bool, option("force", "Replace pictures and the --json report if they exist.")] = False,
) -> None:
    """Summarise the ISS of CKPT; with -o, draw its zero pattern, group-length histogram and units per layer."""
    from isscli.api.showing import PICTURES  # the library, and torch, only when the command runs

    request = api.ShowRequest(checkpoint=checkpoint, spec=spec, renames=api.read_renames(rename, rename_file),
                              output=output)
    pictures = Output(output, "output", folder=True, files=tuple(PICTURES)) if output is not None else None
    claim(writes(json_path, "json_path"), pictures, reads=reads_of(request, rename_file), force=force)
    result = api.show(request)
    summaries, written, report = result.sets, result.pictures, result.to_json()
    report["checkpoint"] = str(checkpoint)

    def render() -> None:
        rows = [(s.name, s.components, s.nonzero, s.removable, s.norm_median, s.norm_max, f"{s.zero_weights:.1%}")
                for s in summaries]
        columns = ("set", "K", "nonzero", "removable", "‖w_k‖ median", "‖w_k‖ max", "zeros")
        console.print(table(f"ISS of {checkpoint}", columns, rows))
        for s in summaries:
            console.print(f"{safe(s.name)}: group lengths ‖w_k‖ from 0 to {s.norm_max:.3g}  {s.histogram}")

    emit(report, json_path, render, "isscli.show/1")
    for path in written:
        note(f"picture written to {path}")
