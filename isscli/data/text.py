"""Reading text files: one-line errors that name the file, and lines split the way corpora need."""

from __future__ import annotations

from pathlib import Path

from isscli.errors import IsscliError

EOS = "<eos>"
UNK = "<unk>"


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


def text_lines(text: str) -> list[str]:
    """Lines split at ``\\n`` only: ``str.splitlines`` would also split at Latin-1's U+0085 (in MR)."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines
