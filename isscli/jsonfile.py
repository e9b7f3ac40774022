"""Reading the JSON files users hand to isscli (specs, configs, settings, name maps).

One place turns every way such a file can be wrong into a one-line error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isscli.errors import IsscliError


def read_json(
    path: Path, what: str, error: type[IsscliError] = IsscliError, missing_hint: str = "check the path"
) -> Any:
    """The parsed content of ``path``; ``what`` names the file in messages ("spec", "config")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} not found", missing_hint)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not a text file", f"give a JSON {what}") from None
    except json.JSONDecodeError as problem:
        raise error(
            f"{what} {path} is not valid JSON (line {problem.lineno}, column {problem.colno}: {problem.msg})",
            "fix the JSON syntax",
        ) from None


def read_json_object(path: Path, what: str, example: str, error: type[IsscliError] = IsscliError) -> dict[str, Any]:
    """Like :func:`read_json`, for files that must hold one JSON object."""
    raw = read_json(path, what, error)
    if not isinstance(raw, dict):
        raise error(f"{what} {path} is not a JSON object", f"write e.g. {example}")
    return raw
