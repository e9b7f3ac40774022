"""What made a checkpoint: the operation, its parameters, the tool and the parent.

Every checkpoint isscli writes carries a provenance record in its header
(``isscli.provenance``, see :mod:`isscli.checkpoint`)::

    {"tool": "isscli", "version": "0.2.0", "created": "2026-12-02T10:00:00+00:00",
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
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isscli import __version__

if TYPE_CHECKING:
    from isscli.checkpoint import Checkpoint

_INVOCATION: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("isscli_invocation",
                                                                                    default=None)


@contextmanager
def invoked_by(via: str, **details: Any) -> Iterator[None]:
    """Checkpoints written inside this block record ``{"via": via, **details}`` as their invocation."""
    token = _INVOCATION.set({"via": via, **details})
    try:
        yield
    finally:
        _INVOCATION.reset(token)


def invocation() -> dict[str, Any]:
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
    operation: str, parameters: Any, parent: Checkpoint | None = None, **result: Any
) -> dict[str, Any]:
    """The provenance of a checkpoint made by ``operation`` (module docstring)."""
    record: dict[str, Any] = {
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


def lineage(provenance: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """The record and its ancestors' records, newest first."""
    while provenance:
        yield provenance
        provenance = provenance.get("parent_provenance")
