"""Run an exported model in ONNX Runtime: the session, the graph's inputs, and a timed workload.

An exported LM streams: its recurrent state is a graph input (``h_l0``, ``c_l0``,
``h_l1_reverse``, …, each ``[1, B, H]``) and a graph output (``h_out_l0``, …), so a service
feeds each chunk the state the previous chunk returned. A classifier takes ``tokens`` and
``lengths`` and returns ``logits`` only. onnx and onnxruntime are optional dependencies
(``pip install 'isscli[export]'``): they are imported when first needed, through :func:`require`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from isscli.io.errors import IsscliError
from isscli.models.config import ModelConfig
from isscli.models.recurrent import direction_suffix

if TYPE_CHECKING:
    import onnx
    import onnxruntime


def require(module: str) -> ModuleType:
    """Import ``onnx`` or ``onnxruntime``, or say how to install them."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise IsscliError(
            "ONNX export needs the onnx and onnxruntime packages", "pip install 'isscli[export]'"
        ) from None


def state_names(config: ModelConfig) -> list[tuple[str, str, int]]:
    """``(input, output, size)`` of each state tensor of an exported LM.

    The order is that of the PyTorch model's state flattened: layer by layer, direction by
    direction, ``h`` before ``c``.
    """
    kinds = ("h", "c") if config.cell == "lstm" else ("h",)
    names: list[tuple[str, str, int]] = []
    for layer, sizes in enumerate(config.hidden_sizes):
        for direction, size in enumerate(sizes):
            suffix = direction_suffix(layer, direction)
            names.extend((f"{kind}{suffix}", f"{kind}_out{suffix}", size) for kind in kinds)
    return names


def initial_feeds(
    config: ModelConfig, tokens: torch.Tensor, lengths: torch.Tensor | None = None
) -> dict[str, np.ndarray]:
    """The graph's inputs for ``tokens [T, B]``: an LM's all-zero state, a classifier's ``lengths`` (default: full)."""
    steps, batch = tokens.shape
    feeds = {"tokens": tokens.numpy()}
    if config.family == "classifier":
        lengths = torch.full((batch,), steps, dtype=torch.long) if lengths is None else lengths
        feeds["lengths"] = lengths.numpy()
    else:
        feeds.update({name: np.zeros((1, batch, size), np.float32) for name, _, size in state_names(config)})
    return feeds


def onnx_session(proto: onnx.ModelProto, threads: int | None = None) -> onnxruntime.InferenceSession:
    """A CPU session for ``proto``; ``threads`` sets ONNX Runtime's intra-op threads (default: its own choice).

    Example::

        session = onnx_session(to_onnx(model), threads=1)
        logits, *state = session.run(None, initial_feeds(model.config, tokens))
    """
    runtime = require("onnxruntime")
    options = runtime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    # ONNX Runtime's worker threads spin for a while after each run by default, taking the CPU from whatever runs
    # next: in an interleaved benchmark that is the torch model, which would be timed slower than it is.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return runtime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types are not part of its public API
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IsscliError(
            f"ONNX Runtime {runtime.__version__} cannot load the exported graph ({reason})",
            "export with a lower `opset` (17 runs on onnxruntime 1.18 and later)",
        ) from None


def onnx_workload(
    session: onnxruntime.InferenceSession, config: ModelConfig, part: str, batch: int, steps: int, seed: int
) -> Callable[[], object]:
    """A closure running one whole inference in ONNX Runtime, as :func:`isscli.runtime.benchmark.inference` does in
    PyTorch.

    The inputs are those of the PyTorch workload (same random tokens, zero state, full
    lengths), made once, here, so they are not timed.

    Example::

        run = onnx_workload(onnx_session(to_onnx(model)), model.config, "full", batch=10, steps=30, seed=0)
        logits = run()[0]
    """
    if part != "full":
        raise IsscliError(
            f"ONNX Runtime runs the whole model only, not the `{part}` part",
            "time the `full` and `latency` workloads in ONNX Runtime, the `recurrent` one in PyTorch",
        )
    generator = torch.Generator().manual_seed(seed)
    classifier = config.family == "classifier"
    tokens = torch.randint(int(classifier), config.vocab_size, (steps, batch), generator=generator)
    feeds = initial_feeds(config, tokens)
    return lambda: session.run(None, feeds)
