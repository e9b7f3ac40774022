"""Parameters, bytes and multiply-adds of the user's own model, counted on one run of its forward.

isscli's own families are counted from their config (:mod:`isscli.iss.accounting`); a user's model has no config,
so its recurrent and linear layers are watched while it runs on the benchmark's input. The conventions are
the paper's, as there: matrix products only (biases and nonlinearities left out), a layer-direction with ``G``
gates, ``H`` units and input width ``in`` costs ``G·H·(in + H)`` per sequence step, a linear layer
``in·out`` per row it is applied to. Other modules with weights (convolutions, attention) are not counted,
and the report lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from isscli.live.model import Recurrent, call_model, layer_sizes, recurrent_modules
from isscli.models.config import GATES_PER_CELL

#: ``nn.LSTM.mode`` (and the drop-ins' ``mode``) → the cell name of :data:`GATES_PER_CELL`.
CELLS = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "rnn_tanh", "rnn_relu": "rnn_relu"}
#: A forward hook: the module, its positional arguments, its output.
Hook = Callable[[nn.Module, tuple[Any, ...], Any], None]


@dataclass
class Tally:
    """What :func:`counting` adds up while the model runs."""

    multiply_adds: int = 0
    not_counted: list[str] = field(default_factory=list)  # modules with weights whose multiply-adds are left out


def parameter_count(model: nn.Module) -> int:
    """Every parameter, a shared (tied) one once."""
    return sum(parameter.numel() for parameter in model.parameters())


def parameter_bytes(model: nn.Module) -> int:
    return sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())


def _gates(module: nn.Module) -> int:
    cell = CELLS.get(str(getattr(module, "mode", "")).lower(), "rnn_tanh")
    return GATES_PER_CELL[cell]


def _rows(value: Any, width: int) -> int:
    """Sequence steps (over the whole batch) an input carries: a packed sequence's rows, else numel / width."""
    if isinstance(value, nn.utils.rnn.PackedSequence):
        return int(value.data.shape[0])
    return int(value.numel() // max(width, 1))


def recurrent_cost(module: Recurrent, steps: int) -> int:
    """``G·H·(in + H)`` per layer-direction, times the steps run."""
    gates, width, total = _gates(module), module.input_size, 0
    for sizes in layer_sizes(module):
        total += sum(gates * hidden * (width + hidden) for hidden in sizes)
        width = sum(sizes)
    return total * steps


@contextmanager
def counting(model: nn.Module) -> Iterator[Tally]:
    """Hooks that add up the multiply-adds of the recurrent and linear layers while the model runs."""
    tally = Tally()
    recurrent = recurrent_modules(model)

    def on_recurrent(layer: Recurrent) -> Hook:
        def hook(_module: nn.Module, args: tuple[Any, ...], _output: Any) -> None:
            tally.multiply_adds += recurrent_cost(layer, _rows(args[0], layer.input_size))

        return hook

    def on_linear(layer: nn.Linear) -> Hook:
        def hook(_module: nn.Module, args: tuple[Any, ...], _output: Any) -> None:
            tally.multiply_adds += _rows(args[0], layer.in_features) * layer.in_features * layer.out_features

        return hook

    handles = []
    for name, module in model.named_modules():
        if name in recurrent:
            handles.append(module.register_forward_hook(on_recurrent(recurrent[name])))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear(module)))
        elif not isinstance(module, nn.Embedding) and any(True for _ in module.parameters(recurse=False)) \
                and not any(module is r or _inside(module, r) for r in recurrent.values()):
            tally.not_counted.append(name)
    try:
        yield tally
    finally:
        for handle in handles:
            handle.remove()


def _inside(module: nn.Module, recurrent: nn.Module) -> bool:
    return any(module is child for child in recurrent.modules())


@torch.no_grad()
def multiply_adds(model: nn.Module, inputs: Any) -> tuple[int, list[str]]:
    """Multiply-adds of one run of ``model`` on ``inputs``, and the modules with weights that were not counted."""
    with counting(model) as tally:
        call_model(model, inputs)
    return tally.multiply_adds, list(tally.not_counted)
