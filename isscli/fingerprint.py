"""Content fingerprints of the corpus a run read: what it reuses is checked by content, never by name.

A resumed training run must read the same text as the run it continues. The corpus's description
(``corpus.describe()``) names its folder and its vocabulary, which a different text can share; the
fingerprint here hashes the files themselves, streamed, so a corpus of any size costs one read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from isscli.checkpoint import file_sha256
from isscli.data.corpus import find_split_files
from isscli.data.sentences import MR_FILE
from isscli.errors import IsscliError


def corpus_files(path: Path) -> dict[str, Path]:
    """The files a corpus at ``path`` is read from, by role: one text file split by lines (``text``), MR's single
    file (``mr``), and a folder's train/valid/test files. A folder holding both MR's file and split files gives
    both: either may be read, and a change to either is a change of the corpus."""
    if path.is_file():
        return {"text": path}
    files = {"mr": path / MR_FILE} if (path / MR_FILE).is_file() else {}
    try:
        files.update(find_split_files(path))
    except IsscliError:
        if not files:
            raise
    return files


def corpus_sha256(path: str | Path) -> str:
    """One sha256 over the contents of the corpus's files and their roles (a file renamed but unchanged, or the
    folder moved, is the same corpus)."""
    hashes = {role: file_sha256(file) for role, file in sorted(corpus_files(Path(path)).items())}
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
