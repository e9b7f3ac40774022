"""``export``: a checkpoint as a file another runtime runs (ONNX), checked there before it is written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from isscli.api.common import (
    ConfigSource,
    OutputRequest,
    PathLike,
    as_checkpoint,
    checked_output,
    model_overrides,
    request_inputs,
)
from isscli.api.user_models import ModelChoice, example_input, user_source
from isscli.api.validation import checked_arguments
from isscli.io.errors import IsscliError
from isscli.live.usermodel import ModelSource, load_user_model
from isscli.models.registry import architecture_assumption
from isscli.runtime.export.onnx import ExportResult, export_onnx
from isscli.runtime.quantize import check_precision

FORMATS = ("onnx",)


@dataclass(kw_only=True)
class ExportRequest(OutputRequest, ModelChoice):
    """Export ``checkpoint`` (an LM or a classifier, compacted or not; or any model with ``model``) to ``output``."""

    format: str = "onnx"
    opset: int = 17
    arch: str | None = None
    config: ConfigSource = None
    data: PathLike | None = None  # with ``model``: tensor data whose rows the export traces and checks
    quantize: str | None = None  # int8: the graph's weights quantized by ONNX Runtime, checked against fp32


def export_user_model(request: ExportRequest, source: ModelSource) -> ExportResult:
    """The user's own module through ``torch.onnx.export``, checked in ONNX Runtime against that module."""
    from isscli.runtime.export.module import export_module

    loaded = as_checkpoint(request.checkpoint)
    model = load_user_model(source, loaded)
    example = example_input(request.data, request.input_shape, rows=8)
    metadata = {"isscli.model": json.dumps(source.describe()), "isscli.checked_on": example.description}
    result = export_module(model, example.arguments, Path(str(request.output)), request.force, request.opset,
                           metadata)
    result.model, result.checked_on = source, example.description
    return result


@checked_arguments
def export(request: ExportRequest) -> ExportResult:
    """Write the model as an ONNX graph (per-layer, per-direction sizes; dynamic batch and time axes; an LM's
    state as inputs and outputs, so a service can stream), after running it in ONNX Runtime against PyTorch. This is
    ``isscli export``.

    Args:
        request: the checkpoint, the output file, ``opset``, and ``arch``/``config`` for checkpoints without one.

    Returns:
        An ``ExportResult``: the graph's input and output names, the largest output difference and the
        tolerance. Raises ``ExportMismatch`` (nothing written) when ONNX Runtime disagrees with PyTorch.

    Example::

        isscli.export(isscli.ExportRequest(checkpoint="small.safetensors", output="small.onnx")).inputs
    """
    if request.format not in FORMATS:
        raise IsscliError(f"unknown `format` {request.format!r}", f"use {', '.join(FORMATS)}")
    if request.output is None:
        raise IsscliError("export needs an `output` file", "give e.g. `output`=model.onnx")
    checked_output(request.output, request_inputs(request), request.force)
    source = user_source(request)
    check_precision(request.quantize, "onnxruntime")
    if source is not None:
        if request.quantize is not None:
            raise IsscliError("`quantize` exports isscli's own model families", "drop `quantize` with `model`")
        return export_user_model(request, source)
    loaded = as_checkpoint(request.checkpoint)
    result = export_onnx(loaded, Path(request.output), request.force, request.opset, request.arch,
                         model_overrides(request.config), request.quantize)
    result.assumption = architecture_assumption(loaded, request.arch, model_overrides(request.config))
    return result
