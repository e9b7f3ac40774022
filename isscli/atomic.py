"""Safe output files: check the destination first, write to a temp file, then rename.

A reader never sees a half-written output, an input is never overwritten, and an error or
Ctrl-C during the write leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from isscli.errors import OutputError


def check_output_path(output: Path, inputs: Iterable[Path] = (), overwrite: bool = False) -> None:
    """Refuse outputs that would destroy an input, clobber a file, or cannot be written."""
    output = Path(output)
    for source in inputs:
        source = Path(source)
        if output.resolve() == source.resolve() or (
            output.exists() and source.exists() and os.path.samefile(output, source)
        ):
            raise OutputError(
                f"output {output} is the input file",
                "choose another path with -o; isscli never overwrites its inputs",
            )
    if output.is_dir():
        raise OutputError(f"output {output} is a folder", "give a file path with -o")
    if output.exists() and not overwrite:
        raise OutputError(f"output {output} already exists", "pass --force to replace it, or choose another -o")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist", "create it first or choose another -o")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable", "choose a writable folder with -o")


def atomic_write(output: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temp_path)`` and move the result to ``output`` in one rename.

    The temp file lives in the destination folder so the final ``os.replace`` is atomic.
    Any exception, ``KeyboardInterrupt`` included, removes the temp file and propagates.
    """
    output = Path(output)
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent or ".")
    except OSError as error:
        raise OutputError(
            f"cannot write to {output.parent}: {error.strerror}", "choose a writable folder with -o"
        ) from None
    os.close(handle)
    temp = Path(temp_name)
    try:
        try:
            write(temp)
        except OSError as error:
            raise OutputError(
                f"writing {output} failed: {error.strerror or error}", "check free disk space and permissions"
            ) from None
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, output)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write_text(output: Path, text: str) -> None:
    """Write a text file atomically (specs, JSON reports)."""
    atomic_write(output, lambda temp: temp.write_text(text, encoding="utf-8"))
