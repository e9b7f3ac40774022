"""isscli: learn Intrinsic Sparse Structures in recurrent networks and compact them.

The library API lives in small modules: :mod:`isscli.checkpoint` (safetensors I/O),
:mod:`isscli.spec` (ISS group specs), :mod:`isscli.surgery` (group norms, pruning,
compaction) and :mod:`isscli.models` (the model families). The CLI in :mod:`isscli.cli`
is a thin layer over them.
"""

__version__ = "0.1.0"
