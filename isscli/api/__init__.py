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
    "Freeze": "isscli.learn.controller.state",
    "TargetOrigin": "isscli.learn.controller.targets",
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
    **dict.fromkeys(("ProvenanceError", "invoked_by"), "isscli.io.provenance"),
    "RankLost": "isscli.learn.distributed",
    "TrainingDiverged": "isscli.learn.run",
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
    from isscli.api.benching import BenchRequest as BenchRequest, bench as bench
    from isscli.api.checkpoints import import_pt as import_pt, init as init, load as load, save as save
    from isscli.api.common import (
        default_output as default_output,
        input_files as input_files,
        read_renames as read_renames,
        request_inputs as request_inputs,
    )
    from isscli.api.datasets import (
        CorpusFile as CorpusFile,
        DataPtbRequest as DataPtbRequest,
        DataPtbResult as DataPtbResult,
        data_ptb as data_ptb,
    )
    from isscli.api.demonstration import DemoRequest as DemoRequest, DemoResult as DemoResult, demo as demo
    from isscli.api.exporting import ExportRequest as ExportRequest, export as export
    from isscli.api.grouping import (
        GroupsConvertRequest as GroupsConvertRequest,
        GroupSet as GroupSet,
        GroupsRequest as GroupsRequest,
        GroupsResult as GroupsResult,
        groups as groups,
        groups_check as groups_check,
        groups_convert as groups_convert,
    )
    from isscli.api.masking import (
        MaskedMatrix as MaskedMatrix,
        SparsifyRequest as SparsifyRequest,
        SparsifyResult as SparsifyResult,
        sparsify as sparsify,
    )
    from isscli.api.pipeline import ShrinkRequest as ShrinkRequest, ShrinkResult as ShrinkResult, shrink as shrink
    from isscli.api.pruning import (
        CompactRequest as CompactRequest,
        CompactResult as CompactResult,
        PruneRequest as PruneRequest,
        PruneResult as PruneResult,
        SetCompaction as SetCompaction,
        SetPruning as SetPruning,
        compact as compact,
        prune as prune,
    )
    from isscli.api.run_requests import FinetuneRequest as FinetuneRequest, TrainRequest as TrainRequest
    from isscli.api.runs import (
        TrainingInterrupted as TrainingInterrupted,
        TrainResult as TrainResult,
        finetune as finetune,
        train as train,
    )
    from isscli.api.scoring import (
        EvaluateRequest as EvaluateRequest,
        EvaluateResult as EvaluateResult,
        QualityGate as QualityGate,
        ScoreNotFinite as ScoreNotFinite,
        VocabularyRecord as VocabularyRecord,
        evaluate as evaluate,
    )
    from isscli.api.showing import (
        SetSummary as SetSummary,
        ShowRequest as ShowRequest,
        ShowResult as ShowResult,
        show as show,
    )
    from isscli.io.errors import (
        CheckpointError as CheckpointError,
        GateFailed as GateFailed,
        IsscliError as IsscliError,
        OutputError as OutputError,
        SpecError as SpecError,
        Terminated as Terminated,
    )
    from isscli.io.provenance import ProvenanceError as ProvenanceError, invoked_by as invoked_by
    from isscli.iss.spec import GroupSpec as GroupSpec
    from isscli.iss.verification import CompactionMismatch as CompactionMismatch, Verification as Verification
    from isscli.learn.controller import ControllerSummary as ControllerSummary
    from isscli.learn.controller.state import Freeze as Freeze
    from isscli.learn.controller.targets import TargetOrigin as TargetOrigin
    from isscli.learn.corpus import CorpusSummary as CorpusSummary, UnknownTokens as UnknownTokens
    from isscli.learn.distributed import RankLost as RankLost
    from isscli.learn.evaluation import Evaluation as Evaluation, Metric as Metric
    from isscli.learn.recipes import RECIPES as RECIPES, TrainSettings as TrainSettings
    from isscli.learn.run import RunPaths as RunPaths, TrainingDiverged as TrainingDiverged
    from isscli.models.presets import PRESETS as PRESETS
    from isscli.runtime.export.onnx import ExportMismatch as ExportMismatch, ExportResult as ExportResult
    from isscli.runtime.report import (
        BenchResult as BenchResult,
        BenchSettings as BenchSettings,
        Comparison as Comparison,
        Details as Details,
        Noise as Noise,
        SpeedupGate as SpeedupGate,
        TimedModel as TimedModel,
    )
    from isscli.runtime.timing import Machine as Machine, Timings as Timings
    from isscli.sweeping import (
        Baseline as Baseline,
        Measured as Measured,
        Point as Point,
        PointOutcome as PointOutcome,
        PointRecord as PointRecord,
        SweepRequest as SweepRequest,
        SweepResult as SweepResult,
        SweepSettings as SweepSettings,
        make_points as make_points,
        sweep as sweep,
    )
    from isscli.sweeping.plan import SWEEP_FILES as SWEEP_FILES
