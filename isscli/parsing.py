"""Reading the numbers people type: comma-separated lists and counts with suffixes.

One parser serves every list a command takes (``--target-hidden 400,350``, ``--shapes
373,315``, ``sweep --lambda 0.001,0.002``); library callers may pass the list itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from isscli.errors import IsscliError

Number = TypeVar("Number", int, float, str)

SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


def parse_list(
    value: str | Sequence[Number], kind: Callable[[str], Number], name: str, what: str, example: str,
    minimum: float | None = None,
) -> list[Number]:
    """``"400,350"`` → ``[400, 350]`` (``kind`` converts each part); a sequence is checked as it is.

    Every part must convert and be finite and, with ``minimum``, at least that; otherwise one
    :class:`IsscliError` names the parameter ``name`` and shows ``example``.
    """
    try:
        parts = [part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)
        values = [kind(part) for part in parts]
    except (TypeError, ValueError):
        values = []
    bad = not values or any(not _acceptable(v, minimum) for v in values)
    if bad:
        raise IsscliError(f"`{name}` {value!r} is not a comma-separated list of {what}",
                          f"write e.g. `{name}`={example}")
    return values


def _acceptable(value: object, minimum: float | None) -> bool:
    if isinstance(value, str):
        return bool(value)
    number = float(value)  # type: ignore[arg-type]
    return math.isfinite(number) and (minimum is None or number >= minimum)


def parse_count(value: str | int, name: str = "target_params") -> int:
    """``"20M"`` → 20,000,000; ``"1.5k"`` → 1500; ``"123456"``, ``"2.5e6"`` as written; an int as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)\s*", str(value).lower())
        if not match:
            raise IsscliError(f"`{name}` {value!r} is not a count", f"write e.g. `{name}`=20M, 1.5k or 123456")
        count = int(float(match[1]) * SUFFIXES[match[2]])
    if count < 1:
        raise IsscliError(f"`{name}` {value!r} must be at least 1", f"write e.g. `{name}`=20M")
    return count
