"""Export the user's own ``nn.Module`` to ONNX by tracing its forward, checked in ONNX Runtime against the module.

:mod:`isscli.runtime.export.onnx` builds graphs from the weights of isscli's own model families; a user's model
(``--model file.py:Class``) has a forward nobody can guess, so it is traced instead (``torch.onnx.export``,
TorchScript exporter): the graph runs *their* pooling, heads and state handling.

Inputs are named ``x``, ``lengths``, ``input_2``, …; a single output ``output``, else ``output_0``, ``output_1``,
… (nested tuples, such as an LSTM's ``(h, c)``, flattened in order). Dim 0 of every input is ``batch`` and dim 1
of ``x`` is ``time``. Which output dims are dynamic is measured, not guessed from sizes that may coincide: the
module runs on copies of the example with only the batch changed, only the time changed, and both changed
(batch ≠ time), and an output dim is ``batch`` (``time``) when it follows the batch (time) in every run, another
dynamic dim (``output_0_dim1``) when it changes some other way, static when it never changes. ONNX Runtime must
then match the module on every one of those inputs (or on ``check_inputs``) before anything is written.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

import isscli
from isscli.io.atomic import atomic_write, check_output_path, first_line
from isscli.io.errors import IsscliError
from isscli.live.model import layer_sizes, recurrent_modules
from isscli.runtime.export.onnx import TOLERANCE, VERSION_KEY, ExportMismatch, ExportResult
from isscli.runtime.export.runtime import onnx_session, require
from isscli.runtime.export.tracing import trace, trace_hint

if TYPE_CHECKING:
    import onnxruntime

#: Opsets the TorchScript exporter writes (torch.onnx._constants holds its bounds; 7 and 20 in torch 2.13).
MIN_OPSET = 7
VARIANT_HINT = ("the exported graph takes any batch (dim 0 of every input) and time (dim 1 of `x`); make the "
                "forward accept them, or give `check_inputs` of sizes it takes")


@dataclass
class Run:
    """One call of the module: its inputs, its flattened outputs, and the batch and time it was given."""

    inputs: tuple[Tensor, ...]
    outputs: list[Tensor]
    where: str  # how messages name this input
    batch: int
    steps: int | None  # dim 1 of `x`; None when `x` is 1-D

    @classmethod
    def of(cls, inputs: tuple[Tensor, ...], outputs: list[Tensor], where: str) -> Run:
        x = inputs[0]
        return cls(inputs, outputs, where, x.shape[0], x.shape[1] if x.dim() >= 2 else None)


# -- names and inputs --------------------------------------------------------------------------------------------


def input_names(count: int) -> list[str]:
    """``x``, ``lengths``, then ``input_2``, … — the names a service feeds."""
    return [["x", "lengths"][index] if index < 2 else f"input_{index}" for index in range(count)]


def output_names(result: object, count: int) -> list[str]:
    """``output`` for a lone tensor, else ``output_0``, ``output_1``, … in flattened order."""
    return ["output"] if isinstance(result, Tensor) else [f"output_{index}" for index in range(count)]


def flatten_outputs(result: object) -> list[Tensor]:
    """The module's result as the flat tensor list ``torch.onnx.export`` makes of it; other types refused."""
    if isinstance(result, Tensor):
        return [result.detach()]
    if isinstance(result, PackedSequence):
        raise IsscliError("the model returns a PackedSequence, which ONNX cannot output",
                          "return a padded tensor (pad_packed_sequence) or the final state instead")
    if isinstance(result, (tuple, list)):
        return [tensor for entry in result for tensor in flatten_outputs(entry)]
    raise IsscliError(f"the model returns a {type(result).__name__}, which ONNX cannot output",
                      "return a tensor, or a (nested) tuple or list of tensors")


def example_tuple(inputs: object, what: str) -> tuple[Tensor, ...]:
    """``inputs`` as a tuple of CPU tensors, each with the same batch size in dim 0 (why: that dim is made dynamic)."""
    inputs = (inputs,) if isinstance(inputs, Tensor) else inputs
    if not isinstance(inputs, (tuple, list)) or not inputs or not all(isinstance(t, Tensor) for t in inputs):
        raise IsscliError(f"{what} must be a non-empty tuple of tensors, the arguments of model(*inputs)",
                          "give e.g. (x,) with x [batch, time, features], or (x, lengths)")
    names = input_names(len(inputs))
    batch = inputs[0].shape[0] if inputs[0].dim() else None
    for name, tensor in zip(names, inputs):
        if tensor.dim() == 0 or tensor.shape[0] != batch or batch == 0:
            got = tuple(tensor.shape)
            raise IsscliError(f"`{name}` of {what} has shape {got}: every input needs the batch (dim 0, samples "
                              f"first) of `x`, {batch}", "pass per-sample tensors only, samples first; keep "
                                                         "constants inside the model")
    if inputs[0].dim() >= 2 and inputs[0].shape[1] == 0:
        raise IsscliError(f"`x` of {what} has no time steps (shape {tuple(inputs[0].shape)})",
                          "give at least one step in dim 1 of `x`")
    return tuple(tensor.detach().cpu() for tensor in inputs)


def resized(inputs: tuple[Tensor, ...], batch: int, steps: int | None) -> tuple[Tensor, ...]:
    """The example with its rows repeated or cut to ``batch`` and ``x``'s time repeated or cut to ``steps``.

    ``lengths`` (an integer second input) is clamped to ``steps``, so a cut sequence stays valid.
    """
    rows = torch.arange(batch) % inputs[0].shape[0]
    result = [tensor.index_select(0, rows) for tensor in inputs]
    if steps is not None:
        result[0] = result[0].index_select(1, torch.arange(steps) % inputs[0].shape[1])
        if len(result) > 1 and not result[1].is_floating_point() and result[1].dtype != torch.bool:
            result[1] = result[1].clamp(max=steps)
    return tuple(result)


def variant_sizes(batch: int, steps: int | None) -> list[tuple[int, int | None]]:
    """Batch changed, time changed, then both — time cut where it can be, and batch ≠ time, so a graph that
    swapped the two, or fixed either, cannot pass."""
    if steps is None:
        return [(batch + 1, None), (batch + 2, None)]
    shorter = steps - 1 if steps >= 3 else steps + 1
    both = batch + 2 if batch + 2 != shorter else batch + 3
    return [(batch + 1, steps), (batch, steps + 2), (both, shorter)]


def describe(batch: int, steps: int | None) -> str:
    return f"batch {batch}" + ("" if steps is None else f" and time {steps}")


# -- running the module ------------------------------------------------------------------------------------------


@contextmanager
def evaluation(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for the export, each submodule's own mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def on_cpu(model: nn.Module) -> nn.Module:
    """The model itself if it is on the CPU, else a CPU copy (the user's model is left where it is)."""
    tensors = [*model.parameters(), *model.buffers()]
    return model if all(tensor.device.type == "cpu" for tensor in tensors) else copy.deepcopy(model).cpu()


@torch.no_grad()
def run_module(model: nn.Module, inputs: tuple[Tensor, ...], where: str, hint: str) -> tuple[object, list[Tensor]]:
    """The module's raw result and flattened outputs on ``inputs``; a failing forward is the user's error."""
    try:
        result = model(*inputs)
    except Exception as error:  # the user's forward may raise anything
        raise IsscliError(f"the model's forward fails on {where}: {first_line(str(error), type(error).__name__)}",
                          hint) from None
    return result, flatten_outputs(result)


def module_runs(model: nn.Module, example: tuple[Tensor, ...],
                check_inputs: list[tuple[Tensor, ...]] | None) -> tuple[object, list[Run]]:
    """The example's raw result, and the runs that decide the dynamic axes and that ONNX Runtime must match."""
    result, outputs = run_module(model, example, "example_input",
                                 "give example_input as the arguments of model(*example_input), samples first")
    runs = [Run.of(example, outputs, "example_input")]
    if check_inputs is not None:
        if not isinstance(check_inputs, (list, tuple)) or not check_inputs:
            raise IsscliError("`check_inputs` must be a non-empty list of input tuples",
                              "give e.g. [(x2,)] with another batch and time, or leave it out")
        for index, inputs in enumerate(check_inputs):
            inputs = example_tuple(inputs, f"check input {index}")
            if len(inputs) != len(example) or any(a.dtype != b.dtype or a.dim() != b.dim()
                                                  for a, b in zip(inputs, example)):
                raise IsscliError(f"check input {index} does not match example_input's count, dtypes and ranks",
                                  "give check inputs shaped like example_input, with other batch and time sizes")
            runs.append(Run.of(inputs, run_module(model, inputs, f"check input {index}", "fix that check input")[1],
                               f"check input {index}"))
        return result, runs
    for batch, steps in variant_sizes(runs[0].batch, runs[0].steps):
        where = f"an input of {describe(batch, steps)} (example_input's rows and steps repeated or cut)"
        inputs = resized(example, batch, steps)
        outputs = run_module(model, inputs, where, VARIANT_HINT)[1]
        runs.append(Run.of(inputs, outputs, where))
    return result, runs


# -- dynamic axes ------------------------------------------------------------------------------------------------


def output_axes(name: str, index: int, runs: list[Run]) -> dict[int, str]:
    """Which dims of output ``index`` are dynamic, and their names, from its shapes across ``runs``."""
    shapes = [tuple(run.outputs[index].shape) for run in runs]
    if len({len(shape) for shape in shapes}) > 1:
        raise IsscliError(f"the model's `{name}` has a different rank on different inputs ({shapes[0]} on "
                          f"{runs[0].where}, {shapes[-1]} on {runs[-1].where})",
                          "ONNX outputs have one rank: return tensors whose rank does not depend on the input")
    axes = {}
    for dim in range(len(shapes[0])):
        sizes = [shape[dim] for shape in shapes]
        if len(set(sizes)) == 1:
            continue
        if all(size == run.batch for size, run in zip(sizes, runs)):
            axes[dim] = "batch"
        elif all(run.steps is not None and size == run.steps for size, run in zip(sizes, runs)):
            axes[dim] = "time"
        else:
            axes[dim] = f"{name}_dim{dim}"
    return axes


def dynamic_axes(inputs: list[str], outputs: list[str], runs: list[Run]) -> dict[str, dict[int, str]]:
    """Dim 0 of every input is ``batch``, dim 1 of ``x`` is ``time``; output dims as :func:`output_axes` finds."""
    counts = {len(run.outputs) for run in runs}
    if len(counts) > 1:
        raise IsscliError(f"the model returns {len(runs[0].outputs)} tensors on {runs[0].where} but a different "
                          "number on other inputs", "ONNX outputs are fixed: return the same structure always")
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in inputs}
    if runs[0].steps is not None:
        axes["x"][1] = "time"
    for index, name in enumerate(outputs):
        if found := output_axes(name, index, runs):
            axes[name] = found
    return axes


def metadata_props(metadata: dict[str, str] | None) -> dict[str, str]:
    """The caller's ``metadata`` and isscli's version, checked before any work: ``metadata_props`` hold strings."""
    props = dict(metadata or {})
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in props.items()):
        raise IsscliError("`metadata` keys and values must be strings", "convert them, e.g. with json.dumps")
    return {**props, VERSION_KEY: isscli.__version__}


# -- checking in ONNX Runtime ------------------------------------------------------------------------------------


def difference(name: str, expected: Tensor, actual: np.ndarray, where: str, hint: str) -> tuple[float, float]:
    """Largest |module − ONNX Runtime| of one output and its largest finite |value|; ±inf must match exactly."""
    if tuple(actual.shape) != tuple(expected.shape):
        raise ExportMismatch(f"ONNX Runtime's `{name}` has shape {tuple(actual.shape)} where the model's is "
                             f"{tuple(expected.shape)} on {where}; nothing was written", hint)
    wanted, ran = expected.double(), torch.from_numpy(np.asarray(actual)).double()
    if bool(wanted.isnan().any()):
        raise ExportMismatch(f"the model's `{name}` holds NaN on {where}; nothing was written",
                             "check the model's weights and its forward on that input")
    finite = wanted.isfinite()
    scale = float(wanted[finite].abs().max()) if bool(finite.any()) else 0.0
    if not torch.equal(ran[~finite], wanted[~finite]) or not bool(ran[finite].isfinite().all()):
        return math.inf, scale
    return (float((wanted - ran)[finite].abs().max()) if bool(finite.any()) else 0.0), scale


def run_session(session: onnxruntime.InferenceSession, run: Run, hint: str) -> list[np.ndarray]:
    """ONNX Runtime's outputs on ``run``'s inputs (the graph may have dropped inputs the forward ignores)."""
    runtime = require("onnxruntime")
    given = dict(zip(input_names(len(run.inputs)), run.inputs))
    feeds = {node.name: given[node.name].contiguous().numpy() for node in session.get_inputs()}
    options = runtime.RunOptions()
    options.log_severity_level = 4  # the exception says it; ONNX Runtime's own error log would repeat it in colour
    try:
        outputs: list[np.ndarray] = session.run(None, feeds, options)
        return outputs
    except Exception as error:  # onnxruntime's exception types are not public
        raise ExportMismatch(f"ONNX Runtime cannot run the exported graph on {run.where}: "
                             f"{first_line(str(error), type(error).__name__)}; nothing was written", hint) from None


def verify(session: onnxruntime.InferenceSession, names: list[str], runs: list[Run], hint: str) -> tuple[float, float]:
    """Every output of every run within ``TOLERANCE`` of the module's, relative to that output's size.

    Returns the largest absolute difference and the largest |output| over all of them.
    """
    worst, largest = 0.0, 0.0
    for run in runs:
        actual = run_session(session, run, hint)
        for name, expected, got in zip(names, run.outputs, actual):
            gap, scale = difference(name, expected, got, run.where, hint)
            if not gap <= TOLERANCE * max(1.0, scale):
                raise ExportMismatch(f"ONNX Runtime's `{name}` differs from the model's by {gap:.3g} (> "
                                     f"{TOLERANCE * max(1.0, scale):g}) on {run.where}; nothing was written", hint)
            worst, largest = max(worst, gap), max(largest, scale)
    return worst, largest


def hidden_sizes(model: nn.Module) -> list[list[int]]:
    """Units per layer-direction of every recurrent module, in module order (cells and projections: listed too)."""
    try:
        modules = list(recurrent_modules(model).values())
    except IsscliError:  # no recurrent module, or one isscli cannot shrink: the export does not need one
        from isscli import nn as drop_in

        kinds = (nn.RNNBase, drop_in.LSTM, drop_in.GRU, drop_in.RNN)
        modules = [module for module in model.modules() if isinstance(module, kinds)]
    return [sizes for module in modules for sizes in layer_sizes(module)]


def check_opset(opset: int) -> None:
    """Refuse an opset the TorchScript exporter cannot write, before any work."""
    constants = getattr(torch.onnx, "_constants", None)
    highest = getattr(constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= highest:
        raise IsscliError(f"`opset` {opset} is outside {MIN_OPSET}–{highest}, what torch.onnx.export writes",
                          "give e.g. `opset`=17")


def export_module(model: nn.Module, example_input: tuple[Tensor, ...], output: Path, force: bool = False,
                  opset: int = 17, metadata: dict[str, str] | None = None,
                  check_inputs: list[tuple[Tensor, ...]] | None = None) -> ExportResult:
    """Export the user's module, running their own forward, to ONNX, after checking it in ONNX Runtime.

    Args:
        model: any ``nn.Module``; exported in eval mode on the CPU (its modes are restored, a model elsewhere is
            copied to the CPU).
        example_input: the arguments of ``model(*example_input)``, samples first: ``(x,)`` with ``x``
            ``[B, T, F]`` or ``[B, T]`` int64, or ``(x, lengths)`` with ``lengths`` ``[B]`` int64.
        output: the ``.onnx`` file, written atomically; refused if it exists, unless ``force``.
        opset: the ONNX opset to target.
        metadata: strings stored in the model's ``metadata_props`` (with isscli's version).
        check_inputs: inputs, with other batch and time sizes, that decide the dynamic output axes and that ONNX
            Runtime must match; default: the example's rows and steps repeated or cut to three other sizes.

    Returns:
        An :class:`~isscli.runtime.export.onnx.ExportResult`. Raises
        :class:`~isscli.runtime.export.onnx.ExportMismatch`,
        writing nothing, when an output differs by more than ``1e-4`` × max(1, its largest |value|).

    Example::

        result = export_module(model, (torch.randn(2, 7, 8),), Path("tagger.onnx"))
        result.inputs, result.outputs
        # → (['x'], ['output'])
    """
    onnx_module = require("onnx")
    require("onnxruntime")
    if not isinstance(model, nn.Module):
        raise IsscliError(f"the model is a {type(model).__name__}, not an nn.Module", "pass the model instance")
    check_opset(opset)
    props = metadata_props(metadata)
    output = Path(output)
    check_output_path(output, (), force)
    example = example_tuple(example_input, "example_input")
    model = on_cpu(model)
    with evaluation(model), tempfile.TemporaryDirectory(prefix="isscli-onnx-") as folder:
        result, runs = module_runs(model, example, check_inputs)
        names = input_names(len(example)), output_names(result, len(runs[0].outputs))
        axes = dynamic_axes(*names, runs)
        traced = Path(folder) / "model.onnx"
        caught = trace(model, example, traced, opset, names, axes)
        proto = onnx_module.load(str(traced))
    onnx_module.helper.set_model_props(proto, props)
    session = onnx_session(proto)
    graph_outputs = [node.name for node in session.get_outputs()]
    if len(graph_outputs) != len(names[1]):
        raise ExportMismatch(f"the exported graph has {len(graph_outputs)} outputs where the model returns "
                             f"{len(names[1])}; nothing was written", trace_hint(caught))
    worst, largest = verify(session, names[1], runs, trace_hint(caught))
    atomic_write(output, lambda temp: onnx_module.save(proto, str(temp)))
    inputs = [node.name for node in session.get_inputs()]
    return ExportResult(output, inputs, graph_outputs, worst, largest, TOLERANCE * max(1.0, largest),
                        hidden_sizes(model), checked_on=checked_on(runs))


def checked_on(runs: list[Run]) -> str:
    """What ONNX Runtime matched the module on, for the report: the example, then the other sizes."""
    others = ", ".join(describe(run.batch, run.steps) for run in runs[1:])
    return f"example_input ({describe(runs[0].batch, runs[0].steps)}) and {len(runs) - 1} more: {others}"


__all__ = ["export_module"]
