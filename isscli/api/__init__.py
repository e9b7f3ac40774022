"""The library API: every step of isscli as a function that takes a request and returns a result.

Nothing here prints; pass an :class:`~isscli.observer.Observer` to follow progress. The CLI,
``sweep``, the demo and the benchmark scripts are callers of these functions. Reference with
examples: docs/api.md.
"""

from isscli.lazy import lazy_exports

#: Every public name of the API and the module that defines it; each is imported on first use (:mod:`isscli.lazy`).
HOMES = {
    **dict.fromkeys(("BenchRequest", "BenchResult", "bench"), "isscli.api.benching"),
    **dict.fromkeys(("check_spec", "convert_spec", "derive_spec", "import_state_dict", "load", "new_model", "save"),
                    "isscli.api.checkpoints"),
    "download_ptb": "isscli.data.download",
    **dict.fromkeys(("ExportRequest", "export_model"), "isscli.api.exporting"),
    **dict.fromkeys(("ExportMismatch", "ExportResult"), "isscli.runtime.export.onnx"),
    **dict.fromkeys(("SparsifyRequest", "SparsifyResult", "sparsify"), "isscli.api.masking"),
    **dict.fromkeys(("ShowRequest", "ShowResult", "show"), "isscli.api.showing"),
    **dict.fromkeys(("ShrinkRequest", "ShrinkResult", "shrink"), "isscli.api.pipeline"),
    **dict.fromkeys(("CompactionMismatch", "CompactRequest", "CompactResult", "PruneRequest", "PruneResult",
                     "Verification", "compact", "prune"), "isscli.api.pruning"),
    **dict.fromkeys(("FinetuneRequest", "TrainingInterrupted", "TrainRequest", "TrainResult", "finetune", "train"),
                    "isscli.api.runs"),
    **dict.fromkeys(("EvaluateRequest", "EvaluateResult", "ScoreNotFinite", "evaluate"), "isscli.api.scoring"),
}
__all__ = sorted(HOMES)
__getattr__, __dir__ = lazy_exports(__name__, HOMES)
