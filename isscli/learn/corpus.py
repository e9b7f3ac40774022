"""What a run read: :class:`CorpusSummary`, typed where the run checks it (vocabulary, fingerprints, classes), with
the description that provenance, the log and the train JSON's ``data`` record as it is.

Three kinds of data give one: a text corpus (:class:`~isscli.data.corpus.Corpus`), labelled sentences
(:class:`~isscli.data.sentences.SentenceCorpus`) and tensor data (:class:`~isscli.data.tensors.TensorData`);
each describes itself (``describe()``), and the summary adds the typed view of what is read from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from isscli.data.corpus import Corpus
from isscli.data.sentences import SentenceCorpus
from isscli.data.tensors import TensorData
from isscli.io.jsonfile import JSONObject


@dataclass(frozen=True)
class UnknownTokens:
    """The tokens of one split read as ``<unk>``: their ``count`` and ``share`` of the split, and for a text corpus
    how many of them were ``mapped``: other words, outside the vocabulary."""

    count: int
    share: float
    mapped: int | None = None

    def to_json(self) -> JSONObject:
        record: JSONObject = {"count": self.count, "share": self.share}
        if self.mapped is not None:
            record["mapped"] = self.mapped
        return record


def unknown_tokens(report: Mapping[str, Mapping[str, float]]) -> dict[str, UnknownTokens]:
    """A corpus's ``unknown()`` report (:meth:`isscli.data.corpus.Corpus.unknown`), typed."""
    return {split: UnknownTokens(int(counts["count"]), counts["share"],
                                 None if "mapped" not in counts else int(counts["mapped"]))
            for split, counts in report.items()}


@dataclass(frozen=True)
class CorpusSummary:
    """The data of a run or a score: typed where isscli reads it, and its ``description`` as written."""

    path: str
    vocabulary_size: int | None = None  # None: tensor data, which has no words
    vocabulary_sha256: str | None = None
    vocabulary_source: str | None = None  # how the words were numbered (text corpora)
    vocabulary_from_checkpoint: bool = False  # numbered by the checkpoint's own stored vocabulary
    tokens: dict[str, int] | None = None  # text corpora: tokens per split
    unknown: dict[str, UnknownTokens] | None = None  # text corpora: tokens read as <unk>, per split
    num_classes: int | None = None  # classifiers and classifying or tagging tensor data
    sha256: str | None = None  # tensor data: the file's (a text corpus is fingerprinted by the run)
    description: JSONObject = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> JSONObject:
        """The description, as provenance, the log's start record and the train JSON's ``data`` hold it."""
        return self.description

    @classmethod
    def of_text(cls, corpus: Corpus, origin: str, from_checkpoint: bool) -> CorpusSummary:
        """A language model's corpus; ``origin`` says where it was found (:func:`isscli.data.resolve_data`)."""
        return cls(str(corpus.folder), len(corpus.vocabulary), corpus.vocabulary.fingerprint(),
                   corpus.vocabulary_source, from_checkpoint,
                   tokens={split: int(ids.numel()) for split, ids in corpus.splits.items()},
                   unknown=unknown_tokens(corpus.unknown()),
                   description={**corpus.describe(), "origin": origin, "vocabulary_from_checkpoint": from_checkpoint})

    @classmethod
    def of_sentences(cls, sentences: SentenceCorpus, from_checkpoint: bool) -> CorpusSummary:
        """A classifier's labelled sentences."""
        return cls(str(sentences.folder), len(sentences.vocabulary), sentences.vocabulary.fingerprint(),
                   vocabulary_from_checkpoint=from_checkpoint, num_classes=sentences.num_classes,
                   description={**sentences.describe(), "num_classes": sentences.num_classes,
                                "vocabulary_from_checkpoint": from_checkpoint})

    @classmethod
    def of_tensors(cls, data: TensorData) -> CorpusSummary:
        """Tensor data: no words, its file's sha256 is its fingerprint."""
        return cls(str(data.path), num_classes=data.num_classes, sha256=data.sha256, description=data.describe())
