"""``isscli data``: fetch the corpora that training and evaluation read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim
from isscli.cli.options import option
from isscli.cli.output import Notes, console, note, table
from isscli.io.atomic import Output

app = typer.Typer(no_args_is_help=True, help="Download corpora (PTB) for train/finetune/eval.")


@app.command("ptb")
def ptb(
    dest: Annotated[Path, typer.Argument(help="Folder to write ptb.{train,valid,test}.txt into (created if needed).")],
    url: Annotated[Optional[str], option("url")] = None,
    force: Annotated[bool, option("force")] = False,
) -> None:
    """Download Mikolov's simple-examples.tgz, verify the PTB files' sha256 sums, write them to DEST."""
    request = api.DataPtbRequest(dest=dest, url=url, force=force)
    claim(Output(dest, "dest", folder=True, files=request.files), reads=(), force=force)
    result = api.data_ptb(request, Notes())
    rows = [(file.path.name, file.size, file.sha256[:16] + "…") for file in result.files]
    console.print(table(f"PTB in {dest} (checksums verified)", ("file", "bytes", "sha256"), rows))
    note(f"use it with --data {dest}")
