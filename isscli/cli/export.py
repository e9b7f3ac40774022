"""``isscli export``: the model as an ONNX file, checked in ONNX Runtime before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, reads_of, writes
from isscli.cli.options import MODEL_DATA, option
from isscli.cli.output import console, emit, note, table


def export(
    checkpoint: Annotated[Path, typer.Argument(metavar="CKPT", help="An LM or classifier checkpoint (compacted or "
                                               "not), or any checkpoint of the class --model names.")],
    output: Annotated[Path, option("output", "The file to write, e.g. model.onnx.")],
    format: Annotated[str, option("format")] = "onnx",
    opset: Annotated[int, option("opset")] = 17,
    quantize: Annotated[Optional[str], option("quantize")] = None,
    arch: Annotated[Optional[str], option("arch")] = None,
    config: Annotated[Optional[str], option("config")] = None,
    model: Annotated[Optional[str], option("model")] = None,
    model_args: Annotated[Optional[str], option("model_args")] = None,
    data: Annotated[Optional[Path], option("data", MODEL_DATA)] = None,
    input_shape: Annotated[Optional[str], option("input_shape")] = None,
    force: Annotated[bool, option("force")] = False,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
) -> None:
    """Export CKPT to ONNX with its per-layer sizes, dynamic batch and time axes and, for LMs, the recurrent state
    as inputs and outputs; the graph is run in ONNX Runtime against PyTorch before anything is written.

    With --model, your own module is exported (torch.onnx.export of its forward, on --data's rows or --input-shape)
    and checked in ONNX Runtime against that module, at another batch size and length too."""
    request = api.ExportRequest(checkpoint=checkpoint, output=output, format=format, opset=opset, quantize=quantize,
                                arch=arch, config=config, model=model, model_args=model_args, data=data,
                                input_shape=input_shape, force=force)
    claim(writes(output), writes(json_path, "json_path"), reads=reads_of(request), force=force)
    result = api.export(request)

    def render() -> None:
        rows = [("inputs", " ".join(result.inputs)), ("outputs", " ".join(result.outputs)),
                ("hidden sizes", " ".join("+".join(map(str, s)) for s in result.hidden_sizes))]
        console.print(table(f"export {checkpoint} → {output}", ("graph", "names"), rows))
        console.print(f"verified in ONNX Runtime: max |output difference| = {result.max_output_difference:.3g} "
                      f"(tolerance {result.tolerance:.3g})" + (f", {result.checked_on}" if result.checked_on else ""))
        written_bytes, fp32_bytes = result.file_bytes, result.fp32_file_bytes
        if result.precision != "fp32" and fp32_bytes and written_bytes:
            console.print(f"{result.precision}: {written_bytes / 2**20:.2f} MiB on disk, fp32 "
                          f"{fp32_bytes / 2**20:.2f} MiB ({fp32_bytes / written_bytes:.2f}× smaller)")
        if result.assumption:
            console.print(f"[yellow]assumed: {result.assumption}[/]")

    emit(result.to_json(), json_path, render, "isscli.export/1")
    note(f"ONNX model written to {result.output}")
