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
``<unk>``, which is added (as the last word) when the training text lacks it. ``max_vocab``
counts every word of the result, ``<unk>`` and ``<eos>`` included (``<eos>`` is a word of the
text like any other, kept by its count), so it is at least 2: ``<unk>`` and one word.

No vocabulary holds more than :data:`MAX_VOCABULARY` words (the bound of a model config's
``vocab_size``): a larger one is refused as it is read or built, before anything is sized by it.
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
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import MAX_JSON_BYTES, parse_json
from isscli.io.words import MAX_VOCABULARY, is_one_word

ORDERS = ("frequency", "first-seen")
#: The fewest words ``max_vocab`` may keep: ``<unk>`` and one word.
MIN_MAX_VOCAB = 2


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
        if self.min_count is not None and self.min_count < 1:
            raise IsscliError(f"`min_count` must be ≥ 1 (got {self.min_count})", "fix the option")
        if self.max_vocab is not None and self.max_vocab < MIN_MAX_VOCAB:
            raise IsscliError(f"`max_vocab` {self.max_vocab} cannot hold <unk> and one word: it counts every word of "
                              "the vocabulary, <unk> and <eos> included", f"give `max_vocab` ≥ {MIN_MAX_VOCAB}")


def read_vocabulary_file(path: Path) -> tuple[str, ...]:
    """A vocabulary file: JSON (a list in id order, or an object word → id) or text, one word per line.

    Its bytes, then its count of words, are checked (:data:`MAX_VOCABULARY`) before any word list or index is
    built from it: a file of 10M+ words is refused at once, not after seconds of work and gigabytes of memory. Every
    entry must be one word as corpora split them; a word-count list is recognised and said to be one.
    """
    path = Path(path)
    if not path.is_file():
        raise IsscliError(f"vocabulary {path} not found", "give a file with one word per line, in id order")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise IsscliError(f"vocabulary {path} is larger than {MAX_JSON_BYTES // 2**20} MiB, the largest isscli reads",
                          f"give at most {MAX_VOCABULARY:,} words")
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
        if isinstance(raw, (list, dict)):
            check_size(len(raw), f"vocabulary {path}")
        return checked_words(_from_json(raw, path), str(path))
    check_size(text.count("\n") + (not text.endswith("\n")), f"vocabulary {path}", "lines")
    words = [line.strip() for line in text_lines(text)]
    number = next((i for i, word in enumerate(words, 1) if not is_one_word(word)), None)
    if number is not None:
        raise not_one_word(path, number, words[number - 1])
    return checked_words(words, str(path))


def not_one_word(path: Path, number: int, line: str) -> IsscliError:
    """The error for line ``number`` of a text vocabulary, saying what the file looks like when it is a word-count
    (or word-id) list — as ``word<TAB>count`` files and ``uniq -c`` write them — rather than a list of words."""
    if not line:
        return IsscliError(f"vocabulary {path} line {number} is not one word: it is blank",
                           "write one word per line, in id order, with no blank lines")
    columns = line.split()
    numeric = [column.isdigit() for column in columns]
    if len(columns) == 2 and any(numeric) and not all(numeric):
        word = columns[numeric.index(False)]
        return IsscliError(
            f"vocabulary {path} line {number} is {line[:40]!r}, a word and a number: it looks like a list of word "
            "counts (or ids), but isscli expects one word per line, in id order",
            f"keep only the words (here {word!r}), one per line in id order, e.g. with awk '{{print "
            f"${numeric.index(False) + 1}}}' {path} > words.txt")
    return IsscliError(f"vocabulary {path} line {number} is not one word: {line[:40]!r} holds whitespace",
                       "write one word per line, in id order (corpora split words at whitespace)")


def check_size(count: int, where: str, unit: str = "words", hint: str = "give a smaller vocabulary") -> None:
    """Refuse a vocabulary of more than :data:`MAX_VOCABULARY` words before anything is built from it."""
    if count > MAX_VOCABULARY:
        raise IsscliError(f"{where} has {count:,} {unit}, more than the {MAX_VOCABULARY:,} words isscli models",
                          hint)


def _from_json(raw: object, path: Path) -> list[str]:
    """The words of a JSON vocabulary in id order; an entry that is not one word is named by its id."""
    if isinstance(raw, list) and all(isinstance(word, str) for word in raw):
        words = list(raw)
    elif isinstance(raw, dict) and all(isinstance(i, int) and not isinstance(i, bool) for i in raw.values()):
        ids = sorted(raw.values())
        if ids != list(range(len(ids))):
            raise IsscliError(f"vocabulary {path}: the ids are not 0 … {len(ids) - 1}, each once",
                              "number the words 0, 1, 2, … with no gap or repeat")
        by_id = {i: word for word, i in raw.items()}
        words = [by_id[i] for i in range(len(ids))]
    else:
        raise IsscliError(f"vocabulary {path} is neither a JSON list of words nor an object word → id",
                          'write ["<unk>", "the", …] or {"<unk>": 0, "the": 1, …}')
    bad = next((i for i, word in enumerate(words) if not is_one_word(word)), None)
    if bad is not None:
        problem = "is empty" if not words[bad] else "holds whitespace"
        raise IsscliError(f"vocabulary {path}: the word of id {bad}, {words[bad][:40]!r}, {problem}",
                          "every word is non-empty with no whitespace (corpora split words at whitespace)")
    return words


def checked_words(words: Sequence[str], where: str) -> tuple[str, ...]:
    """``words`` as a tuple, refused when empty or when a word has two ids."""
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
        kept = cap_words(sorted(kept, key=lambda w: (-counts[w], w)), choice.max_vocab, splits)
    built, cap = "the vocabulary built from the training text", "cap it with `max_vocab` or `min_count`"
    check_size(len(kept), built, hint=cap)  # before sorting 10M+ words
    if choice.order == "first-seen":
        streams: Iterable[str] = [*splits["train"], *splits["valid"], *splits["test"]]
        capped = choice.max_vocab is not None or choice.min_count is not None
        words = list(dict.fromkeys(w for w in streams if w in kept or not (capped or w in counts)))
    else:
        words = sorted(kept, key=lambda w: (-counts[w], w))
    known = set(words)
    if UNK not in known and any(w not in known for tokens in splits.values() for w in tokens):
        words.append(UNK)
    check_size(len(words), built, hint=cap)
    return tuple(words)


def cap_words(ranked: list[str], max_vocab: int, splits: dict[str, list[str]]) -> set[str]:
    """The words of ``ranked`` (most frequent first) that ``max_vocab`` keeps, counting ``<unk>``: all of them when
    they fit with the ``<unk>`` the other splits may need; else the ``max_vocab − 1`` most frequent and ``<unk>``."""
    known = set(ranked)
    outside = UNK not in known and any(w not in known for tokens in splits.values() for w in tokens)
    if len(ranked) + outside <= max_vocab:
        return set(ranked)
    return {*[w for w in ranked if w != UNK][: max_vocab - 1], *([UNK] if UNK in ranked else [])}
