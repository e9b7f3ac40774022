"""The corpus a model learns from or is scored on, as a :class:`~isscli.learn.tasks.Task`, and its vocabulary.

Which word each embedding row is must never be guessed (:mod:`isscli.data.vocabulary`):
:func:`vocabulary_choice` takes the checkpoint's stored vocabulary, else the one given
(``vocab``), else the order named (``vocab_order``), and refuses a foreign checkpoint that
carries none rather than read it with an assumed order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from isscli.api.common import PathLike
from isscli.data import load_corpus, load_sentences, resolve_data
from isscli.data.corpus import check_splits
from isscli.data.vocabulary import VocabularyChoice, first_difference, read_vocabulary_file
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import lineage
from isscli.learn.corpus import CorpusSummary, UnknownTokens, unknown_tokens
from isscli.learn.recipes import TrainSettings
from isscli.learn.tasks import ClassifierTask, LanguageModelTask, Task
from isscli.models.checkpoint import Checkpoint
from isscli.models.config import ModelConfig
from isscli.observer import Observer

#: The splits a training run reads, each with the setting that is its batch size.
TRAINING_SPLITS = {"train": "batch_size", "valid": "eval_batch_size", "test": "eval_batch_size"}
#: The largest share of the training split a vocabulary may read as <unk> before a run is refused.
MAX_UNKNOWN_SHARE = 0.5


def vocabulary_choice(
    vocab: PathLike | None, vocab_order: str | None, max_vocab: int | None = None, min_count: int | None = None,
    checkpoint: Checkpoint | None = None, observer: Observer | None = None,
) -> VocabularyChoice:
    """How the run numbers words: the checkpoint's vocabulary, ``vocab``, ``vocab_order``, or (training from
    scratch, or an isscli checkpoint of before 0.2) isscli's frequency order."""
    if vocab is not None and vocab_order is not None:
        raise IsscliError("`vocab` and `vocab_order` both say how the words are numbered: `vocab` as its file lists "
                          "them, `vocab_order` from the training text", "give one of them")
    given = read_vocabulary_file(Path(vocab)) if vocab is not None else None
    stored = tuple(checkpoint.vocabulary) if checkpoint is not None and checkpoint.vocabulary is not None else None
    name = str(checkpoint.path) if checkpoint is not None and checkpoint.path else "the checkpoint"
    if stored is not None:
        if given is not None:
            difference = first_difference(stored, given, name, str(vocab))
            if difference:
                raise IsscliError(f"`vocab` disagrees with the vocabulary {name} was trained with: {difference}",
                                  "drop `vocab` (the checkpoint's own is used), or give the right file")
        if max_vocab is not None or min_count is not None:
            raise IsscliError(f"{name} carries its vocabulary, which `max_vocab`/`min_count` cannot change",
                              "drop them")
        if vocab_order is not None and observer is not None:
            observer.note(f"{name} carries its vocabulary: `vocab_order` is not needed")
        return VocabularyChoice(words=stored, source=f"the vocabulary stored in {name}", from_checkpoint=True)
    if given is not None:
        return VocabularyChoice(words=given, source=f"the vocabulary of {vocab}")
    if vocab_order is not None or checkpoint is None or trained_vocabulary(checkpoint.provenance):
        order = vocab_order or "frequency"
        return VocabularyChoice(order=order, max_vocab=max_vocab, min_count=min_count,
                                source=f"built from the training text, {order} order")
    rows = next((t.shape[0] for n, t in checkpoint.tensors.items() if n.endswith("encoder.weight")), None)
    what = f"its {rows:,} embedding rows" if rows else "its embedding rows"
    raise IsscliError(
        f"{name} carries no vocabulary, so which word each of {what} stands for is unknown",
        "give `vocab`=FILE (one word per line, in id order), or `vocab_order`=first-seen (PyTorch's "
        "word_language_model numbering) or `vocab_order`=frequency (isscli's)",
    )


def load_task(
    family: str, data: PathLike | None, settings: TrainSettings, device: torch.device, observer: Observer,
    choice: VocabularyChoice, splits: Mapping[str, str] = TRAINING_SPLITS, allow_unknown: bool = False,
) -> tuple[Task, CorpusSummary, list[str]]:
    """The family's corpus as a :class:`Task`, its summary (for the checks, provenance and reports) and its
    vocabulary.

    ``splits`` are those the caller will read, each with the setting that is its batch size: a training run reads
    all three (train, then valid after every epoch and test at the end). Each is checked here, before any work;
    so is, for a training run, the share of the train split read as ``<unk>`` (:func:`check_unknown_share`, unless
    ``allow_unknown``).
    """
    training = set(TRAINING_SPLITS) <= set(splits)
    if family == "classifier":
        if data is None:
            raise IsscliError("classifiers need `data`", "give e.g. `data`=../shared/data/sst2")
        if choice.order != "frequency" or choice.max_vocab is not None or choice.min_count is not None:
            raise IsscliError("`vocab_order`, `max_vocab` and `min_count` apply to language models",
                              "drop them (a classifier's vocabulary is <pad>, <unk>, then by frequency)")
        sentences = load_sentences(Path(data), settings.seed, choice.words)
        if training and not allow_unknown:
            check_unknown_share(unknown_tokens(sentences.unknown())["train"], len(sentences.vocabulary), choice.source)
        task: Task = ClassifierTask(sentences, settings.batch_size, settings.eval_batch_size, settings.seed, device)
        return task, CorpusSummary.of_sentences(sentences, choice.from_checkpoint), list(sentences.vocabulary.words)
    source = resolve_data(None if data is None else Path(data))
    if source.note:
        observer.note(source.note, warning=True)
    corpus = load_corpus(source.path, choice)
    check_splits(corpus, {split: (name, getattr(settings, name)) for split, name in splits.items()})
    summary = CorpusSummary.of_text(corpus, source.origin, choice.from_checkpoint)
    unknown = summary.unknown or {}
    if training and not allow_unknown:
        check_unknown_share(unknown["train"], len(corpus.vocabulary), choice.source)
    if any(tokens.mapped for tokens in unknown.values()):
        shares = ", ".join(f"{split} {tokens.mapped or 0:,} ({tokens.share:.2%} <unk> in all)"
                           for split, tokens in unknown.items())
        observer.note(f"words outside the vocabulary read as <unk>: {shares}; {len(corpus.vocabulary):,} words, "
                      f"{choice.source}")
    if corpus.layout != "folder":
        observer.note(f"{source.path}: {corpus.layout}")
    task = LanguageModelTask(corpus, settings.batch_size, settings.bptt, settings.eval_batch_size, device)
    return task, summary, list(corpus.vocabulary.words)


def check_unknown_share(train: UnknownTokens, size: int, source: str) -> None:
    """Refuse to train on a vocabulary that reads more than :data:`MAX_UNKNOWN_SHARE` of the train split as <unk>:
    such a model learns mostly to predict <unk>, and its perplexity (1.00 when every token is <unk>) looks superb
    while meaning nothing. ``allow_unknown`` trains on it anyway, on purpose."""
    if train.share > MAX_UNKNOWN_SHARE:
        raise IsscliError(
            f"the vocabulary ({size:,} words, {source}) reads {train.share:.1%} of the train split as <unk> "
            f"({train.count:,} tokens), more than {MAX_UNKNOWN_SHARE:.0%}: the model would learn little "
            "but <unk>", "give a vocabulary that holds the text's words (a larger `max_vocab`, or the right `vocab`),"
            " or pass `allow_unknown` to train on it anyway")


def check_vocabulary(config: ModelConfig, data: CorpusSummary, provenance: JSONObject | None) -> None:
    """The corpus must have the model's vocabulary: its size, and the words it was trained on when known."""
    if config.vocab_size != data.vocabulary_size:
        raise IsscliError(
            f"the model has {config.vocab_size} words but {data.path} has {data.vocabulary_size} "
            f"({data.vocabulary_source or 'built from its training text'})",
            "use the corpus and the vocabulary the model was trained with (`vocab`)",
        )
    trained_on = trained_vocabulary(provenance)
    if trained_on and data.vocabulary_sha256 and trained_on != data.vocabulary_sha256:
        raise IsscliError(
            f"the model was trained on another vocabulary than {data.path}'s (same size, other words)",
            "use the corpus the model was trained on",
        )


def trained_vocabulary(provenance: JSONObject | None) -> str | None:
    """The vocabulary fingerprint of the run that made this checkpoint or one of its ancestors (read from their
    provenance records, whose checks (:mod:`isscli.io.provenance`) made sure the field is text)."""
    for record in lineage(provenance):
        data = (record.get("parameters") or {}).get("data") or record.get("data") or {}
        if data.get("vocabulary_sha256"):
            return str(data["vocabulary_sha256"])
    return None


def uniform_guess_warning(perplexity: float, vocabulary_size: int, data: CorpusSummary) -> str | None:
    """A perplexity at or above the vocabulary size is worse than guessing uniformly: likely another numbering
    (unless the words are numbered by the checkpoint's own vocabulary: then the model is just poor)."""
    if perplexity >= vocabulary_size and not data.vocabulary_from_checkpoint:
        return (f"perplexity {perplexity:,.1f} is at or above the vocabulary size {vocabulary_size:,} (worse than a "
                "uniform guess): the checkpoint's words are likely numbered otherwise than this corpus's")
    return None
