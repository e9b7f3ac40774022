"""The user's model as isscli's tracing sees it: its recurrent modules, their layer-directions, and a way to call it.

A *member* is one layer-direction of one recurrent module (``encoder.l1_reverse``); an ISS set spans one member,
or several whose state is handed from one to the next. :class:`TracedModel` holds the probing copy of the
model (every ``nn.LSTM/GRU/RNN`` swapped for the equivalent :mod:`isscli.nn` module, tied weights untied so
that each use has its own gradient) on which :mod:`isscli.live.probe` and :mod:`isscli.live.trace` work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias, Union

from torch import Tensor, nn

from isscli import nn as drop_in
from isscli.io.errors import IsscliError
from isscli.iss.spec.schema import TensorSlice

#: The :mod:`isscli.nn` modules: what tracing probes, and what a compacted recurrent module becomes.
DropIn: TypeAlias = Union[drop_in.LSTM, drop_in.GRU, drop_in.RNN]
DROP_INS = (drop_in.LSTM, drop_in.GRU, drop_in.RNN)
#: A recurrent module isscli shrinks: torch's own (without projections) or an :mod:`isscli.nn` one.
Recurrent: TypeAlias = Union[nn.RNNBase, DropIn]


@dataclass(frozen=True, order=True)
class Member:
    """One layer-direction of one recurrent module (``module`` is its qualified name in the model)."""

    module: str
    layer: int
    direction: int

    def tensor(self, kind: str) -> str:
        """The parameter's name in the model, as ``nn.LSTM`` names it: ``lstm.weight_hh_l1_reverse``."""
        prefix = f"{self.module}." if self.module else ""
        return f"{prefix}{kind}_l{self.layer}{'_reverse' if self.direction else ''}"

    @property
    def label(self) -> str:
        return f"{self.module or 'rnn'}.l{self.layer}{'_reverse' if self.direction else ''}"


@dataclass
class TracedModel:
    """What tracing found: the probing copy and, per ISS set, the layer-directions it spans."""

    copy: nn.Module
    recurrent: dict[str, DropIn]
    sets: list[list[Member]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # untied copy's name → the model's (tied) name
    dims: dict[str, list[int]] = field(default_factory=dict)  # the dims of each parameter that may receive units

    def canonical(self, piece: TensorSlice) -> TensorSlice:
        """The slice under the model's own parameter name."""
        return dataclasses.replace(piece, tensor=self.aliases.get(piece.tensor, piece.tensor))

    def copies(self, name: str) -> list[str]:
        """The names a model parameter has in the untied copy."""
        return [name, *(alias for alias, target in self.aliases.items() if target == name)]


# -- calling the user's model ----------------------------------------------------------------------------------


def call_model(model: nn.Module, example_input: Any) -> Any:
    """``model(*x)`` for a tuple, ``model(**x)`` for a dict, else ``model(x)``."""
    if isinstance(example_input, tuple):
        return model(*example_input)
    if isinstance(example_input, dict):
        return model(**example_input)
    return model(example_input)


def named_outputs(result: Any, path: str = "output") -> Iterator[tuple[str, Tensor]]:
    """Every floating-point tensor of a model's result with where it sits (``output[1][0]``)."""
    if isinstance(result, Tensor):
        if result.is_floating_point():
            yield path, result
    elif isinstance(result, nn.utils.rnn.PackedSequence):
        yield from named_outputs(result.data, f"{path}.data")
    elif isinstance(result, dict):
        for key, value in result.items():
            yield from named_outputs(value, f"{path}[{key!r}]")
    elif isinstance(result, (tuple, list)):
        for index, value in enumerate(result):
            yield from named_outputs(value, f"{path}[{index}]")


def output_tensors(result: Any) -> list[Tensor]:
    """Every floating-point tensor in a model's result (nested tuples, lists, dicts, packed sequences)."""
    return [tensor for _, tensor in named_outputs(result)]


def recurrent_modules(model: nn.Module) -> dict[str, Recurrent]:
    """Every ``nn.LSTM/GRU/RNN`` (or :mod:`isscli.nn` module) by qualified name; cells and projections refused."""
    found: dict[str, Recurrent] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.RNNCellBase):
            raise IsscliError(
                f"`{name}` is an {type(module).__name__}: isscli shrinks whole recurrent layers "
                "(nn.LSTM/GRU/RNN or isscli.nn.LSTM/GRU/RNN), not a loop over a cell",
                "run the sequence through an nn.LSTM/GRU/RNN, or write a group spec by hand")
        if isinstance(module, nn.LSTM) and module.proj_size:
            raise IsscliError(f"`{name}` is an nn.LSTM with proj_size={module.proj_size}: LSTMs with projections "
                              "are not supported", "use proj_size=0, or write a group spec by hand")
        if isinstance(module, (nn.RNNBase, *DROP_INS)):
            found[name] = module
    if not found:
        raise IsscliError("the model has no nn.LSTM, nn.GRU or nn.RNN module",
                          "isscli learns ISS in recurrent layers; check that you passed the right model")
    return found


def parameter_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The tensors a spec names: ``named_parameters`` (a tied weight once, under its first name), detached."""
    return {name: parameter.detach() for name, parameter in model.named_parameters()}


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` is (inside Sequential/ModuleList too)."""
    parent_name, _, attribute = name.rpartition(".")
    if not name:
        raise IsscliError("the model is itself a recurrent module", "wrap it in an nn.Module with a head")
    setattr(root.get_submodule(parent_name) if parent_name else root, attribute, new)


def drop_in_kind(module: nn.Module) -> type[DropIn]:
    """The :mod:`isscli.nn` class of an ``nn.LSTM/GRU/RNN`` (or of an :mod:`isscli.nn` module)."""
    kind: type[DropIn]
    for torch_kind, kind in ((nn.LSTM, drop_in.LSTM), (nn.GRU, drop_in.GRU), (nn.RNN, drop_in.RNN)):
        if isinstance(module, (torch_kind, kind)):
            return kind
    raise TypeError(f"not a recurrent module: {type(module).__name__}")


def as_drop_in(module: nn.Module) -> DropIn:
    """The equivalent :mod:`isscli.nn` module (weights copied)."""
    return drop_in_kind(module).from_module(module)


def layer_sizes(module: Recurrent) -> list[list[int]]:
    """Units per layer and direction of an ``nn.LSTM/GRU/RNN`` or :mod:`isscli.nn` module."""
    if isinstance(module, DROP_INS):
        return [list(sizes) for sizes in module.hidden_sizes]
    return [[module.hidden_size] * (2 if module.bidirectional else 1) for _ in range(module.num_layers)]


def tied_names(model: nn.Module) -> dict[str, str]:
    """Every second name of a shared parameter → the name ``named_parameters`` gives it."""
    first: dict[int, str] = {}
    aliases = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in first:
            aliases[name] = first[id(parameter)]
        else:
            first[id(parameter)] = name
    return aliases


def untie(model: nn.Module) -> dict[str, str]:
    """Give every second holder of a shared parameter (a decoder tied to an embedding) its own copy, so that each
    use has its own gradient; returns copy name → the name ``named_parameters`` gives the shared one."""
    aliases = tied_names(model)
    for alias in aliases:
        owner, _, attribute = alias.rpartition(".")
        module = model.get_submodule(owner)
        setattr(module, attribute, nn.Parameter(getattr(module, attribute).detach().clone()))
    return aliases


def members(name: str, module: Recurrent) -> list[Member]:
    return [Member(name, layer, direction) for layer, sizes in enumerate(layer_sizes(module))
            for direction in range(len(sizes))]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout) meanwhile, its own mode back after, an error or not."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
