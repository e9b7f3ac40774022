"""Sizes for a parameter budget on any model: how many parameters a compaction to given units leaves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

from isscli.io.errors import IsscliError
from isscli.iss.spec import GroupSpec
from isscli.learn.controller.targets import fraction_grid, sizes_at


def compacted_parameters(spec: GroupSpec, shapes: Mapping[str, Sequence[int]], units: Mapping[str, int]) -> int:
    """Parameters of the model (all of ``shapes``) after compaction to ``units`` per set.

    Removing a unit removes every line (row or column) its slices name, as :func:`isscli.iss.surgery.compact`
    does; no two slices share a line (:func:`~isscli.iss.spec.check_spec`), so counts add up.

    Examples:
        >>> from isscli.iss.spec import GroupSpec, IssSet, TensorSlice
        >>> spec = GroupSpec([IssSet("s", 4, [TensorSlice("w", dim=0), TensorSlice("v", dim=1)])])
        >>> compacted_parameters(spec, {"w": (4, 3), "v": (2, 4), "b": (2,)}, {"s": 1})
        7
    """
    removed: dict[tuple[str, int], int] = {}
    for iss in spec.sets:
        for piece in iss.slices:
            key = (piece.tensor, piece.dim)
            removed[key] = removed.get(key, 0) + piece.blocks * (iss.components - units[iss.name])
    return sum(math.prod(size - removed.get((name, dim), 0) for dim, size in enumerate(shape))
               for name, shape in shapes.items())


def sizes_for_budget(spec: GroupSpec, shapes: Mapping[str, Sequence[int]], current: Mapping[str, int],
                     limit: int) -> tuple[dict[str, int], int]:
    """The largest same fraction of every set's ``current`` units whose compacted model has ≤ ``limit`` parameters.

    The fraction is bisected over :func:`~isscli.learn.controller.targets.fraction_grid` (the fractions at which some
    set gains a unit), as the command line's ``target_params`` does: at the next one the count exceeds ``limit``.
    Returns the units per set and their parameter count.
    """
    names = [iss.name for iss in spec.sets]
    base = [current[name] for name in names]
    grid = fraction_grid(base)

    def count(fraction: Fraction) -> int:
        return compacted_parameters(spec, shapes, dict(zip(names, sizes_at(fraction, base))))

    now, smallest = count(grid[-1]), count(grid[0])
    if now <= limit:
        raise IsscliError(f"`target_params` {limit:,} is not below the {now:,} parameters the model has "
                          "(compacted as it is now), so there is nothing to prune", "give a smaller budget")
    if smallest > limit:
        raise IsscliError(f"`target_params` {limit:,}: even one unit per set leaves {smallest:,} parameters",
                          f"give at least {smallest:,}")
    low, high = 0, len(grid) - 1  # count(grid[low]) ≤ limit < count(grid[high])
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(grid[middle]) <= limit else (low, middle)
    return dict(zip(names, sizes_at(grid[low], base))), count(grid[low])
