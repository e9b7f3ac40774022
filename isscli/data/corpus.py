"""Word-level language-modelling corpora in the PTB format, and Zaremba-style batching.

A corpus is a folder with a train, a valid and a test file (``ptb.train.txt``,
``train.txt``, ``wiki.valid.tokens``, ``dev.txt``…), or one text file cut by lines into the
three (:data:`SINGLE_FILE_SPLIT`); one sentence a line, tokens separated by spaces, and every
line ends with ``<eos>``. Which id each word gets is the business of
:mod:`isscli.data.vocabulary`: by default the vocabulary comes from the training text,
ordered by decreasing count then alphabetically (as in Zaremba et al.'s reader), so the same
training file always gives the same word ids (PTB's included); words it lacks become ``<unk>``.

Batching follows Zaremba et al. (2014): each split is cut into ``batch_size`` contiguous
streams, read ``bptt`` steps at a time; the hidden state is carried from one chunk to the next
(and detached between them: truncated back-propagation through time).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from isscli.data.text import EOS, UNK, read_text, text_lines
from isscli.data.vocabulary import Vocabulary, VocabularyChoice, build_words

__all__ = ["EOS", "UNK", "Corpus", "Vocabulary", "batchify", "bptt_chunks", "count_chunks", "find_split_files",
           "load_corpus", "text_lines"]
from isscli.io.errors import IsscliError

SPLITS = ("train", "valid", "test")
#: Other names a split's file may carry (SST-2's ``dev.txt``).
SPLIT_NAMES = {"train": ("train",), "valid": ("valid", "dev"), "test": ("test",)}
TEXT_SUFFIXES = (".txt", ".tokens")


def find_split_files(folder: Path) -> dict[str, Path]:
    """The train/valid/test files of a corpus folder, recognised by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IsscliError(f"data folder {folder} not found", "give a folder with train/valid/test text files")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in TEXT_SUFFIXES)
    found = {}
    for split in SPLITS:
        matches = [
            p for p in files
            if any(p.stem == name or p.stem.endswith(f".{name}") for name in SPLIT_NAMES[split])
        ]
        if len(matches) != 1:
            problem = "no" if not matches else f"{len(matches)} ({', '.join(p.name for p in matches)})"
            raise IsscliError(
                f"{folder} has {problem} {split} file",
                "a corpus folder holds exactly one each of ptb.train.txt / ptb.valid.txt / ptb.test.txt "
                "(or train/valid|dev/test .txt)",
            )
        found[split] = matches[0]
    return found


#: How a single text file is cut into splits, by lines: the first 90% train, then 5% valid, 5% test.
SINGLE_FILE_SPLIT = (0.9, 0.05, 0.05)


@dataclass
class Corpus:
    """A corpus's vocabulary and its three splits as id streams."""

    folder: Path
    vocabulary: Vocabulary
    splits: dict[str, torch.Tensor]
    vocabulary_source: str = "built from the training text"
    layout: str = "folder"  # or how a single file was split
    out_of_vocabulary: dict[str, int] = field(default_factory=dict)  # per split: words the vocabulary lacks

    def unknown(self) -> dict[str, dict[str, float]]:
        """Per split: tokens read as ``<unk>`` (``count``, ``share``), of which ``mapped`` were other words."""
        index = self.vocabulary.index.get(UNK)
        report = {}
        for split, ids in self.splits.items():
            count = int((ids == index).sum()) if index is not None else 0
            report[split] = {"count": count, "share": count / max(ids.numel(), 1),
                             "mapped": self.out_of_vocabulary.get(split, 0)}
        return report

    def describe(self) -> dict[str, object]:
        """What went into a run, for provenance and logs."""
        return {
            "path": str(self.folder),
            "layout": self.layout,
            "vocabulary_size": len(self.vocabulary),
            "vocabulary_sha256": self.vocabulary.fingerprint(),
            "vocabulary_source": self.vocabulary_source,
            "tokens": {split: int(ids.numel()) for split, ids in self.splits.items()},
            "unknown": self.unknown(),
        }


def split_lines(path: Path) -> dict[str, list[str]]:
    """One text file cut by lines into train/valid/test (:data:`SINGLE_FILE_SPLIT`), in order: deterministic."""
    lines = text_lines(read_text(path))
    if len(lines) < 3:
        raise IsscliError(f"{path} has {len(lines)} line(s), too few to split into train, valid and test",
                          "give a longer text, or a folder with train/valid/test files")
    valid = max(1, round(SINGLE_FILE_SPLIT[1] * len(lines)))
    test = max(1, round(SINGLE_FILE_SPLIT[2] * len(lines)))
    cut = {"train": lines[: len(lines) - valid - test], "valid": lines[len(lines) - valid - test: len(lines) - test],
           "test": lines[len(lines) - test:]}
    return {split: tokens_of(chunk) for split, chunk in cut.items()}


def tokens_of(lines: list[str]) -> list[str]:
    """Every line's tokens followed by ``<eos>``."""
    tokens: list[str] = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


def load_corpus(source: Path | str, choice: VocabularyChoice | None = None) -> Corpus:
    """Read a PTB-format folder, or one text file split by lines; number its words as ``choice`` says.

    Words outside the vocabulary become ``<unk>`` (:mod:`isscli.data.vocabulary`); a given
    vocabulary without ``<unk>`` must hold every word of the text.
    """
    source, choice = Path(source), choice or VocabularyChoice()
    if source.is_file():
        tokens = split_lines(source)
        shares = "/".join(f"{round(share * 100)}" for share in SINGLE_FILE_SPLIT)
        layout = f"one file, split by lines {shares} (train/valid/test, in order)"
        names = {split: f"{source} ({split})" for split in SPLITS}
    else:
        files = find_split_files(source)
        tokens = {split: tokens_of(text_lines(read_text(path))) for split, path in files.items()}
        layout, names = "folder", {split: str(path) for split, path in files.items()}
    if len(tokens["train"]) < 2:
        raise IsscliError(f"{names['train']} is empty", "give a training file with text in it")
    words = choice.words if choice.words is not None else build_words(tokens, choice)
    vocabulary = Vocabulary(list(words))
    splits = {split: vocabulary.encode(tokens[split], names[split], choice.source) for split in SPLITS}
    missing = {split: sum(word not in vocabulary.index for word in tokens[split]) for split in SPLITS}
    return Corpus(source, vocabulary, splits, choice.source, layout, missing)


def check_splits(corpus: Corpus, batch_sizes: dict[str, tuple[str, int]]) -> None:
    """Refuse, before any work, a split too short for its batch size (``split → (parameter, size)``): batching cuts
    a split into that many streams, and each needs at least two tokens (an input and its target)."""
    for split, (name, size) in batch_sizes.items():
        tokens = int(corpus.splits[split].numel())
        if tokens // size < 2:
            where = f"the {split} split of {corpus.folder}"
            raise IsscliError(
                f"{where} has {tokens} token(s), too few for `{name}` {size} (each of the {size} streams needs at "
                "least 2 tokens)", f"give more {split} text, or a `{name}` of at most {max(1, tokens // 2)}")


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a stream into ``batch_size`` contiguous streams: ``[steps, batch_size]``, time-major.

    Column ``b`` holds tokens ``b·steps … (b+1)·steps − 1``; the ragged end is dropped.
    """
    steps = ids.numel() // batch_size
    if steps < 2:
        raise IsscliError(
            f"{ids.numel()} tokens are too few for batch size {batch_size}", "use a smaller --batch-size"
        )
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()


def bptt_chunks(stream: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(inputs, targets)`` chunks of at most ``bptt`` steps; targets are inputs shifted by one."""
    for start in range(0, stream.shape[0] - 1, bptt):
        length = min(bptt, stream.shape[0] - 1 - start)
        yield stream[start : start + length], stream[start + 1 : start + 1 + length]


def count_chunks(stream: torch.Tensor, bptt: int) -> int:
    return -(-(stream.shape[0] - 1) // bptt)
