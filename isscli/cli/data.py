"""``isscli data``: fetch the corpora that training and evaluation read."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli.cli.common import ForceOption, claim_outputs
from isscli.cli.output import console, note, table

app = typer.Typer(no_args_is_help=True, help="Download corpora (PTB) for train/finetune/eval.")


@app.command("ptb")
def ptb(
    dest: Path = typer.Argument(..., help="Folder to write ptb.{train,valid,test}.txt into (created if needed)."),
    url: Optional[str] = typer.Option(None, "--url", help="Where simple-examples.tgz is (http(s):// or file://). "
                                                           "Default: Mikolov's RNNLM page."),
    force: bool = ForceOption,
) -> None:
    """Download Mikolov's simple-examples.tgz, verify the PTB files' sha256 sums, write them to DEST."""
    from isscli import api  # the library, and torch, only when the command runs
    from isscli.data.download import PTB_SHA256, PTB_URL, SPLITS, ptb_file

    url = url or PTB_URL
    claim_outputs(locals(), folders={"dest": [ptb_file(split) for split in SPLITS]})
    note(f"downloading {url} …")
    written = api.download_ptb(dest, url, overwrite=force)
    rows = [(path.name, path.stat().st_size, PTB_SHA256[split][:16] + "…") for split, path in written.items()]
    console.print(table(f"PTB in {dest} (checksums verified)", ("file", "bytes", "sha256"), rows))
    note(f"use it with --data {dest}")
