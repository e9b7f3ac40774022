"""What a stored word list may hold: one token per entry, as corpora split them, and a bounded count.

Checkpoints carry vocabularies and the data layer reads them from files; both check words by these rules, which
live here, below both.
"""

from __future__ import annotations

#: The most words a vocabulary holds (an embedding of 10M rows is already gigabytes).
MAX_VOCABULARY = 10_000_000


def is_one_word(word: str) -> bool:
    """A token as corpora split them (``str.split``): not empty, no whitespace. Any other entry can never match a
    word of the text."""
    return word.split() == [word]
