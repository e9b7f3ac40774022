"""isscli: learn Intrinsic Sparse Structures in recurrent networks, compact them exactly, measure the speed-up.

The library API is flat and importable from here (reference with examples: docs/api.md)::

    import isscli

    tuned = isscli.finetune(isscli.FinetuneRequest(checkpoint="dense.safetensors", target_hidden=[100, 100]))
    pruned = isscli.prune(isscli.PruneRequest(checkpoint=tuned.output, group_threshold=0.0))
    small = isscli.compact(isscli.CompactRequest(checkpoint=pruned.checkpoint, output="small.safetensors"))
    isscli.evaluate(isscli.EvaluateRequest(checkpoint="small.safetensors")).perplexity
    isscli.bench(isscli.BenchRequest(checkpoint="small.safetensors", against="dense.safetensors")).speedup

Each function takes a request dataclass (named like the CLI's flags) and returns a typed result
dataclass; none prints (pass an :class:`Observer` to follow progress). Each command of the CLI is
the function of its name (``isscli eval`` is :func:`evaluate`). The parts underneath are plain
modules, in layers (``io`` → ``data`` → ``models`` → ``nn`` → ``iss`` → ``live`` → ``runtime`` →
``learn`` → ``api``): :mod:`isscli.iss.surgery` (group norms, pruning, compaction on tensor dicts),
:mod:`isscli.iss.spec` (group specs), :mod:`isscli.iss.regularizer` (group Lasso),
:mod:`isscli.learn.loop` (the training loop), :mod:`isscli.learn.controller` (size targets),
:mod:`isscli.runtime.timing` (the timing harness) and :mod:`isscli.models`. The
command line (the ``cli`` subpackage) is a thin layer over this API.

For your own model and loop: :mod:`isscli.nn` (``LSTM``/``GRU``/``RNN`` with a size per layer and direction),
:class:`IssTraining` (group Lasso and the size-target controller inside any training loop),
:func:`compact_module` (your own class, physically smaller, verified) and :func:`load_compacted`.
"""

__version__ = "0.3.0"

import sys as _sys  # noqa: E402

from isscli.api import (
    HOMES as _API_HOMES,  # noqa: E402 - the version first: the API records it in provenance
    RENAMED as _RENAMED,  # noqa: E402
)
from isscli.lazy import lazy_exports  # noqa: E402
from isscli.moved import install as _install_moved  # noqa: E402

#: Where each public name lives; each is imported on first use (:mod:`isscli.lazy`). The API's names, and what the
#: loop of your own and the library's lower layers offer.
_HOMES = {
    **_API_HOMES,
    "Checkpoint": "isscli.models.checkpoint",
    **dict.fromkeys(("Observer", "SilentObserver"), "isscli.observer"),
    "GroupLasso": "isscli.iss.regularizer",
    **dict.fromkeys(("ModuleCompaction", "compact_module", "load_compacted"), "isscli.live.compact"),
    "derive_module_spec": "isscli.live.trace",
    **dict.fromkeys(("IssSummary", "IssTraining"), "isscli.learn.your_loop.loop"),
}
__all__ = [*sorted(_HOMES), "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, {**_HOMES, **_RENAMED}, hidden=_RENAMED)
_install_moved(_sys.modules[__name__])  # old module paths (isscli.surgery, …) keep working until 0.4
