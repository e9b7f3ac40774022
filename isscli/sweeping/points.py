"""Sweep points: one λ value, one size target, or the dense model trained as long; and the Pareto front."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from isscli.api.run_requests import FinetuneRequest, RunRequest
from isscli.io.parsing import parse_list

# -- points -------------------------------------------------------------------------------

#: What a point varies: λ, a size target (units, parameters, speed-up), or nothing (the dense point).
KINDS = ("lambda", "hidden", "params", "speedup", "dense")


@dataclass(frozen=True)
class Point:
    """One λ value, one size target, or the dense model trained for ``value`` more epochs (kind ``dense``)."""

    kind: str  # lambda | hidden | params | speedup | dense
    value: str

    @property
    def label(self) -> str:
        if self.kind == "dense":
            return "dense-lambda0"
        value = self.value.replace(",", "x").replace("/", "-")
        return f"{self.kind}-{value}"

    def describe(self) -> str:
        return {"lambda": "λ = {}", "hidden": "units {}", "params": "≤ {} parameters", "speedup": "{}× faster",
                "dense": "dense, λ = 0, {} epochs"}[self.kind].format(self.value)

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value, "label": self.label}

    def request(self, base: RunRequest, output: Path) -> RunRequest:
        """The base request with this point's λ or target, writing ``output`` (continuing its interrupted run)."""
        settings = dict(base.settings)
        resume = Path(output).with_suffix(".resume.safetensors").is_file()
        request = dataclasses.replace(base, output=output, force=not resume, resume=resume)
        if self.kind == "lambda":
            settings["group_lasso"] = float(self.value)
            if isinstance(base, FinetuneRequest) and "keep" not in settings:
                settings["keep"] = "last"  # ISS fine-tuning: the later epochs are the sparse ones
        elif self.kind == "dense":  # as long as the longest point (its epochs), with no target's phases
            settings.update(group_lasso=0.0, l1=0.0, epochs=int(self.value))
            request = dataclasses.replace(request, prune_epochs=None, recover_epochs=None)
        elif self.kind == "hidden":
            request = dataclasses.replace(request, target_hidden=self.value)
        elif self.kind == "params":
            request = dataclasses.replace(request, target_params=self.value)
        else:
            request = dataclasses.replace(request, target_speedup=float(self.value))
        return dataclasses.replace(request, settings=settings)


def make_points(lambdas: str | Sequence[float], hidden: Sequence[str], params: Sequence[str],
                speedups: str | Sequence[float]) -> list[Point]:
    """The points of a request, in order, duplicates dropped (the dense point is added by the plan); ``lambdas``
    and ``speedups`` may be comma-separated text (``"0.001,0.002"``)."""
    if isinstance(lambdas, str):
        lambdas = parse_list(lambdas, float, "lambdas", "numbers ≥ 0", "0.001,0.002", 0)
    if isinstance(speedups, str):
        speedups = parse_list(speedups, float, "target_speedup", "numbers", "4,8")
    points = [Point("lambda", f"{v:g}") for v in lambdas]
    points += [Point("hidden", str(v).replace(" ", "")) for v in hidden]
    points += [Point("params", str(v).replace(" ", "")) for v in params]
    points += [Point("speedup", f"{v:g}") for v in speedups]
    unique: list[Point] = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique


# -- the Pareto front ---------------------------------------------------------------------


def pareto_front(xs: Sequence[float], ys: Sequence[float], lower_x: bool = True, lower_y: bool = True) -> list[int]:
    """Indices of the points no other point dominates, sorted from the best x to the worst.

    A point dominates another when it is at least as good on both axes and better on one;
    ``lower_x``/``lower_y`` say which direction is better (parameters: lower; speed-up:
    higher; perplexity: lower; accuracy: higher). Equal points do not dominate each other.
    """
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    sx = [x if lower_x else -x for x in xs]
    sy = [y if lower_y else -y for y in ys]

    def dominates(a: int, b: int) -> bool:
        return sx[a] <= sx[b] and sy[a] <= sy[b] and (sx[a] < sx[b] or sy[a] < sy[b])

    front = [i for i in range(len(sx)) if not any(dominates(j, i) for j in range(len(sx)) if j != i)]
    return sorted(front, key=lambda i: (sx[i], sy[i]))


