"""``export_model``: a checkpoint as a file another runtime runs (ONNX), checked there before it is written."""

from __future__ import annotations

from dataclasses import dataclass

from isscli.api.common import (
    ConfigSource,
    OutputRequest,
    as_checkpoint,
    checked_output,
    model_overrides,
    request_inputs,
)
from isscli.errors import IsscliError
from isscli.export.onnx import ExportResult, export_onnx

FORMATS = ("onnx",)


@dataclass(kw_only=True)
class ExportRequest(OutputRequest):
    """Export ``checkpoint`` (an LM or a classifier, compacted or not) to ``output`` in ``format``."""

    format: str = "onnx"
    opset: int = 17
    arch: str | None = None
    config: ConfigSource = None


def export_model(request: ExportRequest) -> ExportResult:
    """Write the model as an ONNX graph (per-layer, per-direction sizes; dynamic batch and time axes; an LM's
    state as inputs and outputs, so a service can stream), after running it in ONNX Runtime against PyTorch.

    Args:
        request: the checkpoint, the output file, ``opset``, and ``arch``/``config`` for checkpoints without one.

    Returns:
        An ``ExportResult``: the graph's input and output names, the largest output difference and the
        tolerance. Raises ``ExportMismatch`` (nothing written) when ONNX Runtime disagrees with PyTorch.

    Example:
        >>> isscli.export_model(isscli.ExportRequest(checkpoint="small.safetensors", output="small.onnx")).inputs
    """
    if request.format not in FORMATS:
        raise IsscliError(f"unknown `format` {request.format!r}", f"use {', '.join(FORMATS)}")
    if request.output is None:
        raise IsscliError("export needs an `output` file", "give e.g. `output`=model.onnx")
    checked_output(request.output, request_inputs(request), request.force)
    return export_onnx(as_checkpoint(request.checkpoint), request.output, request.force, request.opset,
                       request.arch, model_overrides(request.config))
