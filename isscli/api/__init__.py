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
    from isscli.api.benching import BenchRequest as BenchRequest  # noqa: F401
    from isscli.api.benching import bench as bench
    from isscli.api.checkpoints import import_pt as import_pt  # noqa: F401
    from isscli.api.checkpoints import init as init
    from isscli.api.checkpoints import load as load
    from isscli.api.checkpoints import save as save
    from isscli.api.common import default_output as default_output  # noqa: F401
    from isscli.api.common import input_files as input_files
    from isscli.api.common import read_renames as read_renames
    from isscli.api.common import request_inputs as request_inputs
    from isscli.api.datasets import CorpusFile as CorpusFile  # noqa: F401
    from isscli.api.datasets import DataPtbRequest as DataPtbRequest
    from isscli.api.datasets import DataPtbResult as DataPtbResult
    from isscli.api.datasets import data_ptb as data_ptb
    from isscli.api.demonstration import DemoRequest as DemoRequest  # noqa: F401
    from isscli.api.demonstration import DemoResult as DemoResult
    from isscli.api.demonstration import demo as demo
    from isscli.api.exporting import ExportRequest as ExportRequest  # noqa: F401
    from isscli.api.exporting import export as export
    from isscli.api.grouping import (  # noqa: F401
        GroupsConvertRequest as GroupsConvertRequest,
    )
    from isscli.api.grouping import (
        GroupSet as GroupSet,
    )
    from isscli.api.grouping import (
        GroupsRequest as GroupsRequest,
    )
    from isscli.api.grouping import (
        GroupsResult as GroupsResult,
    )
    from isscli.api.grouping import (
        groups as groups,
    )
    from isscli.api.grouping import (
        groups_check as groups_check,
    )
    from isscli.api.grouping import (
        groups_convert as groups_convert,
    )
    from isscli.api.masking import MaskedMatrix as MaskedMatrix  # noqa: F401
    from isscli.api.masking import SparsifyRequest as SparsifyRequest
    from isscli.api.masking import SparsifyResult as SparsifyResult
    from isscli.api.masking import sparsify as sparsify
    from isscli.api.pipeline import ShrinkRequest as ShrinkRequest  # noqa: F401
    from isscli.api.pipeline import ShrinkResult as ShrinkResult
    from isscli.api.pipeline import shrink as shrink
    from isscli.api.pruning import (  # noqa: F401
        CompactRequest as CompactRequest,
    )
    from isscli.api.pruning import (
        CompactResult as CompactResult,
    )
    from isscli.api.pruning import (
        PruneRequest as PruneRequest,
    )
    from isscli.api.pruning import (
        PruneResult as PruneResult,
    )
    from isscli.api.pruning import (
        SetCompaction as SetCompaction,
    )
    from isscli.api.pruning import (
        SetPruning as SetPruning,
    )
    from isscli.api.pruning import (
        compact as compact,
    )
    from isscli.api.pruning import (
        prune as prune,
    )
    from isscli.api.run_requests import FinetuneRequest as FinetuneRequest  # noqa: F401
    from isscli.api.run_requests import TrainRequest as TrainRequest
    from isscli.api.runs import TrainingInterrupted as TrainingInterrupted  # noqa: F401
    from isscli.api.runs import TrainResult as TrainResult
    from isscli.api.runs import finetune as finetune
    from isscli.api.runs import train as train
    from isscli.api.scoring import (  # noqa: F401
        EvaluateRequest as EvaluateRequest,
    )
    from isscli.api.scoring import (
        EvaluateResult as EvaluateResult,
    )
    from isscli.api.scoring import (
        QualityGate as QualityGate,
    )
    from isscli.api.scoring import (
        ScoreNotFinite as ScoreNotFinite,
    )
    from isscli.api.scoring import (
        VocabularyRecord as VocabularyRecord,
    )
    from isscli.api.scoring import (
        evaluate as evaluate,
    )
    from isscli.api.showing import SetSummary as SetSummary  # noqa: F401
    from isscli.api.showing import ShowRequest as ShowRequest
    from isscli.api.showing import ShowResult as ShowResult
    from isscli.api.showing import show as show
    from isscli.io.errors import (  # noqa: F401
        CheckpointError as CheckpointError,
    )
    from isscli.io.errors import (
        GateFailed as GateFailed,
    )
    from isscli.io.errors import (
        IsscliError as IsscliError,
    )
    from isscli.io.errors import (
        OutputError as OutputError,
    )
    from isscli.io.errors import (
        SpecError as SpecError,
    )
    from isscli.io.errors import (
        Terminated as Terminated,
    )
    from isscli.io.provenance import invoked_by as invoked_by  # noqa: F401
    from isscli.iss.spec import GroupSpec as GroupSpec  # noqa: F401
    from isscli.iss.verification import CompactionMismatch as CompactionMismatch  # noqa: F401
    from isscli.iss.verification import Verification as Verification
    from isscli.learn.controller import ControllerSummary as ControllerSummary  # noqa: F401
    from isscli.learn.corpus import CorpusSummary as CorpusSummary  # noqa: F401
    from isscli.learn.corpus import UnknownTokens as UnknownTokens
    from isscli.learn.evaluation import Evaluation as Evaluation  # noqa: F401
    from isscli.learn.evaluation import Metric as Metric
    from isscli.learn.recipes import RECIPES as RECIPES  # noqa: F401
    from isscli.learn.recipes import TrainSettings as TrainSettings
    from isscli.learn.run import RunPaths as RunPaths  # noqa: F401
    from isscli.models.presets import PRESETS as PRESETS  # noqa: F401
    from isscli.runtime.export.onnx import ExportMismatch as ExportMismatch  # noqa: F401
    from isscli.runtime.export.onnx import ExportResult as ExportResult
    from isscli.runtime.report import (  # noqa: F401
        BenchResult as BenchResult,
    )
    from isscli.runtime.report import (
        BenchSettings as BenchSettings,
    )
    from isscli.runtime.report import (
        Comparison as Comparison,
    )
    from isscli.runtime.report import (
        Details as Details,
    )
    from isscli.runtime.report import (
        Noise as Noise,
    )
    from isscli.runtime.report import (
        SpeedupGate as SpeedupGate,
    )
    from isscli.runtime.report import (
        TimedModel as TimedModel,
    )
    from isscli.runtime.timing import Machine as Machine  # noqa: F401
    from isscli.runtime.timing import Timings as Timings
    from isscli.sweeping import (  # noqa: F401
        Baseline as Baseline,
    )
    from isscli.sweeping import (
        Measured as Measured,
    )
    from isscli.sweeping import (
        Point as Point,
    )
    from isscli.sweeping import (
        PointOutcome as PointOutcome,
    )
    from isscli.sweeping import (
        PointRecord as PointRecord,
    )
    from isscli.sweeping import (
        SweepRequest as SweepRequest,
    )
    from isscli.sweeping import (
        SweepResult as SweepResult,
    )
    from isscli.sweeping import (
        SweepSettings as SweepSettings,
    )
    from isscli.sweeping import (
        make_points as make_points,
    )
    from isscli.sweeping import (
        sweep as sweep,
    )
    from isscli.sweeping.plan import SWEEP_FILES as SWEEP_FILES  # noqa: F401
