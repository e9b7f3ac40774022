"""Every command on the user's own model class (``model``=file.py:Class): what it runs on, and each command's work.

A checkpoint is a state_dict; only the user's class knows the forward. With ``model``, isscli loads the
checkpoint into that class (at the checkpoint's sizes, :func:`~isscli.live.compact.load_compacted`) and runs
its forward for everything: deriving the groups, compaction's verification, scoring, timing, ONNX export.
The input it runs on comes from tensor data (``data``=FILE.safetensors|.npz) or a shape (``input_shape``),
and is named in every report, so nothing about the model or its input is assumed in silence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isscli.api.common import PathLike, SpecSource, resolve_spec
from isscli.api.validation import Checked
from isscli.data.tensors import is_tensor_file, load_tensor_data, load_tensor_inputs
from isscli.io.errors import IsscliError
from isscli.iss.spec import GroupSpec
from isscli.live.model import parameter_tensors
from isscli.live.usermodel import ModelSource, example_from_shape, model_source
from isscli.models.checkpoint import Checkpoint
from isscli.observer import Observer

#: Rows of the data file the model runs on where a command needs one example batch (derivation, verification).
EXAMPLE_ROWS = 32
INPUT_HINT = ("give `data`=FILE.safetensors|.npz (x, and lengths if the forward takes them) or `input_shape`, e.g. "
              "10x30x8 (floats, samples first) or 10x30:int<5000 (token ids)")


@dataclass(kw_only=True)
class ModelChoice(Checked):
    """The request fields that name the user's own model class, and what to run it on without tensor data."""

    model: str | None = None  # path/to/file.py:Class or package.module:Class; takes precedence over arch/config
    model_args: str | Mapping[str, Any] | Sequence[Any] | None = None  # constructor arguments (JSON object or list)
    input_shape: str | None = None  # an input when there is no tensor data: 10x30x8, or 10x30:int<5000


@dataclass
class ExampleInput:
    """What the model runs on, and the sentence that says so in reports."""

    arguments: tuple[torch.Tensor, ...]
    description: str

    @property
    def batch(self) -> int:
        return int(self.arguments[0].shape[0])


def user_source(request: Any, observer: Observer | None = None) -> ModelSource | None:
    """The request's own model class (None: one of isscli's families); ``arch``/``config`` are then not used."""
    source = model_source(getattr(request, "model", None), getattr(request, "model_args", None))
    if source is not None and observer is not None:
        ignored = [name for name in ("arch", "config") if getattr(request, name, None) is not None]
        if ignored:
            observer.note(f"`model` takes precedence: {' and '.join(f'`{n}`' for n in ignored)} not used")
    return source


def example_input(data: PathLike | None, input_shape: str | None, rows: int = EXAMPLE_ROWS,
                  seed: int = 0) -> ExampleInput:
    """The first ``rows`` samples of the data's training split, else a random input of ``input_shape``."""
    if data is not None and input_shape is not None:
        raise IsscliError("give `data` or `input_shape`, not both", "the data's rows are the better example")
    if data is not None:
        if not is_tensor_file(data):
            raise IsscliError(f"`data` {data} is not tensor data: with `model` it is a .safetensors or .npz file",
                              INPUT_HINT)
        split = load_tensor_inputs(Path(data))
        count = min(rows, len(split))
        arguments = split.model_input(slice(0, count), torch.device("cpu"))
        call = "model(x, lengths)" if len(arguments) == 2 else "model(x)"
        return ExampleInput(arguments, f"{call} on the first {count} training rows of {data}")
    if input_shape is not None:
        arguments = example_from_shape(input_shape, seed)
        kind = "token ids" if arguments[0].dtype == torch.long else "standard normal floats"
        return ExampleInput(arguments, f"model(x) on random {kind} of shape {input_shape}")
    raise IsscliError("the model must run on an input, and none was given", INPUT_HINT)


def resized(example: ExampleInput, batch: int) -> ExampleInput:
    """The example with ``batch`` samples: its first rows, repeated when it has fewer."""
    have = example.batch
    rows = torch.arange(batch) % have
    arguments = tuple(argument[rows] for argument in example.arguments)
    return ExampleInput(arguments, f"{example.description}, {batch} per batch" + (" (rows repeated)" if batch > have
                                                                                 else ""))


def model_spec(model: nn.Module, example: ExampleInput, spec: SpecSource,
               renames: Mapping[str, str] | None) -> GroupSpec:
    """The spec given (checked against the model's parameters), or the one traced from the model's forward."""
    from isscli.live.trace import derive_module_spec

    if spec is None:
        return derive_module_spec(model, example.arguments)
    return resolve_spec(Checkpoint(parameter_tensors(model), None), spec, renames)


def model_tensors_once(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state for a checkpoint: parameters (a tied weight once, as isscli stores it) and buffers."""
    parameters = dict(model.named_parameters())
    state = {name: tensor for name, tensor in model.state_dict().items() if name in parameters
             or name not in dict(model.named_parameters(remove_duplicate=False))}
    return {name: tensor.detach().clone().contiguous() for name, tensor in state.items()}


def check_tensor_data(request: Any) -> None:
    """With ``model`` on tensor data, the data and its reading (``objective``, ``split_rule``) checked before any
    work, so that a command of several steps (shrink, sweep) refuses a bad input before it writes anything."""
    data = getattr(request, "data", None)
    if getattr(request, "model", None) is not None and data is not None and is_tensor_file(data):
        load_tensor_data(Path(data), getattr(request, "objective", None), getattr(request, "split_rule", None))
