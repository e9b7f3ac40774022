"""``groups``, ``groups_check`` and ``groups_convert``: the ISS group spec of a model, checked, or converted.

``isscli groups CKPT`` (``groups show``), ``groups check`` and ``groups convert`` are these functions; the
report says, per set, how many components are nonzero and how many are removable, so a spec is seen to fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isscli.api.common import (
    CheckpointSource,
    PathLike,
    SpecSource,
    as_checkpoint,
    checked_output,
    request_inputs,
    resolve_spec,
)
from isscli.api.user_models import ModelChoice, example_input, model_spec, user_source
from isscli.api.validation import Checked, checked_arguments
from isscli.io.atomic import atomic_write_text
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.iss.spec import GroupSpec, TensorSlice, load_spec
from isscli.iss.surgery import alive_components, removable_components
from isscli.live.model import parameter_tensors
from isscli.live.trace import derive_module_spec
from isscli.live.usermodel import load_user_model
from isscli.models.checkpoint import Checkpoint


@dataclass(kw_only=True)
class GroupsRequest(ModelChoice):
    """The ISS groups of ``checkpoint``: derived (from its tensor names, or with ``model`` from its class's forward),
    or — with ``spec`` — that spec, checked against it.

    ``checkpoint`` may also be a ``state_dict`` (the groups read off its names) or a live ``nn.Module``, whose
    forward on ``example_input`` finds each unit's receivers (:func:`isscli.derive_module_spec`)."""

    checkpoint: CheckpointSource | nn.Module | Mapping[str, torch.Tensor]
    example_input: Any = None  # with a live module: what its forward takes (a tensor, a tuple, a dict)
    spec: SpecSource = None  # check this spec instead of deriving one
    renames: Mapping[str, str] = field(default_factory=dict)
    data: PathLike | None = None  # with ``model``: tensor data whose rows the groups are traced on
    output: PathLike | None = None  # write the spec here (native JSON)
    force: bool = False


@dataclass
class GroupSet:
    """One ISS set as it stands in the checkpoint."""

    name: str
    components: int
    group_length: int
    multiplier: float
    alive: int  # components with a nonzero weight
    removable: int  # components whose receivers are all zero: compaction removes them
    tensors: list[str]
    slices: list[TensorSlice]

    def to_json(self) -> JSONObject:
        return {"name": self.name, "components": self.components, "group_length": self.group_length,
                "multiplier": self.multiplier, "alive": self.alive, "removable": self.removable,
                "tensors": self.tensors, "slices": [piece.to_json() for piece in self.slices]}


@dataclass
class GroupsResult:
    spec: GroupSpec
    checkpoint: Path | None  # the file the groups are of (None: in memory)
    sha256: str | None
    sets: list[GroupSet]
    derivation: str | None  # how the spec was found, where a report should say so: traced, or assumed
    output: Path | None = None

    def to_json(self) -> JSONObject:
        return {"checkpoint": None if self.checkpoint is None else str(self.checkpoint), "sha256": self.sha256,
                "sets": [iss.to_json() for iss in self.sets], "derivation": self.derivation}


@dataclass(kw_only=True)
class GroupsConvertRequest(Checked):
    """A spec file (native, or the authors' TensorFlow-era JSON; ``renames`` maps its tensor names) in the native
    format, checked against ``checkpoint`` when one is given, written to ``output`` when one is given."""

    source: PathLike
    output: PathLike | None = None
    renames: Mapping[str, str] = field(default_factory=dict)
    checkpoint: CheckpointSource | None = None
    force: bool = False


@checked_arguments
def groups(request: GroupsRequest) -> GroupsResult:
    """The ISS groups of a model's recurrent layers, with what each set holds now. This is ``isscli groups CKPT``.

    Returns:
        A :class:`GroupsResult`: the :class:`~isscli.GroupSpec` (its tensors named as in the checkpoint, or as in
        ``model.named_parameters()``) and per set its size, nonzero and removable components.

    Example::

        [(s.name, s.alive) for s in isscli.groups(isscli.GroupsRequest(checkpoint="dense.safetensors")).sets]
        isscli.groups(isscli.GroupsRequest(checkpoint=model, example_input=torch.randn(4, 20, 8))).spec
    """
    output = checked_output(request.output, request_inputs(request), request.force)
    checkpoint, spec, derivation = grouped(request)
    shapes = {name: tuple(t.shape) for name, t in checkpoint.tensors.items()}
    sets = [GroupSet(iss.name, iss.components, iss.group_length(shapes), iss.multiplier,
                     int(alive_components(checkpoint.tensors, iss).sum()),
                     int(removable_components(checkpoint.tensors, iss).sum()),
                     sorted({piece.tensor for piece in iss.slices}), list(iss.slices)) for iss in spec.sets]
    if output is not None:
        atomic_write_text(output, spec.dumps())
    return GroupsResult(spec, checkpoint.path, checkpoint.sha256, sets, derivation, output)


@checked_arguments
def groups_check(request: GroupsRequest) -> GroupsResult:
    """:func:`groups` of a given ``spec``: read (native or the authors' format), then checked against the checkpoint
    (names, ranges, overlaps); raises :class:`isscli.SpecError` on the first problem. This is ``isscli groups check``.

    Example::

        isscli.groups_check(isscli.GroupsRequest(checkpoint="dense.safetensors", spec="spec.json")).spec
    """
    if request.spec is None:
        raise IsscliError("there is no `spec` to check", "give `spec`, or derive one with `isscli groups CKPT`")
    return groups(request)


def grouped(request: GroupsRequest) -> tuple[Checkpoint, GroupSpec, str | None]:
    """The tensors the groups are of, the spec (given and checked, or derived), and how it was found."""
    target = request.checkpoint
    if isinstance(target, nn.Module):
        return module_groups(target, request)
    if request.example_input is not None:
        raise IsscliError("`example_input` is only for a live nn.Module", "drop it, or pass the module itself")
    if isinstance(target, Mapping):
        if not all(isinstance(t, torch.Tensor) for t in target.values()):
            raise IsscliError("a state_dict must map names to tensors", "pass model.state_dict()")
        loaded = Checkpoint({name: t.detach() for name, t in target.items()})
    else:
        loaded = as_checkpoint(target)
    source = user_source(request)
    if source is not None:  # the model's own forward finds each unit's receivers
        module = load_user_model(source, loaded)
        example = example_input(request.data, request.input_shape)
        spec = model_spec(module, example, request.spec, request.renames)
        traced = Checkpoint(parameter_tensors(module), path=loaded.path, sha256=loaded.sha256)
        return traced, spec, f"traced from {source.reference}'s forward: {example.description}"
    if request.data is not None or request.input_shape is not None:
        raise IsscliError("`data` and `input_shape` are what `model` runs on", "add `model`=file.py:Class")
    spec = resolve_spec(loaded, request.spec, request.renames)
    return loaded, spec, spec.comment if spec.comment and "assumed" in spec.comment else None


def module_groups(module: nn.Module, request: GroupsRequest) -> tuple[Checkpoint, GroupSpec, str | None]:
    """A live module's groups: found by running its forward on ``example_input``, which names alone cannot replace
    (or the given spec, checked against its parameters)."""
    parameters = Checkpoint(parameter_tensors(module), None)
    if request.spec is not None:
        return parameters, resolve_spec(parameters, request.spec, request.renames), None
    if request.example_input is None:
        raise IsscliError("deriving the groups of a live module needs `example_input`: its receivers are found by "
                          "running its forward", "pass example_input=(a small batch the model takes)")
    return parameters, derive_module_spec(module, request.example_input), None


@checked_arguments
def groups_convert(request: GroupsConvertRequest) -> GroupSpec:
    """A spec in the native format from any spec file, checked against ``checkpoint`` when one is given, written to
    ``output`` (atomically; an existing file only with ``force``) when one is given. This is
    ``isscli groups convert``.

    Example::

        isscli.groups_convert(isscli.GroupsConvertRequest(source="authors.json", output="native.json",
                                                          checkpoint="model.safetensors")).sets[0].name
    """
    output = checked_output(request.output, request_inputs(request), request.force)
    if request.checkpoint is not None:  # the authors' biases, separate tensors, are attached to their sets
        spec = resolve_spec(as_checkpoint(request.checkpoint), request.source, request.renames)
    else:
        spec = load_spec(Path(request.source), dict(request.renames))
    if output is not None:
        atomic_write_text(output, spec.dumps())
    return spec

