"""Reading the JSON files users hand to isscli (specs, configs, settings, name maps).

One place turns every way such a file can be wrong into a one-line error naming the file: missing,
not text, not JSON, nested deeper than Python's parser recurses, or larger than :data:`MAX_JSON_BYTES`.
A leading UTF-8 byte-order mark (as Windows editors write) is dropped: JSON parsers would refuse it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeAlias

from isscli.io.errors import IsscliError

#: The wire format only: a JSON object as isscli writes it (``to_json()``) or reads it from a file before its fields
#: are checked into a typed value. Code that reads fields of a result uses the result's attributes, never this.
JSONObject: TypeAlias = dict[str, Any]

#: The largest JSON file isscli reads (a spec of 200,000 sets is about 60 MB).
MAX_JSON_BYTES = 512 * 2**20


def parse_json(text: str) -> Any:
    """``json.loads``, with nesting too deep for the parser (thousands of ``[``) a ``ValueError`` like other bad
    JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(
    path: Path, what: str, error: type[IsscliError] = IsscliError, missing_hint: str = "check the path"
) -> Any:
    """The parsed content of ``path``; ``what`` names the file in messages ("spec", "config")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} not found", missing_hint)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise error(f"{what} {path} is larger than {MAX_JSON_BYTES // 2**20} MiB, the largest JSON file isscli reads",
                    f"give a smaller {what}")
    try:
        return parse_json(path.read_text(encoding="utf-8-sig"))  # -sig: without a byte-order mark, if any
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not a text file", f"give a JSON {what}") from None
    except json.JSONDecodeError as problem:
        raise error(
            f"{what} {path} is not valid JSON (line {problem.lineno}, column {problem.colno}: {problem.msg})",
            "fix the JSON syntax",
        ) from None
    except ValueError as problem:
        raise error(f"{what} {path} is not valid JSON ({problem})", "fix the JSON") from None


def read_json_object(path: Path, what: str, example: str, error: type[IsscliError] = IsscliError) -> JSONObject:
    """Like :func:`read_json`, for files that must hold one JSON object."""
    raw = read_json(path, what, error)
    if not isinstance(raw, dict):
        raise error(f"{what} {path} is not a JSON object", f"write e.g. {example}")
    return raw


def finite_json(value: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """``value`` with every NaN and ±infinity replaced by null (JSON has neither), and which fields were: their
    dotted paths (``sets[0].norm_max``) and what they held (``NaN``, ``Infinity``, ``-Infinity``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, {path or "(the value)": json.dumps(value)}
    replaced: dict[str, str] = {}
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            result[key], found = finite_json(item, f"{path}.{key}" if path else str(key))
            replaced.update(found)
        return result, replaced
    if isinstance(value, (list, tuple)):
        items = []
        for index, item in enumerate(value):
            clean, found = finite_json(item, f"{path}[{index}]")
            items.append(clean)
            replaced.update(found)
        return items, replaced
    return value, replaced
