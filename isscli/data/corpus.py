"""Word-level language-modelling corpora in the PTB format, and Zaremba-style batching.

A corpus is a folder with a train, a valid and a test file (``ptb.train.txt``,
``train.txt``, ``wiki.valid.tokens``, ``dev.txt``…), one sentence a line, tokens separated
by spaces. Every line ends with ``<eos>``. The vocabulary comes from the training file only,
ordered by decreasing count then alphabetically (as in Zaremba et al.'s reader), so the same
training file always gives the same word ids. Words of valid/test that the training file
lacks map to ``<unk>`` when the vocabulary has it, and are an error otherwise.

Batching follows Zaremba et al. (2014): each split is cut into ``batch_size`` contiguous
streams, read ``bptt`` steps at a time; the hidden state is carried from one chunk to the next
(and detached between them: truncated back-propagation through time).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from isscli.errors import IsscliError

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
#: Other names a split's file may carry (SST-2's ``dev.txt``).
SPLIT_NAMES = {"train": ("train",), "valid": ("valid", "dev"), "test": ("test",)}
TEXT_SUFFIXES = (".txt", ".tokens")


@dataclass
class Vocabulary:
    """Words and their ids; ``fingerprint`` identifies it in provenance records."""

    words: list[str]

    def __post_init__(self) -> None:
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_counts(cls, counts: Counter[str], specials: Iterable[str] = ()) -> Vocabulary:
        """``specials`` first, in order; then by decreasing count, ties alphabetically."""
        first = list(specials)
        rest = sorted((w for w in counts if w not in first), key=lambda w: (-counts[w], w))
        return cls(first + rest)

    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()

    def encode(self, tokens: list[str], where: str, unknown: str | None = UNK) -> torch.Tensor:
        """Word ids of ``tokens``; words outside the vocabulary become ``unknown`` or an error."""
        fallback = self.index.get(unknown) if unknown is not None else None
        ids = []
        for token in tokens:
            found = self.index.get(token, fallback)
            if found is None:
                raise IsscliError(
                    f"{where}: word {token!r} is not in the training vocabulary, which has no {UNK}",
                    f"map rare words to {UNK} in every split, as PTB does",
                )
            ids.append(found)
        return torch.tensor(ids, dtype=torch.long)


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A split's text; decoding errors become one-line errors that name the file."""
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        raise IsscliError(
            f"{path} is not {encoding} text (byte {error.start})", "convert it to UTF-8, or check the data folder"
        ) from None
    except OSError as error:
        raise IsscliError(f"cannot read {path} ({error.strerror})", "check the data folder") from None


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


def text_lines(text: str) -> list[str]:
    """Lines split at ``\\n`` only: ``str.splitlines`` would also split at Latin-1's U+0085 (in MR)."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_tokens(path: Path) -> list[str]:
    """Every line's tokens followed by ``<eos>``."""
    tokens: list[str] = []
    for line in text_lines(read_text(path)):
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


@dataclass
class Corpus:
    """A corpus's vocabulary and its three splits as id streams."""

    folder: Path
    vocabulary: Vocabulary
    splits: dict[str, torch.Tensor]

    def describe(self) -> dict[str, object]:
        """What went into a run, for provenance and logs."""
        return {
            "path": str(self.folder),
            "vocabulary_size": len(self.vocabulary),
            "vocabulary_sha256": self.vocabulary.fingerprint(),
            "tokens": {split: int(ids.numel()) for split, ids in self.splits.items()},
        }


def load_corpus(folder: Path | str) -> Corpus:
    """Read a PTB-format folder; the vocabulary comes from its training file."""
    folder = Path(folder)
    files = find_split_files(folder)
    train = read_tokens(files["train"])
    if len(train) < 2:
        raise IsscliError(f"{files['train']} is empty", "give a training file with text in it")
    vocabulary = Vocabulary.from_counts(Counter(train))
    splits = {"train": vocabulary.encode(train, str(files["train"]))}
    for split in ("valid", "test"):
        splits[split] = vocabulary.encode(read_tokens(files[split]), str(files[split]))
    return Corpus(folder, vocabulary, splits)


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
