"""Reading the numbers people type: comma-separated lists and counts with suffixes.

One parser serves every list a command takes (``--target-hidden 400,350``, ``--shapes
373,315``, ``sweep --lambda 0.001,0.002``); library callers may pass the list itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from isscli.io.errors import IsscliError

Number = TypeVar("Number", int, float, str)

SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}

# Bounds of the numbers people give, far above any real use: they keep a mistyped number from reaching torch as
# an allocation of terabytes, an integer that wraps, or a crash (``torch.set_num_threads(32768)`` segfaults).
MAX_SEED = 2**32 - 1  # seeds of isscli's generators (per-epoch seeds are derived from it)
MAX_BATCH = 65_536  # sequences per batch
MAX_STEPS = 100_000  # time steps per sequence or chunk
MAX_REPEATS = 10_000  # timed or warm-up repeats
MAX_THREADS = 1_024
MAX_UNITS = 65_536  # hidden units of one layer-direction
MAX_COUNT = 10**12  # a parameter budget
MAX_EPOCHS = 100_000  # epochs of a training run (and the epochs its lr schedule counts)
MAX_BATCHES = 10**9  # batches: a cap on an epoch's, or how often state is saved
MAX_FLOAT32 = 3.4028234663852886e38  # the largest float32: a larger setting is inf in the weights' precision


def parse_list(
    value: str | Sequence[Number], kind: Callable[[str | Number], Number], name: str, what: str, example: str,
    minimum: float | None = None, maximum: float | None = None,
) -> list[Number]:
    """``"400,350"`` → ``[400, 350]`` (``kind`` converts each part); a sequence is checked as it is.

    Every part must convert and be finite and, with ``minimum``, at least that; otherwise one
    :class:`IsscliError` names the parameter ``name`` and shows ``example``. A part above
    ``maximum`` is refused with a message that names the bound.
    """
    try:
        parts = [part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)
        values = [kind(part) for part in parts]
    except (TypeError, ValueError, OverflowError):
        values = []
    bad = not values or any(not _acceptable(v, minimum) for v in values)
    if bad:
        raise IsscliError(f"`{name}` {value!r} is not a comma-separated list of {what}",
                          f"write e.g. `{name}`={example}")
    for number in values:
        if maximum is not None and not isinstance(number, str) and number > maximum:
            raise IsscliError(f"`{name}`: {number:,} is above the largest supported, {maximum:,}",
                              f"write e.g. `{name}`={example}")
    return values


def check_bounds(value: float | None, name: str, low: float, high: float) -> None:
    """Refuse ``value`` (None: not given) outside ``[low, high]``, or not finite, with one line naming the bounds."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IsscliError(f"`{name}` must be a number (got {value!r:.40}, a {type(value).__name__})",
                          f"give `{name}` as a number between {low:,} and {high:,}")
    if not low <= value <= high:
        raise IsscliError(f"`{name}` must be between {low:,} and {high:,} (got {value})",
                          f"give `{name}` in that range")


def _acceptable(value: str | float, minimum: float | None) -> bool:
    if isinstance(value, str):
        return bool(value)
    number = float(value)
    return math.isfinite(number) and (minimum is None or number >= minimum)


def parse_count(value: str | int, name: str = "target_params") -> int:
    """``"20M"`` → 20,000,000; ``"1.5k"`` → 1500; ``"123456"``, ``"2.5e6"`` as written; an int as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)\s*", str(value).lower())
        if not match:
            raise IsscliError(f"`{name}` {value!r} is not a count", f"write e.g. `{name}`=20M, 1.5k or 123456")
        number = float(match[1]) * SUFFIXES[match[2]]
        count = int(number) if math.isfinite(number) else MAX_COUNT + 1
    if count < 1:
        raise IsscliError(f"`{name}` {value!r} must be at least 1", f"write e.g. `{name}`=20M")
    check_bounds(count, name, 1, MAX_COUNT)
    return count
