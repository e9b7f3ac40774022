"""What the user asks for, in units per ISS set: checked targets, and sizes for a budget or a speed-up.

A parameter budget (``target_params``) or a speed-up measured on this machine
(``target_speedup``) becomes units per set by keeping the same share of every set: the
largest share that fits (:func:`sizes_for_parameters`, :func:`sizes_for_speedup`, both a
bisection over the shares at which some set gains a unit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction

import torch
from torch import nn

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.parsing import parse_count, parse_list
from isscli.iss.accounting import parameter_count
from isscli.iss.spec.schema import GroupSpec
from isscli.iss.surgery import removable_components
from isscli.models.config import ModelConfig
from isscli.models.registry import is_tied, model_tensors


def one_target(target_hidden: str | Sequence[int] | None, target_params: str | int | None,
               target_speedup: float | None, prune_epochs: int | None, recover_epochs: int | None) -> str | None:
    """The one size target asked for (its parameter name), or None; more than one is an error, and so are the
    phases without a target. A malformed number is refused here, before any corpus is looked for."""
    given = [name for name, value in (("target_hidden", target_hidden), ("target_params", target_params),
                                      ("target_speedup", target_speedup)) if value is not None]
    if len(given) > 1:
        raise IsscliError(f"give one target, not {' and '.join(f'`{name}`' for name in given)}",
                          "choose `target_hidden`, `target_params` or `target_speedup`")
    if not given and (prune_epochs is not None or recover_epochs is not None):
        raise IsscliError("`prune_epochs` and `recover_epochs` belong to a target run",
                          "add `target_hidden`, `target_params` or `target_speedup`, or drop them")
    if target_params is not None:
        parse_count(target_params, "target_params")
    elif target_hidden is not None:
        parse_list(target_hidden, int, "target_hidden", "unit counts, one per ISS set", "400,350")
    return given[0] if given else None


@dataclass(frozen=True)
class TargetOrigin:
    """Where a run's targets came from: the request's parameter and its value, and what was counted (a parameter
    budget: the ``limit`` and the ``parameters`` after compaction) or measured (a speed-up, on ``device``)."""

    parameter: str  # target_hidden | target_params | target_speedup
    value: str | int | float | Sequence[int]
    limit: int | None = None
    parameters: int | None = None
    measured_speedup: float | None = None
    device: str | None = None

    def to_json(self) -> JSONObject:
        """As the controller's settings record it (its ``origin``): the fields that apply."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, raw: JSONObject) -> TargetOrigin:
        """What :meth:`to_json` wrote (into a resume file)."""
        return cls(**raw)


def origin_json(origin: TargetOrigin | None) -> JSONObject:
    """An origin as the reports hold it: ``{}`` where no target was given."""
    return origin.to_json() if origin is not None else {}


def receiver_units(spec: GroupSpec, tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    """Units per set that ``compact`` would keep: components whose receivers are not all zero."""
    return {iss.name: int((~removable_components(tensors, iss)).sum()) for iss in spec.sets}


def units_of(model: nn.Module, spec: GroupSpec) -> dict[str, int]:
    """Units per set of a live model (components whose receivers are not all zero)."""
    return receiver_units(spec, model_tensors(model))


def check_targets(spec: GroupSpec, targets: dict[str, int], units: dict[str, int], name: str) -> None:
    """Every target is a unit count between 1 and what the set has now; something must be pruned."""
    for iss in spec.sets:
        if not iss.receivers:
            raise IsscliError(f"set {iss.name} has no receiver slices, so no unit of it can be removed",
                              "use a spec that says which weights consume h_k (`isscli groups CKPT`)")
        target, now = targets[iss.name], units[iss.name]
        if target < 1:
            raise IsscliError(f"`{name}`: set {iss.name} needs at least 1 unit (got {target})",
                              "every layer must keep a unit")
        if target > now:
            what = f"{iss.components} units" if now == iss.components else f"{now} units in use (of {iss.components})"
            raise IsscliError(f"`{name}`: set {iss.name} has {what}, fewer than the target {target}",
                              f"give a target ≤ {now}")
    if all(targets[iss.name] == units[iss.name] for iss in spec.sets):
        raise IsscliError(f"`{name}`: every set is already at its target size, so there is nothing to prune",
                          "give smaller targets")


def targets_from_sizes(spec: GroupSpec, sizes: Sequence[int], name: str = "target_hidden") -> dict[str, int]:
    names = [iss.name for iss in spec.sets]
    if len(sizes) != len(names):
        raise IsscliError(f"`{name}` gives {len(sizes)} size(s) but the model has {len(names)} ISS sets "
                          f"({', '.join(names)})", "give one size per set, in this order")
    return dict(zip(names, (int(size) for size in sizes), strict=True))


def check_layout(config: ModelConfig, spec: GroupSpec, name: str) -> None:
    """Parameter and speed targets map sets onto layer-directions: the spec must be the derived one."""
    flat = [size for sizes in config.hidden_sizes for size in sizes]
    if [iss.components for iss in spec.sets] != flat:
        raise IsscliError(f"`{name}` needs one ISS set per layer-direction, in order (the derived spec)",
                          "drop `spec`, or give the sizes with `target_hidden`")


def sized_config(config: ModelConfig, sizes: Sequence[int]) -> ModelConfig:
    """The config with these units per layer-direction (in set order), as ``compact`` would leave it."""
    flat = iter(sizes)
    hidden = [[int(next(flat)) for _ in layer] for layer in config.hidden_sizes]
    raw = config.to_dict()
    raw["hidden_sizes"] = hidden
    if config.family == "rhn":
        raw["embedding_size"] = hidden[0][0]
    elif is_tied(config):
        raw["embedding_size"] = sum(hidden[-1])
    return ModelConfig.from_dict(raw)


def fraction_grid(components: Sequence[int]) -> list[Fraction]:
    """Every kept fraction at which some set gains a unit, in increasing order."""
    return sorted({Fraction(j, k) for k in components for j in range(1, k + 1)})


def sizes_at(fraction: Fraction, components: Sequence[int]) -> list[int]:
    """The same fraction of every set's units, rounded down, at least one."""
    return [max(1, math.floor(fraction * k)) for k in components]


def _largest(grid: list[Fraction], good: Callable[[Fraction], bool]) -> int:
    """Index of the largest grid entry that is ``good``, for a predicate true up to some point; -1 if none."""
    low, high = -1, len(grid) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if good(grid[middle]):
            low = middle
        else:
            high = middle - 1
    return low


def _flat_sizes(config: ModelConfig, current: Sequence[int] | None) -> list[int]:
    return list(current) if current is not None else [size for sizes in config.hidden_sizes for size in sizes]


def sizes_for_parameters(
    config: ModelConfig, limit: int, current: Sequence[int] | None = None
) -> tuple[list[int], int]:
    """The largest sizes keeping the same fraction of every set whose compacted model has ≤ ``limit`` parameters.

    The fraction is of ``current`` (the units each set has now; default: the config's sizes).
    Keeping one more unit in every set would exceed ``limit``.
    """
    components = _flat_sizes(config, current)
    grid = fraction_grid(components)

    def count(fraction: Fraction) -> int:
        return parameter_count(sized_config(config, sizes_at(fraction, components)))

    index = _largest(grid, lambda fraction: count(fraction) <= limit)
    if index < 0:
        smallest = count(grid[0])
        raise IsscliError(f"`target_params` {limit:,}: even one unit per layer leaves {smallest:,} parameters "
                          "(embedding and output layer)", f"give at least {smallest:,}")
    return sizes_at(grid[index], components), count(grid[index])


def speedup_meter(config: ModelConfig, device: torch.device, repeats: int = 5, warmup: int = 1,
                  batch: int = 10, steps: int = 30) -> Callable[[list[int]], float]:
    """Speed-up of a random-weight model of given sizes over the dense one, timed here (isscli bench's harness)."""
    from isscli.models import build_model
    from isscli.runtime.benchmark import inference
    from isscli.runtime.timing import clock_for, time_interleaved

    torch.manual_seed(0)
    dense = build_model(config).eval().to(device)

    def measure(sizes: list[int]) -> float:
        torch.manual_seed(0)
        small = build_model(sized_config(config, sizes)).eval().to(device)
        with torch.inference_mode():
            runs = {"baseline": inference(dense, "full", batch, steps, device, 0),
                    "model": inference(small, "full", batch, steps, device, 0)}
            timings = time_interleaved(runs, repeats, warmup, clock_for(device))
        return timings["baseline"].median_ms / timings["model"].median_ms

    return measure


def sizes_for_speedup(
    config: ModelConfig, speedup: float, measure: Callable[[list[int]], float], current: Sequence[int] | None = None
) -> tuple[list[int], float]:
    """The largest sizes keeping the same fraction of every set whose measured speed-up is ≥ ``speedup``.

    A bisection over the kept fraction; each probe times a random-weight model against the
    dense one (``measure``). Timings are noisy, so the answer is as good as the machine is quiet.
    """
    if not speedup > 1:
        raise IsscliError(f"`target_speedup` {speedup:g} is not a speed-up", "give a factor above 1, e.g. 4")
    components = _flat_sizes(config, current)
    grid = fraction_grid(components)
    measured: dict[Fraction, float] = {}

    def fast_enough(fraction: Fraction) -> bool:
        if fraction not in measured:
            measured[fraction] = measure(sizes_at(fraction, components))
        return measured[fraction] >= speedup

    if not fast_enough(grid[0]):
        raise IsscliError(f"`target_speedup` {speedup:g}: one unit per layer is only {measured[grid[0]]:.2f}× "
                          "faster than the dense model on this machine", "give a smaller target")
    index = _largest(grid[:-1], fast_enough) if len(grid) > 1 else 0
    index = max(index, 0)
    return sizes_at(grid[index], components), measured[grid[index]]
