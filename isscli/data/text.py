"""Reading text files: one-line errors that name the file, and lines split the way corpora need."""

from __future__ import annotations

import codecs
from pathlib import Path

from isscli.io.errors import IsscliError

EOS = "<eos>"
UNK = "<unk>"


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A file's text with ``\\n`` line ends, less a leading UTF-8 byte-order mark; decoding errors become one-line
    errors naming the file.

    Editors on Windows write that mark: kept, it would glue itself to the first word (``\\ufeffthe`` is not
    ``the``), so every text input — vocabularies, corpora, sentence files — loses it here, whatever the encoding.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise IsscliError(f"cannot read {path} ({error.strerror})", "check the data folder") from None
    mark = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[mark:].decode(encoding)
    except UnicodeDecodeError as error:
        raise IsscliError(f"{path} is not {encoding} text (byte {error.start + mark})",
                          "convert it to UTF-8, or check the data folder") from None
    if "\r" in text:  # universal newlines, as reading in text mode gives
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def text_lines(text: str) -> list[str]:
    """Lines split at ``\\n`` only: ``str.splitlines`` would also split at Latin-1's U+0085 (in MR)."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines
