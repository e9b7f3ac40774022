"""Where a training run starts: a fresh model of a preset (``train``), a checkpoint (``finetune``) or the user's own
model on tensor data. :func:`start_of` tells them apart, once; :mod:`isscli.api.assembly` asks the start for all else
that differs (output name, checks, data, model, weight masks, what is assumed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from isscli.api.common import as_checkpoint, default_output, model_overrides
from isscli.api.corpora import TRAINING_SPLITS, check_vocabulary, load_task, vocabulary_choice
from isscli.api.run_requests import FinetuneRequest, RunRequest, TrainRequest
from isscli.api.user_models import EXAMPLE_ROWS, ExampleInput, user_source
from isscli.data.tensors import is_tensor_file, load_tensor_data
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.learn.corpus import CorpusSummary
from isscli.learn.evaluation import Task
from isscli.learn.mask_hooks import check_schedule, check_set_options, finetune_hook, set_hook
from isscli.learn.recipes import TENSOR_RECIPE, TrainSettings, recipe, recipe_for
from isscli.learn.run import Operation, TrainingHook
from isscli.learn.tensor_task import TensorTask
from isscli.live.usermodel import ModelSource, load_user_model
from isscli.models.checkpoint import Checkpoint
from isscli.models.config import ModelConfig
from isscli.models.presets import preset_config
from isscli.models.registry import architecture_assumption, build_model, load_model, resolve_config
from isscli.observer import Observer


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
        output = default_output(self.request)
        assert output is not None  # FinetuneRequest.output_tag names the default
        return output

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
        observer.note(f"data: {data.reading}")
        task = TensorTask(data, settings.batch_size, settings.eval_batch_size, settings.seed, device)
        example = ExampleInput(data.example_input(EXAMPLE_ROWS, device), "the first training rows")
        return RunData(task, CorpusSummary.of_tensors(data), example=example)

    def build(self, corpus: CorpusSummary) -> nn.Module:
        return load_user_model(self.source, self.parent)

    def assumption(self) -> str | None:
        return None


def start_of(request: RunRequest, observer: Observer) -> Start:
    """Where ``request`` starts: the one place that tells a ``finetune`` request from a ``train`` one."""
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
