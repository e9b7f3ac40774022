"""Putting a training run together: recipe ← settings file ← settings, the corpus, the model, the spec, the hooks.

``train`` and ``finetune`` differ only in where the run starts (:class:`Start`: a fresh model
of a preset, or a checkpoint), in their weight masks (SET, or the parent's masks and
magnitude pruning) and in their output's default name; :func:`start_of` tells the two apart,
once, and everything else — settings, size targets, corpus, spec, the λ controller,
provenance — is assembled here once for both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from isscli.api.common import as_checkpoint, input_paths, model_overrides, output_path, resolve_spec
from isscli.api.corpora import TRAINING_SPLITS, check_vocabulary, load_task, vocabulary_choice
from isscli.api.user_models import EXAMPLE_ROWS, ExampleInput, model_spec, user_source
from isscli.data.tensors import is_tensor_file, load_tensor_data
from isscli.io.checkpoint import Checkpoint
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
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
from isscli.learn.corpus import CorpusSummary
from isscli.learn.evaluation import Task
from isscli.learn.loop import RunPaths, TrainingHook, TrainingRun, prepare_outputs
from isscli.learn.mask_hooks import check_schedule, check_set_options, finetune_hook, set_hook
from isscli.learn.recipes import TENSOR_RECIPE, TrainSettings, read_settings_file, recipe, recipe_for, target_run
from isscli.learn.run import Operation
from isscli.learn.tensor_task import TensorTask
from isscli.learn.your_loop.budget import compacted_parameters, sizes_for_budget
from isscli.live.usermodel import ModelSource, load_user_model
from isscli.models.config import ModelConfig
from isscli.models.presets import preset_config
from isscli.models.registry import architecture_assumption, build_model, load_model, model_tensors, resolve_config
from isscli.observer import Observer

if TYPE_CHECKING:
    from isscli.api.runs import FinetuneRequest, RunRequest, TrainRequest

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


# -- where the run starts ---------------------------------------------------------------------


@dataclass
class RunData:
    """What the run reads: its task, the data's summary, the word of each embedding row (isscli's families) and,
    for the user's own model, the rows its groups are traced on."""

    task: Task
    corpus: CorpusSummary
    words: list[str] | None = None
    example: ExampleInput | None = None


@dataclass(kw_only=True)
class Start(ABC):
    """Where a run starts, and all else that differs between ``train`` and ``finetune``: :func:`start_of` decides
    which, once; the assembly asks the start."""

    operation: ClassVar[Operation]
    request: RunRequest
    recipe_name: str
    recipe: TrainSettings
    family: str
    parent: Checkpoint | None = None
    source: ModelSource | None = None  # the user's own class (``model``): it learns from tensor data

    @abstractmethod
    def output(self) -> Path:
        """OUT: the checkpoint the run writes (its log and resume state go beside it)."""

    @abstractmethod
    def check(self, settings: TrainSettings, target: str | None, observer: Observer) -> None:
        """The request's options of this kind of run, checked before any work."""

    @abstractmethod
    def build(self, corpus: CorpusSummary) -> nn.Module:
        """The model, for the data read (called after seeding)."""

    @abstractmethod
    def mask_hooks(self, model: nn.Module, settings: TrainSettings) -> list[TrainingHook]:
        """The weight masks of the run (none, SET, the parent's, magnitude pruning)."""

    def data(self, settings: TrainSettings, device: torch.device, observer: Observer) -> RunData:
        """The corpus, its words numbered as :func:`~isscli.api.corpora.vocabulary_choice` says."""
        request = self.request
        choice = vocabulary_choice(request.vocab, request.vocab_order, request.max_vocab, request.min_count,
                                   self.parent, observer)
        task, corpus, words = load_task(self.family, request.data, settings, device, observer, choice,
                                        allow_unknown=request.allow_unknown)
        return RunData(task, corpus, words)

    def assumption(self) -> str | None:
        """What is assumed of a checkpoint without a config (said, and recorded in every checkpoint of the run)."""
        return None


@dataclass(kw_only=True)
class TrainStart(Start):
    """A fresh model of ``preset`` (``raw``: its config fields); SET masks with ``method``=set."""

    operation: ClassVar[Operation] = "train"
    request: TrainRequest
    raw: JSONObject

    @classmethod
    def of(cls, request: TrainRequest) -> TrainStart:
        raw = {**preset_config(request.preset), **overrides_of(request)}
        return cls(request=request, recipe_name=request.preset, recipe=recipe(request.preset),
                   family=raw.get("family", "lm"), raw=raw)

    def output(self) -> Path:
        return Path(self.request.output)

    def check(self, settings: TrainSettings, target: str | None, observer: Observer) -> None:
        check_set_options(self.request.method, self.request.density, self.request.zeta, target)

    def build(self, corpus: CorpusSummary) -> nn.Module:
        sized = {**self.raw, "vocab_size": corpus.vocabulary_size}
        if self.family == "classifier":
            sized["num_classes"] = corpus.num_classes
        return build_model(sized)

    def mask_hooks(self, model: nn.Module, settings: TrainSettings) -> list[TrainingHook]:
        request = self.request
        if request.method == "set" and request.density is not None:
            return [set_hook(model, request.density, request.zeta, settings.seed)]
        return []


@dataclass(kw_only=True)
class FinetuneStart(Start):
    """A checkpoint, left as it is (``config``: as it runs, with ``overrides``); its masks are kept, or magnitude
    pruning makes them."""

    operation: ClassVar[Operation] = "finetune"
    request: FinetuneRequest
    parent: Checkpoint
    config: ModelConfig | None = None
    overrides: JSONObject | None = None

    @classmethod
    def of(cls, request: FinetuneRequest, observer: Observer) -> FinetuneStart:
        source = user_source(request, observer)
        if source is not None:
            return UserModelStart.of_model(request, source)
        if request.objective is not None or request.split_rule is not None:
            raise IsscliError("`objective` and `split_rule` describe tensor data, which the user's own model reads",
                              "give `model`=file.py:Class (and `data`=FILE.safetensors|.npz), or drop them")
        loaded = as_checkpoint(request.checkpoint)
        overrides = overrides_of(request)
        config, _ = resolve_config(loaded, request.arch, overrides)
        name, base = recipe_for(config, request.preset, observer)
        return cls(request=request, recipe_name=name, recipe=base, family=config.family, parent=loaded,
                   config=config, overrides=overrides)

    def output(self) -> Path:
        return output_path(self.request.output, self.request.checkpoint, "iss")

    def check(self, settings: TrainSettings, target: str | None, observer: Observer) -> None:
        request, masks = self.request, self.parent.masks
        check_schedule(request.magnitude_sparsity, request.prune_start, request.prune_end, request.prune_every,
                       settings.epochs)
        if target and (request.magnitude_sparsity is not None or masks):
            raise IsscliError("a size target does not combine with weight masks", "drop the target or the masks")
        if settings.group_lasso == 0 and settings.l1 == 0 and target is None and request.magnitude_sparsity is None \
                and not masks:
            observer.note("no `group_lasso` or `l1`: this fine-tunes without learning ISS")

    def build(self, corpus: CorpusSummary) -> nn.Module:
        assert self.config is not None
        check_vocabulary(self.config, corpus, self.parent.provenance)
        return load_model(self.parent, self.request.arch, self.overrides)

    def mask_hooks(self, model: nn.Module, settings: TrainSettings) -> list[TrainingHook]:
        request, parent = self.request, self.parent
        hook = finetune_hook(model, parent.masks, parent.mask_info, request.magnitude_sparsity, request.prune_start,
                             request.prune_end, request.prune_every, settings.epochs)
        return [hook] if hook is not None else []

    def assumption(self) -> str | None:
        return architecture_assumption(self.parent, self.request.arch, self.overrides)


@dataclass(kw_only=True)
class UserModelStart(FinetuneStart):
    """The user's class (``model``) holding the checkpoint, on tensor data."""

    source: ModelSource

    @classmethod
    def of_model(cls, request: FinetuneRequest, source: ModelSource) -> UserModelStart:
        """With the ``tensor-data`` recipe unless ``preset``; options of isscli's own families refused."""
        if request.data is None or not is_tensor_file(request.data):
            raise IsscliError("`model` learns from tensor data", "give `data`=FILE.safetensors or .npz holding x "
                              "and y (and `objective`=regression|classification|tagging)")
        unused = [name for name in ("vocab", "vocab_order", "max_vocab", "min_count", "magnitude_sparsity")
                  if getattr(request, name) is not None]
        if unused:
            raise IsscliError(f"`{unused[0]}` does not apply to `model` on tensor data", f"drop `{unused[0]}`")
        if request.target_speedup is not None:
            raise IsscliError("`target_speedup` measures isscli's own model families, not the one `model` names",
                              "give `target_hidden` or `target_params`")
        name = request.preset or TENSOR_RECIPE
        return cls(request=request, recipe_name=name, recipe=recipe(name), family="tensor",
                   parent=as_checkpoint(request.checkpoint), source=source)

    def data(self, settings: TrainSettings, device: torch.device, observer: Observer) -> RunData:
        """The tensor data as a task, its split rule and call convention said; its first rows trace the groups."""
        request = self.request
        data = load_tensor_data(Path(str(request.data)), request.objective, request.split_rule)
        missing = [split for split in TRAINING_SPLITS if split not in data.splits]
        if missing:
            raise IsscliError(f"{request.data} has no {missing[0]} split ({data.split_rule})",
                              "store train, valid and test, or give plain x and y with a `split_rule`")
        observer.note(f"data: {data.split_rule}; {data.describe()['call']}, objective {data.objective}")
        task = TensorTask(data, settings.batch_size, settings.eval_batch_size, settings.seed, device)
        example = ExampleInput(data.example_input(EXAMPLE_ROWS, device), "the first training rows")
        return RunData(task, CorpusSummary.of_tensors(data), example=example)

    def build(self, corpus: CorpusSummary) -> nn.Module:
        return load_user_model(self.source, self.parent)

    def assumption(self) -> str | None:
        return None


def start_of(request: RunRequest, observer: Observer) -> Start:
    """Where ``request`` starts: the one place that tells a ``finetune`` request from a ``train`` one."""
    from isscli.api.runs import FinetuneRequest, TrainRequest

    if isinstance(request, FinetuneRequest):
        return FinetuneStart.of(request, observer)
    assert isinstance(request, TrainRequest)  # train() and finetune() take their own requests only
    return TrainStart.of(request)


def overrides_of(request: RunRequest) -> JSONObject:
    """The model config fields the request changes (``config``, ``dropout``)."""
    overrides = model_overrides(request.config) or {}
    if request.dropout is not None:
        overrides["dropout"] = request.dropout
    return overrides


# -- the size target --------------------------------------------------------------------------


def controller_hook(
    request: RunRequest, model: nn.Module, spec: GroupSpec, settings: TrainSettings, phases: tuple[int, int],
    device: torch.device, paths: RunPaths, observer: Observer,
) -> IssController:
    """Targets per set from the request, checked against the model; told, and the controller to reach them."""
    name = given_target(request)
    assert name is not None
    units = units_of(model, spec)
    config: ModelConfig | None = getattr(model, "config", None)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    saved = ControllerSettings.saved_in(paths.resume) if name == "target_speedup" else None
    if saved is not None:  # a resumed speed target is not measured again
        targets, origin = dict(saved.targets), TargetOrigin(**saved.origin)
    else:
        targets, origin = sized_targets(request, name, spec, units, config, shapes, device, observer)
    check_targets(spec, targets, units, name)
    observer.note(f"targets: {', '.join(f'{n} {units[n]}→{size}' for n, size in targets.items())}"
                  f"{target_detail(config, spec, targets, origin, shapes)}; pruning {phases[0]} epoch(s), "
                  f"then {phases[1]} with λ = 0")
    controller = ControllerSettings(targets, phases[0], phases[1], cap=settings.group_lasso or None,
                                    origin=origin.to_json())
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
