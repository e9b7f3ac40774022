"""Run isscli's models outside isscli: ONNX export (checked in ONNX Runtime) and a plain-PyTorch loader.

:mod:`isscli.runtime.export.onnx` builds the graph, :mod:`isscli.runtime.export.runtime` runs it (and times it
for ``bench``), :mod:`isscli.runtime.export.plain_lm` is a self-contained file to copy into a service.
onnx and onnxruntime are imported only when an ONNX function is called.
"""

from isscli.runtime.export.onnx import ExportMismatch, ExportResult, export_onnx, to_onnx, verify_onnx
from isscli.runtime.export.runtime import initial_feeds, onnx_session, onnx_workload, state_names

__all__ = [
    "ExportMismatch", "ExportResult", "export_onnx", "initial_feeds", "onnx_session", "onnx_workload", "state_names",
    "to_onnx", "verify_onnx",
]
