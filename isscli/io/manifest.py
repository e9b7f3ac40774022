"""What isscli reuses, checked by content: folder manifests, input fingerprints and the records it reads back.

**Ownership.** Every folder isscli fills (``demo -o DIR``, ``shrink -o FOLDER``, ``sweep -o SWEEPDIR`` and
each of its point folders) keeps :data:`MANIFEST`: the files isscli wrote there, each with its sha256. A
file is isscli's to replace or remove only when the manifest lists it and its content is still what was
written; anything else — a file of the user's that happens to have one of isscli's names, one changed
since, or any file in a folder without a manifest (an older isscli's, or not isscli's at all) — is never
replaced, ``force`` or not. A file being written is listed first with no sha256 (``null``): a run killed
while writing it leaves a file that is still isscli's; append-only logs stay listed that way.

**Fingerprints.** What a result was made from — a checkpoint's sha256, a corpus's content
(:func:`~isscli.data.fingerprint.data_fingerprint`), the settings — is recorded next to the result; a result is
reused only for the same fingerprints, and :func:`changes` names what differs (``changed: checkpoint, data``).

**Records.** A JSON file isscli reads back (``shrink.json``, ``point.json``) is validated like user input
(:func:`validated`): a wrong type is one line naming the file and the field, never a crash.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from isscli.io.atomic import PathLike, atomic_write_text
from isscli.io.errors import IsscliError, OutputError
from isscli.io.hashing import file_sha256
from isscli.io.jsonfile import JSONObject, read_json

MANIFEST = ".isscli-manifest.json"
SCHEMA = "isscli.manifest/1"
#: The hint of every refusal to replace a file: the rule, and the way out (``force`` is not one).
NOT_OURS_HINT = "isscli never replaces a file it did not write (not even with `force`): choose a new folder, " \
                "or move the file away"
#: Files of isscli's own writing machinery beside an output: its lock and an interrupted write's temp file.
_TRANSIENT = re.compile(r"\.(?P<name>.+?)(\.lock|\.[^.]+\.tmp)")



def file_fingerprint(path: PathLike, what: str) -> str:
    """The sha256 of an input file, or one line saying it is missing (before any work, not after it)."""
    path = Path(path)
    if not path.is_file():
        raise IsscliError(f"{what} {path} not found", "check the path")
    return file_sha256(path)


def changes(saved: Any, current: Mapping[str, Any]) -> list[str]:
    """The names of the fingerprints that ``saved`` (read from a file: any JSON) and ``current`` do not share with
    the same value — either side's, so that a record of another version never matches by omission."""
    if not isinstance(saved, dict):
        return sorted(current)
    missing = object()
    return sorted(name for name in {*saved, *current} if saved.get(name, missing) != current.get(name, missing))


# -- the manifest ----------------------------------------------------------------------------------


def read_manifest(folder: PathLike) -> dict[str, str | None] | None:
    """The files the folder's manifest lists (name → sha256, None while being written); None without one."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    raw = read_json(path, "manifest", OutputError)
    files = raw.get("files") if isinstance(raw, dict) and raw.get("schema") == SCHEMA else None
    if not isinstance(files, dict) or not all(
            isinstance(name, str) and (sha is None or isinstance(sha, str)) for name, sha in files.items()):
        raise OutputError(f"{path} is not an isscli manifest ({SCHEMA}: the files isscli wrote there)",
                          "choose a new folder")
    return files


def _write_manifest(folder: Path, files: Mapping[str, str | None]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps({"schema": SCHEMA, "files": dict(sorted(files.items()))},
                                                    indent=2) + "\n")


def problem(folder: PathLike, name: str, files: Mapping[str, str | None] | None) -> str | None:
    """Why ``folder/name`` is not isscli's to replace (``files``: the manifest), or None when it is (or is absent)."""
    path = Path(folder) / name
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_dir() or path.is_symlink():
        return f"{path} is not a file isscli wrote"
    if files is None:
        return f"{Path(folder)} holds {name} but no manifest of the files isscli wrote there ({MANIFEST}): " \
               "it is not isscli's, or an older isscli's"
    if name not in files:
        return f"{path} was not written by isscli (the folder's {MANIFEST} does not list it)"
    if files[name] is not None and files[name] != file_sha256(path):
        return f"{path} was changed since isscli wrote it"
    return None


def owns(folder: PathLike, name: str) -> bool:
    """Whether ``folder/name`` exists and is isscli's (listed in the manifest, unchanged since)."""
    return (Path(folder) / name).is_file() and problem(folder, name, read_manifest(folder)) is None


def check(folder: PathLike, names: Iterable[str]) -> None:
    """Refuse, with one line naming the file, if any of ``names`` exists in ``folder`` but is not isscli's."""
    files = read_manifest(folder) if Path(folder).is_dir() else None
    for name in names:
        reason = problem(folder, name, files)
        if reason:
            raise OutputError(reason, NOT_OURS_HINT)


def claim(folder: PathLike, *names: str) -> None:
    """About to write ``names`` into ``folder``: check they are isscli's (or absent), then list them as being
    written, so that a run killed meanwhile leaves files that are still isscli's."""
    folder = Path(folder)
    check(folder, names)
    folder.mkdir(parents=True, exist_ok=True)
    files = read_manifest(folder) or {}
    if any(files.get(name, "") is not None for name in names):
        _write_manifest(folder, {**files, **dict.fromkeys(names)})


def record(folder: PathLike, *names: str, pinned: bool = True) -> None:
    """``names`` were written: list each that exists with its sha256 (or, ``pinned=False``, as isscli's whatever
    its content: an append-only log), and drop those that do not exist (a run's resume file, once done)."""
    folder = Path(folder)
    files = dict(read_manifest(folder) or {})
    for name in names:
        path = folder / name
        if path.is_file():
            files[name] = file_sha256(path) if pinned else None
        else:
            files.pop(name, None)
    _write_manifest(folder, files)


@contextmanager
def writing(folder: PathLike, *names: str) -> Iterator[None]:
    """:func:`claim` ``names``, let the caller write them, then :func:`record` what is there (also after an error:
    the writes are atomic, so each file is the old one, the new one, or absent)."""
    claim(folder, *names)
    try:
        yield
    finally:
        record(folder, *names)


def remove(folder: PathLike, names: Iterable[str]) -> None:
    """Delete those of ``names`` that exist — each checked to be isscli's first, all before any is deleted — and
    the locks and temp files an interrupted write of them left."""
    folder = Path(folder)
    names = [name for name in names if (folder / name).exists() or (folder / name).is_symlink()]
    check(folder, names)
    if not names:
        return
    for name in names:
        (folder / name).unlink()
    for leftover in folder.iterdir():
        match = _TRANSIENT.fullmatch(leftover.name)
        if match and match["name"] in names and leftover.is_file():
            leftover.unlink()
    files = read_manifest(folder) or {}
    _write_manifest(folder, {name: sha for name, sha in files.items() if name not in names})


def is_manifest_file(name: str) -> bool:
    """Whether a file name is the manifest, or its lock or temp file."""
    match = _TRANSIENT.fullmatch(name)
    return name == MANIFEST or bool(match and match["name"] == MANIFEST)


# -- records isscli reads back ---------------------------------------------------------------------

_KINDS: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float),
                                       "object": (dict,), "list": (list,), "boolean": (bool,)}


def _describe(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def field_problem(value: Any, kind: str) -> str | None:
    """Why ``value`` is not of ``kind`` (``string``, ``integer``, ``number``, ``object``, ``list``, ``boolean``;
    ``?`` after it: null allowed), or None."""
    optional, kind = kind.endswith("?"), kind.rstrip("?")
    if value is None:
        return None if optional else "is missing"
    if isinstance(value, bool) and kind != "boolean" or not isinstance(value, _KINDS[kind]):
        article = "an" if kind[0] in "aeio" else "a"
        return f"is {_describe(value)}, not {article} {kind}"
    if kind == "number" and isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    return None


def validated(raw: Any, fields: Mapping[str, str], where: str, hint: str, at: str = "") -> JSONObject:
    """``raw`` if it is a JSON object whose ``fields`` have their kinds (see :func:`field_problem`), else one line
    naming ``where`` (the file) and the field; ``at`` is where ``raw`` lies in the file (``evaluations.compact``)."""
    if not isinstance(raw, dict):
        raise IsscliError(f'{where}: field "{at}" is {_describe(raw)}, not an object' if at else
                          f"{where} is not a JSON object", hint)
    for name, kind in fields.items():
        reason = field_problem(raw.get(name), kind)
        if reason:
            raise IsscliError(f'{where}: field "{at + "." if at else ""}{name}" {reason}', hint)
    return raw


def read_record(path: PathLike, what: str, fields: Mapping[str, str], hint: str) -> JSONObject:
    """A JSON record isscli wrote and now reads back, validated: bad JSON or a wrong field is one line naming the
    file (and the field), with ``hint``."""
    path = Path(path)
    try:
        raw = read_json(path, what)
    except IsscliError as error:
        raise IsscliError(error.message, hint) from None
    return validated(raw, fields, f"{what} {path}", hint)
