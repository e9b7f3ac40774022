"""``isscli compact``: physically remove zero ISS components and write a smaller checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, reads_of, with_default_output, writes
from isscli.cli.options import MODEL_DATA, option
from isscli.cli.output import Notes, console, emit, note, table


def compact(
    checkpoint: Annotated[Path, typer.Argument(help="A pruned checkpoint (left untouched).")],
    spec: Annotated[Optional[Path], option("spec")] = None,
    rename: Annotated[Optional[list[str]], option("rename")] = None,
    rename_file: Annotated[Optional[Path], option("rename_file")] = None,
    output: Annotated[Optional[Path], option("output", "Output checkpoint. Default: CKPT.compact.safetensors.")] = None,
    verify: Annotated[bool, option("verify")] = True,
    arch: Annotated[Optional[str], option("arch")] = None,
    config: Annotated[Optional[str], option("config")] = None,
    model: Annotated[Optional[str], option("model")] = None,
    model_args: Annotated[Optional[str], option("model_args")] = None,
    data: Annotated[Optional[Path], option("data", MODEL_DATA)] = None,
    input_shape: Annotated[Optional[str], option("input_shape")] = None,
    force: Annotated[bool, option("force")] = False,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
) -> None:
    """Remove every ISS component whose receivers are all zero; the smaller model computes the same outputs."""
    request = with_default_output(api.CompactRequest(
        checkpoint=checkpoint, spec=spec, renames=api.read_renames(rename, rename_file), output=output, verify=verify,
        arch=arch, config=config, model=model, model_args=model_args, data=data, input_shape=input_shape,
        force=force))
    claim(writes(request.output), writes(json_path, "json_path"), reads=reads_of(request, rename_file), force=force)
    result = api.compact(request, Notes())

    def render() -> None:
        rows = [(s.name, s.components_before, s.components_after, s.components_before - s.components_after)
                for s in result.sets]
        console.print(table(f"compact {checkpoint}", ("set", "units before", "units after", "removed"), rows))
        ratio = result.parameters_before / max(result.parameters_after, 1)
        console.print(f"parameters: {result.parameters_before:,} → {result.parameters_after:,} ({ratio:.2f}× smaller)")
        check = result.verification
        if check is not None:
            what = "of the largest |output|" if check.relative else ""
            console.print(f"verified: max |output difference| = {check.max_output_difference:.3g} {what} "
                          f"({check.inputs})".replace("  ", " "))
        else:
            console.print("[yellow]not verified (--no-verify)[/]")

    emit(result.to_json(), json_path, render, "isscli.compact/1")
    note(f"compacted checkpoint written to {result.output}")
