"""``isscli export``: the model as an ONNX file, checked in ONNX Runtime before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli import api
from isscli.cli.common import ArchOption, ConfigOption, ForceOption, claim_outputs, request_from
from isscli.cli.options import HELP, option
from isscli.cli.output import JSON_HELP, console, emit, note, table


def export(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="An LM or classifier checkpoint (compacted or not), or "
                                      "any checkpoint of the class --model names."),
    output: Path = typer.Option(..., "-o", "--output", help="The file to write, e.g. model.onnx."),
    format: str = typer.Option("onnx", "--format", help="onnx (ONNX Runtime, and every runtime that reads ONNX)."),
    opset: int = typer.Option(17, "--opset", min=13, help="The ONNX opset to target."),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", help="int8: weights quantized by ONNX Runtime (LSTM/GRU, output layer, embedding), the "
                                 "graph checked against the fp32 model (0.1 × the largest |output|, reported)."),
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    model: Optional[str] = option("model"),
    model_args: Optional[str] = option("model_args"),
    data: Optional[Path] = option("data", HELP["model_data"]),
    input_shape: Optional[str] = option("input_shape"),
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Export CKPT to ONNX with its per-layer sizes, dynamic batch and time axes and, for LMs, the recurrent state
    as inputs and outputs; the graph is run in ONNX Runtime against PyTorch before anything is written.

    With --model, your own module is exported (torch.onnx.export of its forward, on --data's rows or --input-shape)
    and checked in ONNX Runtime against that module, at another batch size and length too."""
    claim_outputs(locals(), "output", "json_path")
    result = api.export_model(request_from(api.ExportRequest, locals()))

    def render() -> None:
        rows = [("inputs", " ".join(result.inputs)), ("outputs", " ".join(result.outputs)),
                ("hidden sizes", " ".join("+".join(map(str, s)) for s in result.hidden_sizes))]
        console.print(table(f"export {checkpoint} → {output}", ("graph", "names"), rows))
        console.print(f"verified in ONNX Runtime: max |output difference| = {result.max_output_difference:.3g} "
                      f"(tolerance {result.tolerance:.3g})" + (f", {result.checked_on}" if result.checked_on else ""))
        if result.precision != "fp32" and result.fp32_file_bytes:
            smaller = result.fp32_file_bytes / result.file_bytes
            console.print(f"{result.precision}: {result.file_bytes / 2**20:.2f} MiB on disk, fp32 "
                          f"{result.fp32_file_bytes / 2**20:.2f} MiB ({smaller:.2f}× smaller)")
        if result.assumption:
            console.print(f"[yellow]assumed: {result.assumption}[/]")

    emit(result.to_json(), json_path, render, "isscli.export/1")
    note(f"ONNX model written to {result.output}")
