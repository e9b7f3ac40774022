"""Sentence-classification corpora: SST-2 (``{train,dev,test}.txt``) and MR (``rt-polarity.all``).

One example a line: an integer label, a space, the tokenized sentence. SST-2 comes split;
MR has no fixed split and is Latin-1 encoded, so it is shuffled with a seed and cut 90/10
(the 10% serves as both valid and test split, as in the papers that report MR without a
dev set). The vocabulary comes from the training sentences; ``<pad>`` is id 0 (the
classifier masks it out) and ``<unk>`` id 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from isscli.data.corpus import find_split_files
from isscli.data.text import UNK, read_text, text_lines
from isscli.data.vocabulary import Vocabulary, check_size
from isscli.io.errors import IsscliError

PAD = "<pad>"
MR_FILE = "rt-polarity.all"
MR_ENCODING = "latin-1"
#: Labels are class indices below this (a mistyped label must not become a layer of 10^20 outputs).
MAX_CLASSES = 10_000


@dataclass
class Examples:
    """Sentences as word lists, with their labels."""

    sentences: list[list[str]]
    labels: list[int]

    def subset(self, order: list[int]) -> Examples:
        return Examples([self.sentences[i] for i in order], [self.labels[i] for i in order])


@dataclass
class EncodedSplit:
    """A split as id tensors, ready for batching."""

    tokens: list[torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class SentenceCorpus:
    folder: Path
    vocabulary: Vocabulary
    num_classes: int
    splits: dict[str, EncodedSplit]

    def unknown(self) -> dict[str, dict[str, float]]:
        """Per split: tokens read as ``<unk>`` (``count``, ``share``), as :meth:`isscli.data.corpus.Corpus.unknown`."""
        index = self.vocabulary.index.get(UNK)
        report = {}
        for split, data in self.splits.items():
            ids = torch.cat(data.tokens) if data.tokens else torch.empty(0, dtype=torch.long)
            count = int((ids == index).sum()) if index is not None else 0
            report[split] = {"count": count, "share": count / max(ids.numel(), 1)}
        return report

    def describe(self) -> dict[str, object]:
        return {
            "path": str(self.folder),
            "vocabulary_size": len(self.vocabulary),
            "vocabulary_sha256": self.vocabulary.fingerprint(),
            "examples": {split: len(data) for split, data in self.splits.items()},
        }


def parse_examples(text: str, where: str) -> Examples:
    """``label sentence`` lines; blank lines are skipped, anything else is an error."""
    sentences, labels = [], []
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        label, _, sentence = line.strip().replace("\t", " ", 1).partition(" ")
        if not (label.isascii() and label.isdigit()) or not sentence.split():
            raise IsscliError(
                f"{where} line {number} is not 'LABEL SENTENCE': {line[:40]!r}",
                "each line starts with an integer label, then the tokenized sentence",
            )
        if int(label) >= MAX_CLASSES:
            raise IsscliError(f"{where} line {number}: label {label[:20]} is not below {MAX_CLASSES:,}",
                              "labels are class indices 0, 1, 2, …")
        labels.append(int(label))
        sentences.append(sentence.split())
    if not sentences:
        raise IsscliError(f"{where} holds no examples", "check the data folder")
    return Examples(sentences, labels)


def split_mr(examples: Examples, seed: int, held_out: float = 0.1) -> dict[str, Examples]:
    """A seeded shuffle, then train = the first 90%, valid = test = the remaining 10%."""
    order = torch.randperm(len(examples.labels), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = len(order) - max(1, round(held_out * len(order)))
    rest = examples.subset(order[cut:])
    return {"train": examples.subset(order[:cut]), "valid": rest, "test": rest}


def read_examples(folder: Path, seed: int) -> dict[str, Examples]:
    mr = folder / MR_FILE
    if mr.is_file():
        return split_mr(parse_examples(read_text(mr, MR_ENCODING), str(mr)), seed)
    files = find_split_files(folder)
    return {split: parse_examples(read_text(path), str(path)) for split, path in files.items()}


def load_sentences(folder: Path | str, seed: int = 0, words: Sequence[str] | None = None) -> SentenceCorpus:
    """Read an SST-2-style folder or an MR folder (``rt-polarity.all``, split with ``seed``).

    ``words`` (a checkpoint's or a file's vocabulary) numbers the words; by default the
    vocabulary is built from the training sentences.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise IsscliError(f"data folder {folder} not found", "give a folder with train/dev/test.txt or rt-polarity.all")
    examples = read_examples(folder, seed)
    for split, data in examples.items():  # checked before any work: a run reads every split
        if not data.labels:
            raise IsscliError(f"the {split} split of {folder} holds no examples",
                              "give more examples (MR keeps 10% for valid and test)")
    if words is not None:
        vocabulary = Vocabulary(list(words))
    else:
        counts = Counter(word for sentence in examples["train"].sentences for word in sentence)
        check_size(len(counts.keys() | {PAD, UNK}), f"the vocabulary of {folder}'s training sentences",
                   hint="give fewer distinct words")
        vocabulary = Vocabulary.from_counts(counts, specials=(PAD, UNK))
    num_classes = max(max(e.labels) for e in examples.values()) + 1
    splits = {
        split: EncodedSplit(
            [vocabulary.encode(sentence, f"{folder} ({split})") for sentence in data.sentences],
            torch.tensor(data.labels, dtype=torch.long),
        )
        for split, data in examples.items()
    }
    return SentenceCorpus(folder, vocabulary, num_classes, splits)


def sentence_batches(
    split: EncodedSplit, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(tokens [T, B] padded with 0, lengths [B], labels [B])``; shuffled when a generator is given."""
    order = torch.randperm(len(split), generator=generator) if generator is not None else torch.arange(len(split))
    for start in range(0, len(split), batch_size):
        chosen = order[start : start + batch_size].tolist()
        lengths = torch.tensor([split.tokens[i].numel() for i in chosen], dtype=torch.long)
        tokens = torch.zeros(int(lengths.max()), len(chosen), dtype=torch.long)
        for column, i in enumerate(chosen):
            tokens[: lengths[column], column] = split.tokens[i]
        yield tokens, lengths, split.labels[chosen]


def count_batches(split: EncodedSplit, batch_size: int) -> int:
    return -(-len(split) // batch_size)
