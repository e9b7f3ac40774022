"""Putting a training run together: recipe ← settings file ← settings, the corpus, the model, the spec, the hooks.

``train`` and ``finetune`` differ only in where the run starts (:class:`Start`: a fresh model
of a preset, or a checkpoint) and in their weight masks (SET, or the parent's masks and
magnitude pruning); everything else — settings, size targets, corpus, spec, the λ
controller, provenance — is assembled here once for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from isscli.api.common import as_checkpoint, input_paths, model_overrides, output_path, resolve_spec
from isscli.api.corpora import TRAINING_SPLITS, check_vocabulary, load_task, vocabulary_choice
from isscli.api.user_models import EXAMPLE_ROWS, ExampleInput, model_spec, user_source
from isscli.data.tensors import TensorData, is_tensor_file, load_tensor_data
from isscli.io.checkpoint import Checkpoint
from isscli.io.errors import IsscliError
from isscli.io.parsing import parse_count, parse_list
from isscli.io.provenance import plain
from isscli.learn import distributed
from isscli.learn.controller import ControllerSettings, IssController
from isscli.learn.controller.targets import (
    check_layout,
    check_targets,
    sized_config,
    sizes_for_parameters,
    sizes_for_speedup,
    speedup_meter,
    targets_from_sizes,
    units_of,
)
from isscli.learn.loop import RunPaths, TrainingHook, TrainingRun, prepare_outputs
from isscli.learn.mask_hooks import check_schedule, check_set_options, finetune_hook, set_hook
from isscli.learn.recipes import PAPER_THRESHOLD, RECIPES, TENSOR_RECIPE, TrainSettings, read_settings_file, recipe
from isscli.learn.state import load_run_state
from isscli.learn.tasks import TensorTask
from isscli.live.budget import compacted_parameters, sizes_for_budget
from isscli.live.usermodel import ModelSource, load_user_model
from isscli.models import PRESETS, build_model, load_model, model_tensors, preset_config
from isscli.models.config import ModelConfig
from isscli.models.registry import architecture_assumption, resolve_config
from isscli.observer import Observer

if TYPE_CHECKING:
    from isscli.api.runs import FinetuneRequest, RunRequest, TrainRequest

TARGETS = ("target_hidden", "target_params", "target_speedup")


# -- settings ---------------------------------------------------------------------------------


def given_target(request: RunRequest) -> str | None:
    """The one size target of the request (its parameter name), or None; more than one is an error."""
    given = [name for name in TARGETS if getattr(request, name) is not None]
    if len(given) > 1:
        raise IsscliError(f"give one target, not {' and '.join(f'`{name}`' for name in given)}",
                          "choose `target_hidden`, `target_params` or `target_speedup`")
    if not given and (request.prune_epochs is not None or request.recover_epochs is not None):
        raise IsscliError("`prune_epochs` and `recover_epochs` belong to a target run",
                          "add `target_hidden`, `target_params` or `target_speedup`, or drop them")
    if given == ["target_params"]:  # a malformed number is refused before any corpus is looked for
        parse_count(request.target_params, "target_params")
    elif given == ["target_hidden"]:
        parse_list(request.target_hidden, int, "target_hidden", "unit counts, one per ISS set", "400,350")
    return given[0] if given else None


def run_settings(base: TrainSettings, request: RunRequest) -> tuple[TrainSettings, int, int]:
    """The recipe, then the settings file, then ``request.settings``; with a target, its two phases.

    A target run lasts ``prune_epochs + recover_epochs`` (default: the recipe's epochs, then a
    quarter of them, at least one) and thresholds at the paper's τ even without λ. Returns the
    settings with τ resolved, and the two phases (0, 0 without a target).
    """
    changes = read_settings_file(Path(request.settings_file)) if request.settings_file is not None else {}
    changes.update({key: value for key, value in request.settings.items() if value is not None})
    settings = base.updated(changes)
    if given_target(request) is None:
        return settings.resolved(), 0, 0
    prune = request.prune_epochs if request.prune_epochs is not None else settings.epochs
    recover = request.recover_epochs if request.recover_epochs is not None else max(1, prune // 4)
    if prune < 1 or recover < 1:
        raise IsscliError("`prune_epochs` and `recover_epochs` must be ≥ 1",
                          "the survivors need at least one epoch with λ = 0 after pruning")
    changes = {"epochs": prune + recover}
    if settings.weight_threshold is None:
        changes["weight_threshold"] = PAPER_THRESHOLD
    return settings.updated(changes).resolved(), prune, recover


def recipe_for(config: ModelConfig, name: str | None, observer: Observer) -> tuple[str, TrainSettings]:
    """``preset``, else the recipe whose model has the checkpoint's sizes, else the family's default."""
    if name is not None:
        return name, recipe(name)
    for preset, raw in PRESETS.items():
        if preset in RECIPES and raw["family"] == config.family and raw["hidden_sizes"] == config.hidden_sizes:
            observer.note(f"recipe: {preset!r}, whose model has the checkpoint's sizes (choose with `preset`)")
            return preset, RECIPES[preset]
    fallback = "bilstm-classifier" if config.family == "classifier" else "small"
    observer.note(f"no recipe matches hidden sizes {config.hidden_sizes}: using the {fallback!r} one "
                  "(choose with `preset`)")
    return fallback, RECIPES[fallback]


# -- where the run starts ---------------------------------------------------------------------


@dataclass
class Start:
    """What differs between ``train`` and ``finetune``."""

    operation: str
    recipe_name: str
    recipe: TrainSettings
    family: str
    parent: Checkpoint | None
    config: ModelConfig | None  # the checkpoint's (finetune); a fresh model's comes with the corpus
    build: Callable[[dict[str, Any]], nn.Module]  # the model, given the corpus description (after seeding)
    source: ModelSource | None = None  # the user's own class (``model``): it learns from tensor data


def start_of(request: RunRequest, observer: Observer) -> Start:
    from isscli.api.runs import FinetuneRequest

    if isinstance(request, FinetuneRequest):
        return _finetune_start(request, observer)
    return _train_start(request)  # type: ignore[arg-type]


def _overrides(request: RunRequest) -> dict[str, Any]:
    overrides = model_overrides(request.config) or {}
    if request.dropout is not None:
        overrides["dropout"] = request.dropout
    return overrides


def _train_start(request: TrainRequest) -> Start:
    if request.preset is None:
        raise IsscliError("training from scratch needs a `preset`", f"choose one of {', '.join(RECIPES)}")
    raw = {**preset_config(request.preset), **_overrides(request)}

    def build(data: dict[str, Any]) -> nn.Module:
        sized = {**raw, "vocab_size": data["vocabulary_size"]}
        if raw.get("family") == "classifier":
            sized["num_classes"] = data["num_classes"]
        return build_model(sized)

    return Start("train", request.preset, recipe(request.preset), raw.get("family", "lm"), None, None, build)


def _finetune_start(request: FinetuneRequest, observer: Observer) -> Start:
    source = user_source(request, observer)
    if source is not None:
        return _user_model_start(request, source)
    if request.objective is not None or request.split_rule is not None:
        raise IsscliError("`objective` and `split_rule` describe tensor data, which the user's own model reads",
                          "give `model`=file.py:Class (and `data`=FILE.safetensors|.npz), or drop them")
    loaded = as_checkpoint(request.checkpoint)
    overrides = _overrides(request)
    config, _ = resolve_config(loaded, request.arch, overrides)
    name, base = recipe_for(config, request.preset, observer)

    def build(data: dict[str, Any]) -> nn.Module:
        check_vocabulary(config, data, loaded.provenance)
        return load_model(loaded, request.arch, overrides)

    return Start("finetune", name, base, config.family, loaded, config, build)


def _user_model_start(request: FinetuneRequest, source: ModelSource) -> Start:
    """The user's class holding the checkpoint, on tensor data, with the ``tensor-data`` recipe unless ``preset``."""
    if request.data is None or not is_tensor_file(request.data):
        raise IsscliError("`model` learns from tensor data", "give `data`=FILE.safetensors or .npz holding x and y "
                          "(and `objective`=regression|classification|tagging)")
    unused = [name for name in ("vocab", "vocab_order", "max_vocab", "min_count", "magnitude_sparsity")
              if getattr(request, name) is not None]
    if unused:
        raise IsscliError(f"`{unused[0]}` does not apply to `model` on tensor data", f"drop `{unused[0]}`")
    if request.target_speedup is not None:
        raise IsscliError("`target_speedup` measures isscli's own model families, not the one `model` names",
                          "give `target_hidden` or `target_params`")
    loaded = as_checkpoint(request.checkpoint)
    name = request.preset or TENSOR_RECIPE
    return Start("finetune", name, recipe(name), "tensor", loaded, None,
                 lambda _data: load_user_model(source, loaded), source)


def tensor_task(request: RunRequest, settings: TrainSettings, device: torch.device,
                observer: Observer) -> tuple[TensorTask, TensorData]:
    """The run's tensor data as a task, its split rule and call convention said."""
    data = load_tensor_data(Path(str(request.data)), request.objective, request.split_rule)  # type: ignore[attr-defined]
    missing = [split for split in TRAINING_SPLITS if split not in data.splits]
    if missing:
        raise IsscliError(f"{request.data} has no {missing[0]} split ({data.split_rule})",
                          "store train, valid and test, or give plain x and y with a `split_rule`")
    observer.note(f"data: {data.split_rule}; {data.describe()['call']}, objective {data.objective}")
    return TensorTask(data, settings.batch_size, settings.eval_batch_size, settings.seed, device), data


# -- hooks ------------------------------------------------------------------------------------


def mask_hooks(request: RunRequest, start: Start, model: nn.Module, settings: TrainSettings) -> list[TrainingHook]:
    """SET for ``train --method set``; the parent's masks, or magnitude pruning, for ``finetune``."""
    from isscli.api.runs import FinetuneRequest

    if isinstance(request, FinetuneRequest):
        parent = start.parent
        assert parent is not None
        hook = finetune_hook(model, parent.masks, parent.mask_info, request.magnitude_sparsity, request.prune_start,
                             request.prune_end, request.prune_every, settings.epochs)
        return [hook] if hook is not None else []
    if request.method == "set" and request.density is not None:  # type: ignore[attr-defined]
        return [set_hook(model, request.density, request.zeta, settings.seed)]  # type: ignore[attr-defined]
    return []


def check_masks(request: RunRequest, start: Start, settings: TrainSettings) -> None:
    """The unstructured options of the request, checked before any work."""
    from isscli.api.runs import FinetuneRequest

    target = given_target(request)
    if isinstance(request, FinetuneRequest):
        check_schedule(request.magnitude_sparsity, request.prune_start, request.prune_end, request.prune_every,
                       settings.epochs)
        masked = request.magnitude_sparsity is not None or bool(start.parent and start.parent.masks)
        if target and masked:
            raise IsscliError("a size target does not combine with weight masks", "drop the target or the masks")
        return
    check_set_options(request.method, request.density, request.zeta)  # type: ignore[attr-defined]
    if target and request.method == "set":  # type: ignore[attr-defined]
        raise IsscliError("a size target does not combine with `method`=set", "drop one of them")


def controller_hook(
    request: RunRequest, model: nn.Module, spec: Any, settings: TrainSettings, phases: tuple[int, int],
    device: torch.device, paths: RunPaths, observer: Observer,
) -> IssController:
    """Targets per set from the request, checked against the model; told, and the controller to reach them."""
    name = given_target(request)
    assert name is not None
    units = units_of(model, spec)
    current = [units[iss.name] for iss in spec.sets]
    config: ModelConfig | None = getattr(model, "config", None)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    saved = saved_targets(paths.resume) if paths.resume.is_file() and name == "target_speedup" else None
    if saved is not None:  # a resumed speed target is not measured again
        targets, origin = dict(saved["targets"]), dict(saved["origin"])
    elif name == "target_hidden":
        sizes = parse_list(request.target_hidden, int, name, "unit counts, one per ISS set", "400,350")
        targets, origin = targets_from_sizes(spec, sizes, name), {"parameter": name, "value": request.target_hidden}
    elif name == "target_params" and config is None:  # the user's own model: counted from its tensors
        limit = parse_count(request.target_params, name)
        targets, count = sizes_for_budget(spec, shapes, units, limit)
        origin = {"parameter": name, "value": request.target_params, "limit": limit, "parameters": count}
    elif name == "target_params":
        limit = parse_count(request.target_params, name)
        check_layout(config, spec, name)
        sizes, count = sizes_for_parameters(config, limit, current)
        targets = targets_from_sizes(spec, sizes, name)
        origin = {"parameter": name, "value": request.target_params, "limit": limit, "parameters": count}
    else:
        assert config is not None  # refused for the user's own models (_user_model_start)
        check_layout(config, spec, name)
        speedup = float(request.target_speedup or 0)
        if speedup > 1:
            observer.note(f"measuring candidate sizes against the dense model on {device} (random weights) …")
        sizes, measured = sizes_for_speedup(config, speedup, speedup_meter(config, device), current)
        targets = targets_from_sizes(spec, sizes, name)
        origin = {"parameter": name, "value": speedup, "measured_speedup": measured, "device": str(device)}
    check_targets(spec, targets, units, name)
    observer.note(f"targets: {', '.join(f'{n} {units[n]}→{size}' for n, size in targets.items())}"
                  f"{target_detail(config, spec, targets, origin, shapes)}; pruning {phases[0]} epoch(s), "
                  f"then {phases[1]} with λ = 0")
    controller = ControllerSettings(targets, phases[0], phases[1], cap=settings.group_lasso or None, origin=origin)
    return IssController(controller, announce=lambda message, warning: observer.note(message, warning))


def target_detail(config: ModelConfig | None, spec: Any, targets: dict[str, int], origin: dict[str, Any],
                  shapes: dict[str, tuple[int, ...]]) -> str:
    if "parameters" in origin:
        return f" ({origin['parameters']:,} parameters after compaction, budget {origin['limit']:,})"
    if "measured_speedup" in origin:
        return f" (measured here: {origin['measured_speedup']:.2f}× faster than the dense model)"
    if config is None:
        return f" ({compacted_parameters(spec, shapes, targets):,} parameters after compaction)"
    from isscli.iss.accounting import parameter_count

    try:
        check_layout(config, spec, "target_hidden")
    except IsscliError:
        return ""
    return f" ({parameter_count(sized_config(config, [targets[iss.name] for iss in spec.sets])):,} parameters " \
           "after compaction)"


def saved_targets(resume_path: Path) -> dict[str, Any] | None:
    """The controller settings of an interrupted run (so a resumed speed target is not re-measured)."""
    if not resume_path.is_file():
        return None
    return load_run_state(resume_path).info.get("hooks", {}).get("controller", {}).get("settings")


# -- the run ----------------------------------------------------------------------------------


def assemble(request: RunRequest, observer: Observer, device: torch.device) -> tuple[TrainingRun, bool]:
    """Check everything, then build the :class:`TrainingRun` of a ``train`` or ``finetune`` request, and whether it
    continues an interrupted run (``resume``, or torchrun restarting the group after a failure)."""
    target = given_target(request)
    start = start_of(request, observer)
    if start.parent is not None:
        output = output_path(request.output, request.checkpoint, "iss")  # type: ignore[attr-defined]
    elif request.output is not None:
        output = Path(request.output)
    else:
        raise IsscliError("training needs an `output` checkpoint", "give e.g. `output`=model.safetensors")
    paths = RunPaths(output)
    resume = request.resume or (distributed.restarted() and paths.resume.is_file())
    prepare_outputs(paths, input_paths(start.parent), request.force and not resume, resume)
    settings, *phases = run_settings(start.recipe, request)
    check_masks(request, start, settings)
    if start.operation == "finetune" and settings.group_lasso == 0 and settings.l1 == 0 and target is None:
        if request.magnitude_sparsity is None and not start.parent.masks:  # type: ignore[attr-defined, union-attr]
            observer.note("no `group_lasso` or `l1`: this fine-tunes without learning ISS")
    if start.source is not None:
        task, tensors = tensor_task(request, settings, device, observer)
        data, words = tensors.describe(), None
    else:
        choice = vocabulary_choice(request.vocab, request.vocab_order, request.max_vocab, request.min_count,
                                   start.parent, observer)
        task, data, words = load_task(start.family, request.data, settings, device, observer, choice,
                                      allow_unknown=request.allow_unknown)
    torch.manual_seed(settings.seed)
    model = start.build(data).to(device)
    if start.source is not None:  # the groups from the user's forward, on the first rows of the training data
        example = ExampleInput(tensors.example_input(EXAMPLE_ROWS, device), "the first training rows")
        spec = model_spec(model, example, request.spec, request.renames)
    else:
        spec = resolve_spec(Checkpoint(model_tensors(model), path=start.parent and start.parent.path), request.spec,
                            request.renames)
    hooks = mask_hooks(request, start, model, settings)
    if target is not None:
        hooks.append(controller_hook(request, model, spec, settings, (phases[0], phases[1]), device, paths, observer))
    parameters = {**plain(request), "recipe": start.recipe_name, "settings": settings.to_dict(), "data": data,
                  "spec": spec.to_json()}
    assumption = None if start.parent is None or start.source is not None else \
        architecture_assumption(start.parent, request.arch, _overrides(request))  # type: ignore[attr-defined]
    if assumption is not None:  # said, and recorded in every checkpoint of the run
        observer.note(f"assumed: {assumption}", True)
        parameters["assumed"] = assumption
    for dropped in ("settings_file", "force", "resume", "stop_after"):
        parameters.pop(dropped, None)
    run = TrainingRun(start.operation, model, task, settings, spec, paths, device, start.parent, parameters, hooks,
                      words, start.source)
    return run, resume


def planned_epochs(request: RunRequest, observer: Observer) -> int:
    """How many epochs the request would train (its recipe, settings and target), without loading any data."""
    start = start_of(request, observer)
    return run_settings(start.recipe, request)[0].epochs
