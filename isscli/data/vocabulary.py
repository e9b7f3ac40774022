"""Which word each id is: vocabularies read from files or checkpoints, or built from training text.

A model's embedding row k means one word; read with another numbering, a model computes
garbage without any error. So a vocabulary is never assumed in silence: isscli-written
checkpoints carry theirs (header ``isscli.vocabulary``), a user may give one (``vocab``: a
text file with one word per line in id order, a JSON list, or a JSON object word → id), or
name the order to build it from the training text (``vocab_order``):

* ``frequency`` — isscli's own (and Zaremba et al.'s reader's): decreasing count, ties
  alphabetically, from the training split;
* ``first-seen`` — PyTorch's word_language_model example: in order of first appearance in
  train, then valid, then test (every line ending with ``<eos>``).

``max_vocab`` and ``min_count`` cap a vocabulary built from text; what falls outside becomes
``<unk>``, which is added (as the last word) when the training text lacks it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from isscli.data.text import UNK, read_text, text_lines
from isscli.errors import IsscliError
from isscli.jsonfile import parse_json

ORDERS = ("frequency", "first-seen")


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

    def encode(self, tokens: list[str], where: str, source: str = "the training vocabulary") -> torch.Tensor:
        """Word ids of ``tokens``; words outside the vocabulary become ``<unk>``, or an error without one."""
        fallback = self.index.get(UNK)
        ids = []
        for token in tokens:
            found = self.index.get(token, fallback)
            if found is None:
                raise IsscliError(
                    f"{where}: word {token!r} is not in the vocabulary ({source}), which has no {UNK}",
                    f"give a vocabulary that holds every word or has {UNK}",
                )
            ids.append(found)
        return torch.tensor(ids, dtype=torch.long)


@dataclass(frozen=True)
class VocabularyChoice:
    """How a run numbers its words: ``words`` as given, else built from the training text in ``order``."""

    words: tuple[str, ...] | None = None
    source: str = "built from the training text"  # for messages and reports
    order: str = "frequency"
    max_vocab: int | None = None
    min_count: int | None = None
    from_checkpoint: bool = False  # the model's own: a mismatch of numbering is impossible

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise IsscliError(f"unknown `vocab_order` {self.order!r}", f"use {' or '.join(ORDERS)}")
        if self.words is not None and (self.max_vocab is not None or self.min_count is not None):
            raise IsscliError("`max_vocab` and `min_count` cap a vocabulary built from text, not a given one",
                              "drop them, or drop `vocab`")
        for name in ("max_vocab", "min_count"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise IsscliError(f"`{name}` must be ≥ 1 (got {value})", "fix the option")

    @property
    def given(self) -> bool:
        return self.words is not None


def read_vocabulary_file(path: Path) -> tuple[str, ...]:
    """A vocabulary file: JSON (a list in id order, or an object word → id) or text, one word per line."""
    path = Path(path)
    if not path.is_file():
        raise IsscliError(f"vocabulary {path} not found", "give a file with one word per line, in id order")
    text = read_text(path)
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            raw = parse_json(text)
        except json.JSONDecodeError as error:
            raise IsscliError(f"vocabulary {path} is not valid JSON (line {error.lineno}: {error.msg})",
                              "fix the JSON, or give one word per line") from None
        except ValueError as error:
            raise IsscliError(f"vocabulary {path} is not valid JSON ({error})", "fix the JSON") from None
        words = _from_json(raw, path)
    else:
        words = [line.strip() for line in text_lines(text)]
        if any(not word or " " in word for word in words):
            number = next(i for i, word in enumerate(words, 1) if not word or " " in word)
            raise IsscliError(f"vocabulary {path} line {number} is not one word",
                              "write one word per line, in id order, with no blank lines")
    return checked_words(words, str(path))


def _from_json(raw: object, path: Path) -> list[str]:
    if isinstance(raw, list) and all(isinstance(word, str) for word in raw):
        return list(raw)
    if isinstance(raw, dict) and all(isinstance(i, int) and not isinstance(i, bool) for i in raw.values()):
        ids = sorted(raw.values())
        if ids != list(range(len(ids))):
            raise IsscliError(f"vocabulary {path}: the ids are not 0 … {len(ids) - 1}, each once",
                              "number the words 0, 1, 2, … with no gap or repeat")
        by_id = {i: word for word, i in raw.items()}
        return [by_id[i] for i in range(len(ids))]
    raise IsscliError(f"vocabulary {path} is neither a JSON list of words nor an object word → id",
                      'write ["<unk>", "the", …] or {"<unk>": 0, "the": 1, …}')


def checked_words(words: Sequence[str], where: str) -> tuple[str, ...]:
    if not words:
        raise IsscliError(f"vocabulary {where} is empty", "give at least one word")
    seen: set[str] = set()
    for word in words:
        if word in seen:
            raise IsscliError(f"vocabulary {where} has {word!r} twice", "every word must have one id")
        seen.add(word)
    return tuple(words)


def first_difference(ours: Sequence[str], theirs: Sequence[str], our_name: str, their_name: str) -> str | None:
    """Where two vocabularies part, in words (None when they are the same)."""
    for index, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return f"id {index} is {a!r} in {our_name} but {b!r} in {their_name}"
    if len(ours) != len(theirs):
        return f"{our_name} has {len(ours)} words, {their_name} {len(theirs)}"
    return None


def build_words(splits: dict[str, list[str]], choice: VocabularyChoice) -> tuple[str, ...]:
    """The vocabulary of a corpus's token lists (train, valid, test) under ``choice`` (module docstring)."""
    counts = Counter(splits["train"])
    kept = set(counts)
    if choice.min_count is not None:
        kept = {word for word in kept if counts[word] >= choice.min_count}
    if choice.max_vocab is not None:
        ranked = sorted(kept, key=lambda w: (-counts[w], w))
        kept = set(ranked[: max(choice.max_vocab - (UNK not in ranked[: choice.max_vocab]), 1)])
    if choice.order == "first-seen":
        streams: Iterable[str] = [*splits["train"], *splits["valid"], *splits["test"]]
        capped = choice.max_vocab is not None or choice.min_count is not None
        words = list(dict.fromkeys(w for w in streams if w in kept or not (capped or w in counts)))
    else:
        words = sorted(kept, key=lambda w: (-counts[w], w))
    known = set(words)
    if UNK not in known and any(w not in known for tokens in splits.values() for w in tokens):
        words.append(UNK)
    return tuple(words)
