"""What ``train`` and ``finetune`` are asked: their requests, apart from the functions that run them (so that the
run's assembly reads them without importing :mod:`isscli.api.runs`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from isscli.api.common import CheckpointSource, ConfigSource, PathLike, SpecSource
from isscli.api.validation import Checked


@dataclass(kw_only=True)
class RunRequest(Checked):
    """What ``train`` and ``finetune`` share. ``settings`` holds training knobs by name (``epochs``, ``lr``,
    ``group_lasso`` (λ; ``lambda`` is accepted too), ``weight_threshold`` (τ), ``max_batches``, …)."""

    output: PathLike | None = None
    data: PathLike | None = None  # corpus folder or text file; None: $ISSCLI_DATA, ../shared/data/ptb, …
    vocab: PathLike | None = None  # the words in id order (a text file, one per line; or JSON)
    vocab_order: str | None = None  # frequency | first-seen: how to number the words of the training text
    max_vocab: int | None = None  # cap the vocabulary built from text (the rest becomes <unk>)
    min_count: int | None = None
    allow_unknown: bool = False  # train even when the vocabulary reads more than half the train split as <unk>
    preset: str | None = None  # the recipe (and for train, the model)
    config: ConfigSource = None  # model config fields overriding the preset's or the checkpoint's
    dropout: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    settings_file: PathLike | None = None
    spec: SpecSource = None
    renames: Mapping[str, str] = field(default_factory=dict)
    target_hidden: str | Sequence[int] | None = None  # units per ISS set, e.g. "400,350" or [400, 350]
    target_params: str | int | None = None  # parameters after compaction, e.g. "20M"
    target_speedup: float | None = None  # measured on this machine
    prune_epochs: int | None = None
    recover_epochs: int | None = None
    device: str = "auto"
    resume: bool = False
    stop_after: int | None = None
    force: bool = False


@dataclass(kw_only=True)
class TrainRequest(RunRequest):
    """Train a model of ``preset`` from scratch (``group_lasso`` in ``settings`` learns ISS at once)."""

    preset: str
    output: PathLike
    method: str = "dense"  # or "set": sparse evolutionary training of the embedding and recurrent matrices
    density: float | None = None
    zeta: float | None = None


@dataclass(kw_only=True)
class FinetuneRequest(RunRequest):
    """Fine-tune ``checkpoint`` (left untouched); OUT defaults to ``CKPT.iss.safetensors``."""

    output_tag: ClassVar[str] = "iss"  # OUT's default, from Python as from the command line (:func:`default_output`)

    checkpoint: CheckpointSource
    arch: str | None = None
    model: str | None = None  # the user's own class (file.py:Class), fine-tuned on tensor data
    model_args: str | Mapping[str, Any] | Sequence[Any] | None = None
    objective: str | None = None  # tensor data: regression | classification | tagging
    split_rule: str | None = None  # tensor data with plain x, y: train,valid,test fractions in file order
    magnitude_sparsity: float | None = None
    prune_start: int | None = None
    prune_end: int | None = None
    prune_every: int | None = None
