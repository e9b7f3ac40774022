"""The library API: every step of isscli as a function that takes a request and returns a result.

Nothing here prints; pass an :class:`~isscli.observer.Observer` to follow progress. The CLI,
``sweep``, the demo and the benchmark scripts are callers of these functions: each command of the
CLI is the function of its name (``isscli import-pt`` is :func:`import_pt`, ``isscli groups check``
:func:`groups_check`), and every result and error a caller reads is exported here, with the rules
every caller shares (default output names, the inputs no output may overwrite, spec renames).
Reference with examples: docs/api.md.
"""

from typing import TYPE_CHECKING

from isscli.lazy import lazy_exports

#: Every public name of the API and the module that defines it; each is imported on first use (:mod:`isscli.lazy`).
HOMES = {
    **dict.fromkeys(("BenchRequest", "bench"), "isscli.api.benching"),
    **dict.fromkeys(("BenchResult", "BenchSettings", "Comparison", "Details", "Noise", "SpeedupGate", "TimedModel"),
                    "isscli.runtime.report"),
    **dict.fromkeys(("Machine", "Timings"), "isscli.runtime.timing"),
    **dict.fromkeys(("import_pt", "init", "load", "save"), "isscli.api.checkpoints"),
    **dict.fromkeys(("GroupSet", "GroupsConvertRequest", "GroupsRequest", "GroupsResult", "groups", "groups_check",
                     "groups_convert"), "isscli.api.grouping"),
    **dict.fromkeys(("CorpusFile", "DataPtbRequest", "DataPtbResult", "data_ptb"), "isscli.api.datasets"),
    **dict.fromkeys(("DemoRequest", "DemoResult", "demo"), "isscli.api.demonstration"),
    **dict.fromkeys(("ExportRequest", "export"), "isscli.api.exporting"),
    **dict.fromkeys(("ExportMismatch", "ExportResult"), "isscli.runtime.export.onnx"),
    **dict.fromkeys(("MaskedMatrix", "SparsifyRequest", "SparsifyResult", "sparsify"), "isscli.api.masking"),
    **dict.fromkeys(("SetSummary", "ShowRequest", "ShowResult", "show"), "isscli.api.showing"),
    **dict.fromkeys(("ShrinkRequest", "ShrinkResult", "shrink"), "isscli.api.pipeline"),
    **dict.fromkeys(("CompactRequest", "CompactResult", "PruneRequest", "PruneResult", "SetCompaction", "SetPruning",
                     "compact", "prune"), "isscli.api.pruning"),
    **dict.fromkeys(("CompactionMismatch", "Verification"), "isscli.iss.verification"),
    **dict.fromkeys(("FinetuneRequest", "TrainRequest"), "isscli.api.run_requests"),
    **dict.fromkeys(("TrainingInterrupted", "TrainResult", "finetune", "train"), "isscli.api.runs"),
    **dict.fromkeys(("ControllerSummary",), "isscli.learn.controller"),
    **dict.fromkeys(("CorpusSummary", "UnknownTokens"), "isscli.learn.corpus"),
    **dict.fromkeys(("Evaluation", "Metric"), "isscli.learn.evaluation"),
    **dict.fromkeys(("EvaluateRequest", "EvaluateResult", "QualityGate", "ScoreNotFinite", "VocabularyRecord",
                     "evaluate"), "isscli.api.scoring"),
    **dict.fromkeys(("Baseline", "Measured", "Point", "PointOutcome", "PointRecord", "SweepRequest", "SweepResult",
                     "SweepSettings", "make_points", "sweep"), "isscli.sweeping"),
    "SWEEP_FILES": "isscli.sweeping.plan",
    **dict.fromkeys(("default_output", "input_files", "read_renames", "request_inputs"), "isscli.api.common"),
    **dict.fromkeys(("CheckpointError", "GateFailed", "IsscliError", "OutputError", "SpecError", "Terminated"),
                    "isscli.io.errors"),
    "invoked_by": "isscli.io.provenance",
    "GroupSpec": "isscli.iss.spec",
    **dict.fromkeys(("RECIPES", "TrainSettings"), "isscli.learn.recipes"),
    "RunPaths": "isscli.learn.run",
    "PRESETS": "isscli.models.presets",
}
#: The 0.2 names of renamed functions (:mod:`isscli.api.deprecated`): they warn, and go in 0.4.
RENAMED = dict.fromkeys(("check_spec", "convert_spec", "derive_spec", "download_ptb", "export_model",
                         "import_state_dict", "new_model", "run_demo", "run_sweep"), "isscli.api.deprecated")
__all__ = sorted(HOMES)
__getattr__, __dir__ = lazy_exports(__name__, {**HOMES, **RENAMED}, hidden=RENAMED)

if TYPE_CHECKING:  # what the names above are, for type checkers (tests/test_cli_api.py keeps both lists equal)
    from isscli.api.benching import BenchRequest, bench  # noqa: F401
    from isscli.api.checkpoints import import_pt, init, load, save  # noqa: F401
    from isscli.api.common import default_output, input_files, read_renames, request_inputs  # noqa: F401
    from isscli.api.datasets import CorpusFile, DataPtbRequest, DataPtbResult, data_ptb  # noqa: F401
    from isscli.api.demonstration import DemoRequest, DemoResult, demo  # noqa: F401
    from isscli.api.exporting import ExportRequest, export  # noqa: F401
    from isscli.api.grouping import (  # noqa: F401
        GroupsConvertRequest,
        GroupSet,
        GroupsRequest,
        GroupsResult,
        groups,
        groups_check,
        groups_convert,
    )
    from isscli.api.masking import MaskedMatrix, SparsifyRequest, SparsifyResult, sparsify  # noqa: F401
    from isscli.api.pipeline import ShrinkRequest, ShrinkResult, shrink  # noqa: F401
    from isscli.api.pruning import (  # noqa: F401
        CompactRequest,
        CompactResult,
        PruneRequest,
        PruneResult,
        SetCompaction,
        SetPruning,
        compact,
        prune,
    )
    from isscli.api.run_requests import FinetuneRequest, TrainRequest  # noqa: F401
    from isscli.api.runs import TrainingInterrupted, TrainResult, finetune, train  # noqa: F401
    from isscli.api.scoring import (  # noqa: F401
        EvaluateRequest,
        EvaluateResult,
        QualityGate,
        ScoreNotFinite,
        VocabularyRecord,
        evaluate,
    )
    from isscli.api.showing import SetSummary, ShowRequest, ShowResult, show  # noqa: F401
    from isscli.io.errors import (  # noqa: F401
        CheckpointError,
        GateFailed,
        IsscliError,
        OutputError,
        SpecError,
        Terminated,
    )
    from isscli.io.provenance import invoked_by  # noqa: F401
    from isscli.iss.spec import GroupSpec  # noqa: F401
    from isscli.iss.verification import CompactionMismatch, Verification  # noqa: F401
    from isscli.learn.controller import ControllerSummary  # noqa: F401
    from isscli.learn.corpus import CorpusSummary, UnknownTokens  # noqa: F401
    from isscli.learn.evaluation import Evaluation, Metric  # noqa: F401
    from isscli.learn.recipes import RECIPES, TrainSettings  # noqa: F401
    from isscli.learn.run import RunPaths  # noqa: F401
    from isscli.models.presets import PRESETS  # noqa: F401
    from isscli.runtime.export.onnx import ExportMismatch, ExportResult  # noqa: F401
    from isscli.runtime.report import (  # noqa: F401
        BenchResult,
        BenchSettings,
        Comparison,
        Details,
        Noise,
        SpeedupGate,
        TimedModel,
    )
    from isscli.runtime.timing import Machine, Timings  # noqa: F401
    from isscli.sweeping import (  # noqa: F401
        Baseline,
        Measured,
        Point,
        PointOutcome,
        PointRecord,
        SweepRequest,
        SweepResult,
        SweepSettings,
        make_points,
        sweep,
    )
    from isscli.sweeping.plan import SWEEP_FILES  # noqa: F401
