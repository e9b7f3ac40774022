"""What made a checkpoint: the operation, its parameters, the tool and the parent.

Every checkpoint isscli writes carries a provenance record in its header
(``isscli.provenance``, see :mod:`isscli.models.checkpoint`)::

    {"schema": "isscli.provenance/1", "tool": "isscli", "version": "0.2.0", "created": "2026-12-02T10:00:00+00:00",
     "operation": "finetune", "parameters": {...}, "result": {...},
     "invocation": {"via": "cli", "command": "isscli finetune dense.safetensors ..."},
     "parent_sha256": "...", "parent_path": "...", "parent_provenance": {...}}

``parameters`` are the operation's request, as the library received it (paths as strings,
training settings resolved, so τ is ``parameters.settings.weight_threshold`` and nowhere
else); ``result`` holds what the operation found (best epoch, kept units, …). The record is
the same whoever called the operation; ``invocation`` says who did: ``{"via": "api"}`` by
default, and the CLI, a sweep point or the demo say so with :func:`invoked_by`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from isscli import __version__
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.parsing import MAX_FLOAT32


class Parent(Protocol):
    """What a record says of the file an operation read (a :class:`~isscli.models.checkpoint.Checkpoint`)."""

    @property
    def sha256(self) -> str | None: ...

    @property
    def path(self) -> Path | None: ...

    @property
    def provenance(self) -> JSONObject | None: ...

_INVOCATION: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("isscli_invocation", default=None)


@contextmanager
def invoked_by(via: str, **details: str) -> Iterator[None]:
    """Checkpoints written inside this block record ``{"via": via, **details}`` as their invocation."""
    token = _INVOCATION.set({"via": via, **details})
    try:
        yield
    finally:
        _INVOCATION.reset(token)


def invocation() -> dict[str, str]:
    return dict(_INVOCATION.get() or {"via": "api"})


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: dataclasses and mappings as objects, paths as strings, inf as None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def operation_record(
    operation: str, parameters: Any, parent: Parent | None = None, **result: Any
) -> JSONObject:
    """The provenance of a checkpoint made by ``operation`` (module docstring)."""
    record: JSONObject = {
        "schema": SCHEMA,
        "tool": "isscli",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "operation": operation,
        "parameters": plain(parameters),
        "result": plain({key: value for key, value in result.items() if value is not None}),
        "invocation": invocation(),
    }
    if parent is not None:
        record["parent_sha256"] = parent.sha256
        if parent.path is not None:
            record["parent_path"] = str(parent.path)
        if parent.provenance is not None:
            record["parent_provenance"] = parent.provenance
    return record


#: The version of the record's layout; a record without one was written before it was versioned (0.2.0).
SCHEMA = "isscli.provenance/1"

#: The provenance fields isscli reads, and what each must be when present (null is allowed everywhere): a
#: header is a file like any other, and a wrong type in it is bad input, never a crash.
FIELDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("operation",), "text"),
    (("parent_provenance",), "object"),
    (("parameters",), "object"),
    (("parameters", "settings"), "object"),
    (("parameters", "settings", "weight_threshold"), "threshold"),
    (("parameters", "data"), "object"),
    (("parameters", "data", "vocabulary_sha256"), "text"),
    (("data",), "object"),
    (("data", "vocabulary_sha256"), "text"),
)
EXPECTED = {"object": "a JSON object", "text": "text",
            "threshold": f"a number between 0 and {MAX_FLOAT32:.6g}"}


def lineage(provenance: JSONObject | None, source: str | Path | None = None) -> Iterator[JSONObject]:
    """The record and its ancestors' records, newest first, each checked (:data:`FIELDS`) before it is yielded.

    ``source`` names the file the record came from, for the one-line error a malformed record gives.
    """
    prefix = ""
    while provenance:
        check_record(provenance, source, prefix)
        yield provenance
        provenance = provenance.get("parent_provenance")
        prefix += "parent_provenance."


def check_provenance(provenance: JSONObject | None, source: str | Path | None = None) -> None:
    """Check a whole provenance chain before any work that reads it (see :func:`lineage`)."""
    for _ in lineage(provenance, source):
        pass


def check_record(record: Any, source: str | Path | None, prefix: str = "") -> None:
    """One record's fields that isscli reads have the types it reads them as: else one line naming the field."""
    where = f"{source}: provenance" if source is not None else "a checkpoint's provenance"
    if not isinstance(record, dict):  # only the newest can be: each record checks its parent_provenance
        raise ProvenanceError(f"{where} is {kind_of(record)}, not a JSON object", PROVENANCE_HINT)
    schema = record.get("schema")
    if schema is not None and schema != SCHEMA:
        raise ProvenanceError(f"{where} field \"{prefix}schema\" is {kind_of(schema)}, not {SCHEMA!r} (a record of "
                              "another version or tool)", PROVENANCE_HINT)
    for path, kind in FIELDS:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and not fits(value, kind):
            raise ProvenanceError(f"{where} field \"{prefix}{'.'.join(path)}\" must be {EXPECTED[kind]} "
                                  f"(got {kind_of(value)})", PROVENANCE_HINT)


def fits(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "text":
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_FLOAT32


def kind_of(value: Any) -> str:
    """A value from a file, shortly: its JSON type and, for scalars, the value (cut to 40 characters)."""
    names = {dict: "an object", list: "a list", str: "text", bool: "a boolean", int: "a number", float: "a number"}
    name = names.get(type(value), f"a {type(value).__name__}")  # the library's callers may pass any object
    return name if isinstance(value, (dict, list)) else f"{name} {json.dumps(value, default=repr)[:40]}"


class ProvenanceError(IsscliError):
    """A checkpoint's provenance header has a field of the wrong type or out of range: bad input (exit 2)."""


PROVENANCE_HINT = "the header was changed outside isscli: re-create the checkpoint with isscli"
