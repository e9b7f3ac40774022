"""Content fingerprints of what a run reads: what isscli reuses is checked by content, never by name.

A resumed training run must read the same text as the run it continues, and a shrink or sweep folder's results
are reused only for the same inputs; a corpus's description names its folder and its vocabulary, which another
text can share, so the files themselves are hashed, streamed, so that a corpus of any size costs one read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from isscli.io.atomic import PathLike
from isscli.io.errors import IsscliError
from isscli.io.hashing import file_sha256


def data_fingerprint(path: PathLike) -> str | None:
    """The content of a corpus or a tensor data file, as one sha256; None when ``path`` does not exist.

    A file (one text, tensor data) is its sha256. A folder is its split files (``ptb.train.txt`` …, as
    :func:`isscli.data.corpus.find_split_files` finds them), or an MR folder's ``rt-polarity.all``, or
    else every visible file in it: the digest of their names and contents, so that a README beside the
    corpus does not count, and a copy of the corpus under another path fingerprints the same.
    """
    from isscli.data.corpus import find_split_files
    from isscli.data.sentences import MR_FILE

    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        return None
    if (path / MR_FILE).is_file():
        files = {"all": path / MR_FILE}
    else:
        try:
            files = find_split_files(path)
        except IsscliError:
            files = {p.name: p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")}
    digest = hashlib.sha256()
    for key, file in sorted(files.items()):
        digest.update(f"{key}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()
