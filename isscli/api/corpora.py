"""The corpus a model learns from or is scored on, as a :class:`~isscli.tasks.Task`, and its vocabulary checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from isscli.data import load_corpus, load_sentences, resolve_data
from isscli.errors import IsscliError
from isscli.models.config import ModelConfig
from isscli.observer import Observer
from isscli.provenance import lineage
from isscli.recipes import TrainSettings
from isscli.tasks import ClassifierTask, LanguageModelTask, Task


def load_task(
    family: str, data: str | Path | None, settings: TrainSettings, device: torch.device, observer: Observer
) -> tuple[Task, dict[str, Any]]:
    """The family's corpus as a :class:`Task`, and its description for provenance and reports."""
    if family == "classifier":
        if data is None:
            raise IsscliError("classifiers need `data`", "give e.g. `data`=../shared/data/sst2")
        sentences = load_sentences(Path(data), settings.seed)
        task: Task = ClassifierTask(sentences, settings.batch_size, settings.eval_batch_size, settings.seed, device)
        return task, {**sentences.describe(), "num_classes": sentences.num_classes}
    source = resolve_data(None if data is None else Path(data))
    if source.note:
        observer.note(source.note, warning=True)
    corpus = load_corpus(source.path)
    task = LanguageModelTask(corpus, settings.batch_size, settings.bptt, settings.eval_batch_size, device)
    return task, {**corpus.describe(), "origin": source.origin}


def check_vocabulary(config: ModelConfig, data: dict[str, Any], provenance: dict[str, Any] | None) -> None:
    """The corpus must have the model's vocabulary: its size, and the words it was trained on when known."""
    if config.vocab_size != data["vocabulary_size"]:
        raise IsscliError(
            f"the model has {config.vocab_size} words but {data['path']} has {data['vocabulary_size']}",
            "use the corpus the model was trained on",
        )
    trained_on = trained_vocabulary(provenance)
    if trained_on and data.get("vocabulary_sha256") and trained_on != data["vocabulary_sha256"]:
        raise IsscliError(
            f"the model was trained on another vocabulary than {data['path']}'s (same size, other words)",
            "use the corpus the model was trained on",
        )


def trained_vocabulary(provenance: dict[str, Any] | None) -> str | None:
    """The vocabulary fingerprint of the run that made this checkpoint or one of its ancestors."""
    for record in lineage(provenance):
        data = (record.get("parameters") or {}).get("data") or record.get("data") or {}
        if data.get("vocabulary_sha256"):
            return data["vocabulary_sha256"]
    return None
