"""Tracing the user's module into an ONNX file (``torch.onnx.export``, TorchScript exporter), quietly, and reading
torch's TracerWarnings for where a trace may have fixed a value of the example.

:mod:`isscli.runtime.export.module` decides the names and dynamic axes and checks the result in ONNX Runtime.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

import isscli
from isscli.io.atomic import first_line
from isscli.io.errors import IsscliError

TRACE_HINT = ("the trace fixed a value of the example (Python control flow on a tensor, int(x.shape[0]), "
              "x.view(2, -1), pad_packed_sequence without total_length=x.size(1), packed input to an isscli.nn "
              "module); compute it with tensor ops (x.size(0), view(-1, ...)), or mask instead of packing")
EXPORT_FAILED_HINT = ("ONNX cannot express this forward; export without pack_padded_sequence (mask, or gather "
                      "with `lengths`), avoid Python control flow on tensor values, or check torch.onnx's "
                      "supported operators")


@contextmanager
def native_output_silenced() -> Iterator[None]:
    """Drop what torch's C++ code prints during an export (its whole IR graph when it fails, shape-inference
    warnings): it would land in the CLI's stdout, which may carry ``--json``. Failures still raise."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (1, 2)]
    try:
        with open(os.devnull, "w") as sink:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                flush_c_stdio()
    finally:
        for fd, copy_fd in zip((1, 2), saved):
            os.dup2(copy_fd, fd)
            os.close(copy_fd)


def flush_c_stdio() -> None:
    """``fflush(NULL)``: C++ output buffered in C's stdio must reach the sink before the real stdout is back."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no C library to ask (Windows)
        pass


def trace(model: nn.Module, example: tuple[Tensor, ...], path: Path, opset: int, names: tuple[list[str], list[str]],
          axes: dict[str, dict[int, str]]) -> list[warnings.WarningMessage]:
    """``torch.onnx.export`` into ``path``; returns torch's TracerWarnings, which say where a trace may be wrong."""
    with warnings.catch_warnings(record=True) as caught, native_output_silenced():
        warnings.simplefilter("always")
        try:
            torch.onnx.export(model, example, str(path), dynamo=False, opset_version=opset, input_names=names[0],
                              output_names=names[1], dynamic_axes=axes)
        except Exception as error:  # torch raises many types: unsupported operators, symbolic or tracer errors
            reason = first_line(str(error), type(error).__name__)
            raise IsscliError(f"torch.onnx.export failed: {reason}", EXPORT_FAILED_HINT) from None
    return [entry for entry in caught if issubclass(entry.category, torch.jit.TracerWarning)]


def trace_hint(caught: list[warnings.WarningMessage]) -> str:
    """The first TracerWarning raised by the user's code (torch's and isscli's own checks warn on every trace),
    with the line that caused it, else the general advice."""
    libraries = tuple(str(Path(package.__path__[0]).resolve()) + os.sep for package in (torch, isscli))
    theirs = [entry for entry in caught if not str(Path(entry.filename).resolve()).startswith(libraries)]
    if not theirs:
        return TRACE_HINT
    entry = theirs[0]
    sentence = first_line(str(entry.message)).split(". ")[0].rstrip(".")
    return f"torch warned at {Path(entry.filename).name}:{entry.lineno}: {sentence}; {TRACE_HINT}"
