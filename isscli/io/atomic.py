"""Safe output files: check every destination first, lock it, write to a temp file, then rename.

The rules, the same for every path a command writes (``-o``, ``--json``, a folder of pictures or of
a sweep, a training run's log): an output is never an input, never another output of the same
command, replaces an existing file only when the caller says so (``--force``), and is written
atomically — a reader never sees a half-written file, and an error, Ctrl-C or SIGTERM during the
write leaves nothing behind. :func:`check_outputs` applies the rules to all of a command's
outputs before any work; :func:`output_lock` keeps a second process from writing the same output
at the same time; :func:`atomic_write` does the writing. A new file gets the mode the umask
allows (``0o666 & ~umask``); a file replaced keeps its mode.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Union

from safetensors import SafetensorError

from isscli.io.errors import OutputError

if sys.platform == "win32":  # pragma: no cover - not on POSIX: no locks, the other rules hold
    fcntl = None
else:
    import fcntl

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Output:
    """One path a command writes; ``name`` is the parameter that names it (``output``, ``json_path``)."""

    path: Path
    name: str = "output"
    folder: bool = False  # a folder the command fills (pictures, a sweep, shrink's steps)
    files: tuple[str, ...] = ()  # the files it writes into that folder: outputs too
    replace: bool | None = None  # may an existing file be replaced? None: as ``force`` says
    in_folder: bool = False  # one of a folder output's ``files`` (its folder is checked, and made, instead)


def _same(a: Path, b: Path) -> bool:
    if os.path.abspath(a) == os.path.abspath(b) or a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _flag(name: str) -> str:
    """How a message names the parameter: ``-o`` for the output, as every command spells it; else `name`."""
    return "-o" if name == "output" else f"`{name}`"


def _expanded(outputs: Iterable[Output]) -> list[Output]:
    """The outputs, with the files each folder output will hold."""
    result = []
    for output in outputs:
        output = replace(output, path=Path(output.path))
        result.append(output)
        result.extend(Output(output.path / name, output.name, replace=output.replace, in_folder=True)
                      for name in output.files)
    return result


def _check_against_inputs(output: Output, inputs: list[Path]) -> None:
    for source in inputs:
        if _same(output.path, source):
            raise OutputError(f"output {output.path} is the input file",
                              f"choose another path with {_flag(output.name)}; isscli never overwrites its inputs")
        if source.is_dir() and output.path.is_file() and _same(output.path.parent, source):
            raise OutputError(f"output {output.path} is a file of the input folder {source}",
                              f"choose another path with {_flag(output.name)}; isscli never overwrites its inputs")


def _writable_folder(folder: Path, name: str) -> None:
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist", f"create it first or choose another {_flag(name)}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable", f"choose a writable folder with {_flag(name)}")


def _check_file(output: Output, force: bool) -> None:
    path = output.path
    if path.is_dir():
        raise OutputError(f"output {path} is a folder", f"give a file path with {_flag(output.name)}")
    may_replace = force if output.replace is None else output.replace
    if path.exists() and not may_replace:
        raise OutputError(f"output {path} already exists", f"pass --force to replace it, or choose another "
                                                           f"{_flag(output.name)}")
    if not output.in_folder:
        _writable_folder(path.parent if str(path.parent) else Path("."), output.name)


def _check_folder(output: Output) -> None:
    existing = output.path
    while not existing.exists():  # the folder is created with its parents: the nearest existing one must be writable
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {existing} is not writable", f"choose a writable folder with "
                                                                       f"{_flag(output.name)}")


def check_outputs(outputs: Iterable[Output], inputs: Iterable[PathLike | None] = (), force: bool = False) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other, replace a file without
    ``force``, or cannot be written."""
    sources = [Path(source) for source in inputs if source is not None and str(source) not in ("", "-")]
    every = _expanded(outputs)
    for index, output in enumerate(every):
        if output.folder and output.path.is_file():
            raise OutputError(f"{output.path} is a file", f"give a folder with {_flag(output.name)}")
        _check_against_inputs(output, sources)
        for other in every[:index]:
            if _same(output.path, other.path):
                raise OutputError(f"{_flag(output.name)} {output.path} is also written as {_flag(other.name)}",
                                  "give every output its own path")
        if output.folder:
            _check_folder(output)
        else:
            _check_file(output, force)


def check_output_path(output: PathLike, inputs: Iterable[PathLike | None] = (), overwrite: bool = False) -> None:
    """Refuse an output that would destroy an input, clobber a file, or cannot be written."""
    check_outputs([Output(Path(output))], inputs, overwrite)


# -- one writer per output --------------------------------------------------------------------------

_held: dict[str, int] = {}  # lock files this process holds, and how often (a command's steps nest)


def lock_path(output: PathLike) -> Path:
    """``.NAME.lock`` beside the output (a folder's lock lies beside the folder, in its parent)."""
    output = Path(output)
    parent = output.parent if str(output.parent) else Path(".")
    return (parent.resolve() if parent.is_dir() else parent) / f".{output.name}.lock"


@contextmanager
def output_lock(output: PathLike) -> Iterator[None]:
    """Hold the output for this process: a second process that asks for it meanwhile is refused.

    An ``flock`` on ``.NAME.lock`` beside the output, which the OS releases when the process ends,
    however it ends: a crashed run never leaves the output locked. The lock file is removed on release.
    """
    lock = lock_path(output)
    key = str(lock)
    if fcntl is None or key in _held:
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        return
    handle = _acquire(lock, Path(output))
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        lock.unlink(missing_ok=True)
        os.close(handle)


def _acquire(lock: Path, output: Path) -> int:
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)  # a folder output's parents: the command makes them anyway
            handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputError(f"cannot lock {output}: {error.strerror}", "choose a writable folder") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(handle, 32).decode("ascii", "replace").strip()
            os.close(handle)
            who = f" (process {holder})" if holder.isdigit() else ""
            raise OutputError(f"{output} is being written by another isscli run{who}",
                              "wait for that run to finish, or choose another output") from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle).st_ino:  # not a file the previous holder removed as we opened it
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()}\n".encode())
            return handle
        os.close(handle)


# -- writing --------------------------------------------------------------------------------------


def _new_file_mode(output: Path) -> int:
    """The mode of the file being replaced, else what the umask allows a new file."""
    try:
        return stat.S_IMODE(os.stat(output).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(output: PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(temp_path)`` and move the result to ``output`` in one rename.

    The temp file lives in the destination folder so the final ``os.replace`` is atomic.
    Any exception, ``KeyboardInterrupt`` included, removes the temp file and propagates; a
    failed write (a full disk, a read-only folder) is an :class:`OutputError`.
    """
    output = Path(output)
    folder = output.parent if str(output.parent) else Path(".")
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise OutputError(f"cannot write to {folder}: {error.strerror}", "choose a writable folder with -o") from None
    os.close(handle)
    temp = Path(temp_name)
    try:
        try:
            write(temp)
            with open(temp, "rb+") as stream:
                os.fsync(stream.fileno())
            os.chmod(temp, _new_file_mode(output))
            os.replace(temp, output)
        except (OSError, SafetensorError) as error:
            reason = getattr(error, "strerror", None) or first_line(str(error), type(error).__name__)
            raise OutputError(f"writing {output} failed: {reason}", "check free disk space and permissions") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def first_line(text: str, default: str = "") -> str:
    """The first non-blank line of a message (library errors may carry pages of C++ frames)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), default)


def atomic_write_text(output: PathLike, text: str) -> None:
    """Write a text file atomically (specs, JSON reports)."""
    atomic_write(output, lambda temp: temp.write_text(text, encoding="utf-8"))
