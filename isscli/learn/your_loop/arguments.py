"""The arguments of :class:`~isscli.learn.your_loop.loop.IssTraining`, checked before any work, and the targets they
ask for.

They come from the user's own code, so every check names the parameter in a one-line
:class:`~isscli.io.errors.IsscliError` rather than failing somewhere inside the controller.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, SupportsIndex

import torch
from torch import nn

from isscli.io.errors import IsscliError
from isscli.iss.spec import GroupSpec, check_spec
from isscli.learn.controller.targets import TargetOrigin, check_targets, receiver_units, targets_from_sizes
from isscli.learn.your_loop.budget import sizes_for_budget
from isscli.live.model import parameter_tensors
from isscli.live.trace import derive_module_spec

#: ``target_hidden`` as IssTraining takes it: one size for every set, sizes in spec order, or sizes by set name.
TargetHidden = int | Sequence[int] | Mapping[str, int]


def whole(value: object, name: str) -> int:
    """A whole number (not a bool), or a one-line error naming the parameter."""
    if isinstance(value, SupportsIndex) and not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise IsscliError(f"`{name}` must be a whole number (got {value!r})", f"give e.g. `{name}`=10")


def check_number(value: object, name: str) -> None:
    """A finite number ≥ 0 (not a bool), or a one-line error naming the parameter."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise IsscliError(f"`{name}` must be a finite number ≥ 0 (got {value!r})", f"fix `{name}`")


def check_arguments(batches: int | None, target_hidden: TargetHidden | None, target_params: int | None,
                    group_lasso: float | None, tau: float | None, l1: float, prune_epochs: int | None,
                    recover_epochs: int | None, check_every: int | None) -> bool:
    """Everything checkable before the model is looked at; whether a target is given."""
    for name, strength in (("group_lasso", group_lasso), ("tau", tau), ("l1", l1)):
        if strength is not None:
            check_number(strength, name)
    fixes = {"batches_per_epoch": "give `batches_per_epoch`=len(loader)", "check_every": "give e.g. `check_every`=10",
             "prune_epochs": "give e.g. `prune_epochs`=4", "recover_epochs": "the survivors need an epoch with λ = 0"}
    counts = {"batches_per_epoch": batches, "check_every": check_every, "prune_epochs": prune_epochs,
              "recover_epochs": recover_epochs}
    for name, value in counts.items():
        if value is not None and whole(value, name) < 1:
            raise IsscliError(f"`{name}` must be ≥ 1 (got {value})", fixes[name])
    if target_hidden is not None and target_params is not None:
        raise IsscliError("give one target, not `target_hidden` and `target_params`",
                          "choose `target_hidden` or `target_params`")
    if target_hidden is None and target_params is None:
        if prune_epochs is not None or recover_epochs is not None:
            raise IsscliError("`prune_epochs` and `recover_epochs` belong to a target",
                              "add `target_hidden` or `target_params`, or drop them")
        return False
    if batches is None:
        raise IsscliError("a target needs `batches_per_epoch` (the λ schedule runs over the pruning phase's batches)",
                          "pass `batches_per_epoch`=len(loader)")
    if prune_epochs is None:
        raise IsscliError("a target needs `prune_epochs` (the epochs over which the sets shrink)",
                          "give e.g. `prune_epochs`=4")
    return True


def resolve_spec(model: nn.Module, spec: GroupSpec | None, example_input: Any) -> GroupSpec:
    """The given spec, or one derived from ``example_input``; checked against ``model.named_parameters()``."""
    if not isinstance(model, nn.Module):
        raise IsscliError(f"`model` must be an nn.Module (got {type(model).__name__})", "pass the model itself")
    if spec is None:
        if example_input is None:
            raise IsscliError("IssTraining needs `spec` or `example_input`: parameter names alone do not say which "
                              "weights receive each unit", "pass `example_input` (one batch of model input)")
        spec = derive_module_spec(model, example_input)
    tensors = parameter_tensors(model)
    missing = [name for name in spec.tensor_names() if name not in tensors]
    if missing:
        raise IsscliError(f"`spec` names tensor {missing[0]!r}, which `model.named_parameters()` does not have",
                          f"name tensors as the model does (e.g. {next(iter(tensors), 'lstm.weight_ih_l0')!r})")
    check_spec(spec, tensors)
    return spec


def check_optimizer(optimizer: torch.optim.Optimizer, parameters: Mapping[str, torch.Tensor], spec: GroupSpec) -> None:
    """An optimizer that updates every tensor the spec regularizes."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise IsscliError(f"`optimizer` must be a torch.optim.Optimizer (got {type(optimizer).__name__})",
                          "pass the optimizer that updates the model, e.g. torch.optim.Adam(model.parameters())")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    left = [name for name in spec.tensor_names() if id(parameters[name]) not in held]
    if left:
        raise IsscliError(f"`optimizer` does not update {left[0]!r}, which the spec regularizes",
                          "build the optimizer over `model.parameters()`")


def optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    """The step lengths the controller assumes: "adam" for Adam and AdamW, "sgd" for every other optimizer
    (the cautious choice: it only decides which groups are within one step of zero)."""
    return "adam" if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) else "sgd"


def resolve_targets(spec: GroupSpec, parameters: dict[str, torch.Tensor], target_hidden: TargetHidden | None,
                    target_params: int | None) -> tuple[dict[str, int], TargetOrigin]:
    """Units per set to reach, checked against the units the model has now, and the argument they came from (the
    controller records it for reports)."""
    with torch.no_grad():
        units = receiver_units(spec, parameters)
    if target_params is not None:
        shapes = {name: tuple(p.shape) for name, p in parameters.items()}
        limit = whole(target_params, "target_params")
        targets, count = sizes_for_budget(spec, shapes, units, limit)
        origin = TargetOrigin("target_params", limit, limit=limit, parameters=count)
        check_targets(spec, targets, units, "target_params")
        return targets, origin
    assert target_hidden is not None  # check_arguments: a target is given
    targets = targets_of(spec, target_hidden, units)
    check_targets(spec, targets, units, "target_hidden")
    return targets, TargetOrigin("target_hidden", [targets[iss.name] for iss in spec.sets])


def targets_of(spec: GroupSpec, target_hidden: TargetHidden, units: dict[str, int]) -> dict[str, int]:
    """Units per set from an int (every set), a list (spec order) or a dict (a set left out keeps its units)."""
    names = [iss.name for iss in spec.sets]
    if isinstance(target_hidden, Mapping):
        unknown = sorted(set(target_hidden) - set(names))
        if unknown:
            raise IsscliError(f"`target_hidden` names set {unknown[0]!r}, which the spec does not have",
                              f"use the spec's set names: {', '.join(names)}")
        return {name: whole(target_hidden[name], "target_hidden") if name in target_hidden else units[name]
                for name in names}
    if isinstance(target_hidden, Sequence) and not isinstance(target_hidden, str):
        sizes = [whole(size, "target_hidden") for size in target_hidden]
        return targets_from_sizes(spec, sizes, "target_hidden")
    return dict.fromkeys(names, whole(target_hidden, "target_hidden"))
