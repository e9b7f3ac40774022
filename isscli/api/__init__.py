"""The library API: every step of isscli as a function that takes a request and returns a result.

Nothing here prints; pass an :class:`~isscli.observer.Observer` to follow progress. The CLI,
``sweep``, the demo and the benchmark scripts are callers of these functions. Reference with
examples: docs/api.md.
"""

from isscli.api.benching import BenchRequest, BenchResult, bench
from isscli.api.checkpoints import check_spec, derive_spec, import_state_dict, load, new_model, save
from isscli.api.exporting import ExportRequest, export_model
from isscli.api.masking import SparsifyRequest, SparsifyResult, sparsify
from isscli.api.pipeline import ShrinkRequest, ShrinkResult, shrink
from isscli.api.pruning import (
    CompactionMismatch,
    CompactRequest,
    CompactResult,
    PruneRequest,
    PruneResult,
    Verification,
    compact,
    prune,
)
from isscli.api.runs import FinetuneRequest, TrainingInterrupted, TrainRequest, TrainResult, finetune, train
from isscli.api.scoring import EvaluateRequest, EvaluateResult, evaluate

__all__ = [
    "BenchRequest", "BenchResult", "CompactRequest", "CompactResult", "CompactionMismatch", "EvaluateRequest",
    "EvaluateResult", "ExportRequest", "FinetuneRequest", "PruneRequest", "PruneResult", "ShrinkRequest",
    "ShrinkResult", "SparsifyRequest", "SparsifyResult", "TrainRequest", "TrainResult", "TrainingInterrupted",
    "Verification", "bench", "check_spec", "compact", "derive_spec", "evaluate", "export_model", "finetune",
    "import_state_dict", "load", "new_model", "prune", "save", "shrink", "sparsify", "train",
]
