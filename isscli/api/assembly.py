"""Putting a training run together: recipe ← settings file ← settings, the corpus, the model, the spec, the hooks.

``train`` and ``finetune`` differ only in where the run starts (:class:`Start`: a fresh model
of a preset, or a checkpoint), in their weight masks (SET, or the parent's masks and
magnitude pruning) and in their output's default name; :func:`start_of` tells the two apart,
once, and everything else — settings, size targets, corpus, spec, the λ controller,
provenance — is assembled here once for both.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from isscli.api.common import input_paths, resolve_spec
from isscli.api.run_requests import RunRequest
from isscli.api.starts import start_of
from isscli.api.user_models import model_spec
from isscli.io.errors import IsscliError
from isscli.io.parsing import parse_count, parse_list
from isscli.io.provenance import plain
from isscli.iss.spec import GroupSpec
from isscli.learn import distributed
from isscli.learn.controller import ControllerSettings, IssController
from isscli.learn.controller.targets import (
    TargetOrigin,
    check_layout,
    check_targets,
    one_target,
    sized_config,
    sizes_for_parameters,
    sizes_for_speedup,
    speedup_meter,
    targets_from_sizes,
    units_of,
)
from isscli.learn.recipes import TrainSettings, read_settings_file, target_run
from isscli.learn.run import RunPaths, TrainingRun, prepare_outputs
from isscli.learn.your_loop.budget import compacted_parameters, sizes_for_budget
from isscli.models.checkpoint import Checkpoint
from isscli.models.config import ModelConfig
from isscli.models.registry import config_of, model_tensors
from isscli.observer import Observer

# -- settings ---------------------------------------------------------------------------------


def given_target(request: RunRequest) -> str | None:
    """The one size target of the request (its parameter name), or None (:func:`~isscli.learn.controller.targets.
    one_target`)."""
    return one_target(request.target_hidden, request.target_params, request.target_speedup, request.prune_epochs,
                      request.recover_epochs)


def run_settings(base: TrainSettings, request: RunRequest) -> tuple[TrainSettings, int, int]:
    """The recipe, then the settings file, then ``request.settings``, with τ resolved; with a target, its two phases
    (:func:`~isscli.learn.recipes.target_run`; 0, 0 without)."""
    changes = read_settings_file(Path(request.settings_file)) if request.settings_file is not None else {}
    changes.update({key: value for key, value in request.settings.items() if value is not None})
    settings = base.updated(changes)
    if given_target(request) is None:
        return settings.resolved(), 0, 0
    return target_run(settings, request.prune_epochs, request.recover_epochs)


# -- the size target --------------------------------------------------------------------------


def controller_hook(
    request: RunRequest, model: nn.Module, spec: GroupSpec, settings: TrainSettings, phases: tuple[int, int],
    device: torch.device, paths: RunPaths, observer: Observer,
) -> IssController:
    """Targets per set from the request, checked against the model; told, and the controller to reach them."""
    name = given_target(request)
    assert name is not None
    units = units_of(model, spec)
    config = config_of(model)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    saved = ControllerSettings.saved_in(paths.resume) if name == "target_speedup" else None
    if saved is not None:  # a resumed speed target is not measured again
        assert saved.origin is not None  # a run with a target records where it came from
        targets, origin = dict(saved.targets), saved.origin
    else:
        targets, origin = sized_targets(request, name, spec, units, config, shapes, device, observer)
    check_targets(spec, targets, units, name)
    observer.note(f"targets: {', '.join(f'{n} {units[n]}→{size}' for n, size in targets.items())}"
                  f"{target_detail(config, spec, targets, origin, shapes)}; pruning {phases[0]} epoch(s), "
                  f"then {phases[1]} with λ = 0")
    controller = ControllerSettings(targets, phases[0], phases[1], cap=settings.group_lasso or None,
                                    origin=origin)
    return IssController(controller, announce=lambda message, warning: observer.note(message, warning))


def sized_targets(
    request: RunRequest, name: str, spec: GroupSpec, units: dict[str, int], config: ModelConfig | None,
    shapes: dict[str, tuple[int, ...]], device: torch.device, observer: Observer,
) -> tuple[dict[str, int], TargetOrigin]:
    """Units per set for the request's target ``name``, and where they came from."""
    current = [units[iss.name] for iss in spec.sets]
    if request.target_hidden is not None:
        sizes = parse_list(request.target_hidden, int, name, "unit counts, one per ISS set", "400,350")
        return targets_from_sizes(spec, sizes, name), TargetOrigin(name, request.target_hidden)
    if request.target_params is not None:
        limit = parse_count(request.target_params, name)
        if config is None:  # the user's own model: counted from its tensors
            targets, count = sizes_for_budget(spec, shapes, units, limit)
            return targets, TargetOrigin(name, request.target_params, limit, count)
        check_layout(config, spec, name)
        sizes, count = sizes_for_parameters(config, limit, current)
        return targets_from_sizes(spec, sizes, name), TargetOrigin(name, request.target_params, limit, count)
    assert config is not None  # refused for the user's own models (_user_model_start)
    check_layout(config, spec, name)
    speedup = float(request.target_speedup or 0)
    if speedup > 1:
        observer.note(f"measuring candidate sizes against the dense model on {device} (random weights) …")
    sizes, measured = sizes_for_speedup(config, speedup, speedup_meter(config, device), current)
    return targets_from_sizes(spec, sizes, name), TargetOrigin(name, speedup, measured_speedup=measured,
                                                                device=str(device))


def target_detail(config: ModelConfig | None, spec: GroupSpec, targets: dict[str, int], origin: TargetOrigin,
                  shapes: dict[str, tuple[int, ...]]) -> str:
    if origin.parameters is not None and origin.limit is not None:
        return f" ({origin.parameters:,} parameters after compaction, budget {origin.limit:,})"
    if origin.measured_speedup is not None:
        return f" (measured here: {origin.measured_speedup:.2f}× faster than the dense model)"
    if config is None:
        return f" ({compacted_parameters(spec, shapes, targets):,} parameters after compaction)"
    from isscli.iss.accounting import parameter_count

    try:
        check_layout(config, spec, "target_hidden")
    except IsscliError:
        return ""
    return f" ({parameter_count(sized_config(config, [targets[iss.name] for iss in spec.sets])):,} parameters " \
           "after compaction)"


# -- the run ----------------------------------------------------------------------------------


def assemble(request: RunRequest, observer: Observer, device: torch.device) -> tuple[TrainingRun, bool]:
    """Check everything, then build the :class:`TrainingRun` of a ``train`` or ``finetune`` request, and whether it
    continues an interrupted run (``resume``, or torchrun restarting the group after a failure)."""
    target = given_target(request)
    start = start_of(request, observer)
    paths = RunPaths(start.output())
    resume = request.resume or (distributed.restarted() and paths.resume.is_file())
    prepare_outputs(paths, input_paths(start.parent), request.force and not resume, resume)
    settings, *phases = run_settings(start.recipe, request)
    start.check(settings, target, observer)
    data = start.data(settings, device, observer)
    torch.manual_seed(settings.seed)
    model = start.build(data.corpus).to(device)
    if data.example is not None:  # the groups from the user's forward, on the first rows of the training data
        spec = model_spec(model, data.example, request.spec, request.renames)
    else:
        parent_path = None if start.parent is None else start.parent.path
        spec = resolve_spec(Checkpoint(model_tensors(model), path=parent_path), request.spec, request.renames)
    hooks = start.mask_hooks(model, settings)
    if target is not None:
        hooks.append(controller_hook(request, model, spec, settings, (phases[0], phases[1]), device, paths, observer))
    parameters = {**plain(request), "recipe": start.recipe_name, "settings": settings.to_dict(),
                  "data": data.corpus.to_json(), "spec": spec.to_json()}
    assumption = start.assumption()
    if assumption is not None:  # said, and recorded in every checkpoint of the run
        observer.note(f"assumed: {assumption}", True)
        parameters["assumed"] = assumption
    for dropped in ("settings_file", "force", "resume", "stop_after"):
        parameters.pop(dropped, None)
    run = TrainingRun(start.operation, model, data.task, settings, spec, paths, device, start.parent, parameters,
                      hooks, data.words, start.source, data.corpus, start.recipe_name)
    return run, resume


def planned_epochs(request: RunRequest, observer: Observer) -> int:
    """How many epochs the request would train (its recipe, settings and target), without loading any data."""
    start = start_of(request, observer)
    return run_settings(start.recipe, request)[0].epochs
