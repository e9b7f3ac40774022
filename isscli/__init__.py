"""isscli: learn Intrinsic Sparse Structures in recurrent networks, compact them exactly, measure the speed-up.

The library API is flat and importable from here (reference with examples: docs/api.md)::

    import isscli

    tuned = isscli.finetune(isscli.FinetuneRequest(checkpoint="dense.safetensors", target_hidden=[100, 100]))
    pruned = isscli.prune(isscli.PruneRequest(checkpoint=tuned.output, group_threshold=0.0))
    small = isscli.compact(isscli.CompactRequest(checkpoint=pruned.checkpoint, output="small.safetensors"))
    isscli.evaluate(isscli.EvaluateRequest(checkpoint="small.safetensors")).perplexity
    isscli.bench(isscli.BenchRequest(checkpoint="small.safetensors", against="dense.safetensors")).speedup

Each function takes a request dataclass (named like the CLI's flags) and returns a result
dataclass; none prints (pass an :class:`Observer` to follow progress). The parts underneath
are plain modules: :mod:`isscli.surgery` (group norms, pruning, compaction on tensor dicts),
:mod:`isscli.spec` (group specs), :mod:`isscli.regularizer` (group Lasso),
:mod:`isscli.training` (the training loop), :mod:`isscli.controller` (size targets),
:mod:`isscli.timing` (the timing harness) and :mod:`isscli.models`. The
command line (the ``cli`` subpackage) is a thin layer over this API.
"""

__version__ = "0.2.0"

from isscli import api  # noqa: E402 - the version first: the modules below record it in provenance
from isscli.api import *  # noqa: E402, F403 - the API is the package's top level
from isscli.checkpoint import Checkpoint  # noqa: E402
from isscli.demo import DemoRequest, DemoResult, run_demo  # noqa: E402
from isscli.errors import CheckpointError, IsscliError, OutputError, SpecError  # noqa: E402
from isscli.observer import Observer, SilentObserver  # noqa: E402
from isscli.provenance import invoked_by  # noqa: E402
from isscli.spec import GroupSpec  # noqa: E402
from isscli.sweep import PointOutcome, SweepRequest, SweepResult, make_points, run_sweep  # noqa: E402
from isscli.training import TrainingDiverged  # noqa: E402

__all__ = [
    *api.__all__, "Checkpoint", "CheckpointError", "DemoRequest", "DemoResult", "GroupSpec", "IsscliError", "Observer",
    "OutputError", "PointOutcome", "SilentObserver", "SpecError", "SweepRequest", "SweepResult", "TrainingDiverged",
    "__version__", "invoked_by", "make_points", "run_demo", "run_sweep",
]
