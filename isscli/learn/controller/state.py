"""What the λ controller is asked (:class:`ControllerSettings`), where it stands (:class:`ControllerState`) and what
it reports (:class:`ControllerSummary`).

The state is everything that changes during a run, in one dataclass: :meth:`ControllerState.saved`
splits it into tensors and JSON for the resume file, :meth:`ControllerState.restored` puts it
back, so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.learn.controller.targets import TargetOrigin, origin_json
from isscli.learn.state import RunInfo, load_run_state

#: λ of a set grows (or shrinks) by this factor per check while it is behind (ahead of) schedule.
GROWTH = 1.25
#: Back off when the training (or validation) perplexity exceeds this × its best.
BACKOFF_FACTOR = 2.0


@dataclass(frozen=True)
class ControllerSettings:
    """What the controller is asked to do; ``cap`` is ``group_lasso`` (the most λ any set may get)."""

    targets: dict[str, int]
    prune_epochs: int
    recover_epochs: int
    cap: float | None = None
    check_every: int | None = None
    growth: float = GROWTH
    backoff_factor: float = BACKOFF_FACTOR
    origin: TargetOrigin | None = None  # the parameter the targets came from: recorded for reports

    def validate(self) -> ControllerSettings:
        if self.prune_epochs < 1:
            raise IsscliError(f"`prune_epochs` must be ≥ 1 (got {self.prune_epochs})", "give e.g. `prune_epochs`=4")
        if self.recover_epochs < 1:
            raise IsscliError(f"`recover_epochs` must be ≥ 1 (got {self.recover_epochs})",
                              "the survivors need at least one epoch with λ = 0")
        if self.cap is not None and not (self.cap > 0 and math.isfinite(self.cap)):
            raise IsscliError("with a target, `group_lasso` is the largest λ the controller may use, so it must be > 0",
                              "drop `group_lasso` or give e.g. `group_lasso`=0.005")
        if self.check_every is not None and self.check_every < 1:
            raise IsscliError("the controller's check interval must be ≥ 1 batch", "fix the setting")
        if not (self.growth > 1 and self.backoff_factor > 1):
            raise IsscliError("the controller's growth and back-off factors must be > 1", "fix the setting")
        return self

    def to_dict(self) -> JSONObject:
        return {**asdict(self), "origin": origin_json(self.origin)}

    @classmethod
    def from_json(cls, record: JSONObject) -> ControllerSettings:
        """What :meth:`to_dict` wrote (into a resume file), as settings again."""
        origin = TargetOrigin.from_json(record["origin"]) if record["origin"] else None
        return cls(**{**record, "targets": dict(record["targets"]), "origin": origin})

    @classmethod
    def saved_in(cls, resume: Path) -> ControllerSettings | None:
        """The settings of the interrupted run whose state is ``resume`` (so a resumed speed target is not measured
        again); None without a file, or when its run had no controller."""
        if not resume.is_file():
            return None
        record = RunInfo.read(load_run_state(resume).info, resume).hooks.get("controller", {}).get("settings")
        return None if record is None else cls.from_json(record)


def json_round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value))


@dataclass
class Trace:
    """λ and units of every set at successive points: the epochs of the run, or the checks of this epoch."""

    points: list[int] = field(default_factory=list)  # the epoch, or the batch, of each point
    lambdas: dict[str, list[float]] = field(default_factory=dict)
    units: dict[str, list[int]] = field(default_factory=dict)

    def add(self, point: int, lambdas: dict[str, float], units: dict[str, int]) -> None:
        self.points.append(point)
        for name, value in lambdas.items():
            self.lambdas.setdefault(name, []).append(value)
            self.units.setdefault(name, []).append(units[name])

    def to_json(self, key: str) -> JSONObject:
        """As the log and the resume file hold it: the points under ``key`` ("epoch" or "batch")."""
        return {key: self.points, "lambda": self.lambdas, "units": self.units}

    @classmethod
    def from_json(cls, record: JSONObject, key: str) -> Trace:
        return cls(list(record.get(key, [])), dict(record.get("lambda", {})), dict(record.get("units", {})))


@dataclass(frozen=True)
class Freeze:
    """When a set reached its target and stopped being pruned: the epoch and batch, the λ it had, and why."""

    epoch: int
    batch: int
    lambda_: float  # ``lambda`` in the JSON
    why: str

    def to_json(self) -> JSONObject:
        return {"epoch": self.epoch, "batch": self.batch, "lambda": self.lambda_, "why": self.why}

    @classmethod
    def from_json(cls, raw: JSONObject) -> Freeze:
        return cls(raw["epoch"], raw["batch"], raw["lambda"], raw["why"])


def freezes_json(frozen: dict[str, Freeze]) -> dict[str, JSONObject]:
    return {name: freeze.to_json() for name, freeze in frozen.items()}


@dataclass
class ControllerState:
    """The controller's resumable state; lists hold one entry per ISS set, in spec order."""

    phase: str = "prune"  # prune | recover
    lambdas: list[float] = field(default_factory=list)  # λ in force per set (0: not started, or frozen)
    starts: list[float] = field(default_factory=list)  # the first λ of each set (the floor is a share of it)
    caps: list[float] = field(default_factory=list)  # the most λ each set may get (lowered by back-offs)
    initial: list[int] = field(default_factory=list)  # units per set when the run started
    frozen: dict[str, Freeze] = field(default_factory=dict)  # set → when and why it froze
    dead: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))  # [Σ K] held at zero
    grad_sum: torch.Tensor | None = None  # Σ over measured batches of each component's data-gradient length
    grad_batches: int = 0
    loss_total: float = 0.0  # the training-loss window of the back-off test
    loss_count: int = 0
    window_batches: int = 0
    best_window: float | None = None
    best_valid: float | None = None
    cooldown: int = 0  # checks left without a raise of λ after a back-off
    history: Trace = field(default_factory=Trace)  # per epoch
    events: list[JSONObject] = field(default_factory=list)  # the log records of freezes, back-offs, the end of pruning
    trajectory: Trace = field(default_factory=Trace)  # this epoch's checks (logged, then cleared)
    final_cut: dict[str, int] = field(default_factory=dict)  # units zeroed by the cut at the end of pruning
    lowest_units: dict[str, int] = field(default_factory=dict)  # the fewest units each set ever had
    overridden: bool = False  # a protection once kept weights of held-dead lines: only the exact path is exact

    def trajectory_record(self) -> JSONObject:
        """This epoch's checks as logged: nothing (``{}``) in an epoch without any."""
        return self.trajectory.to_json("batch") if self.trajectory.points else {}

    def saved(self) -> tuple[dict[str, torch.Tensor], JSONObject]:
        """Tensors and JSON-able values for the resume file."""
        tensors = {"dead": self.dead.cpu()}
        if self.grad_sum is not None:
            tensors["grad_sum"] = self.grad_sum.cpu()
        info = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("dead", "grad_sum")}
        info["caps"] = [cap if math.isfinite(cap) else None for cap in self.caps]
        info["history"], info["trajectory"] = self.history.to_json("epoch"), self.trajectory_record()
        info["frozen"] = freezes_json(self.frozen)
        return tensors, json_round_trip(info)

    @classmethod
    def restored(cls, tensors: dict[str, torch.Tensor], info: JSONObject, device: torch.device) -> ControllerState:
        values = dict(info)
        values["caps"] = [math.inf if cap is None else cap for cap in values["caps"]]
        values["history"] = Trace.from_json(values["history"], "epoch")
        values["trajectory"] = Trace.from_json(values["trajectory"], "batch")
        values["frozen"] = {name: Freeze.from_json(raw) for name, raw in values["frozen"].items()}
        grad_sum = tensors.get("grad_sum")
        return cls(**values, dead=tensors["dead"].to(device),
                   grad_sum=None if grad_sum is None else grad_sum.to(device))


@dataclass
class ControllerSummary:
    """How a run with a size target went (the train JSON's ``controller``): targets, units now and the fewest ever,
    λ and units per set per epoch, when each set froze, the final cut and the back-offs."""

    targets: dict[str, int]
    origin: TargetOrigin | None  # the parameter the targets came from (``target_hidden``, …), what was measured
    prune_epochs: int
    recover_epochs: int
    cap: float | None  # the most λ any set could get (``group_lasso``)
    phase: str  # prune | recover
    units: dict[str, int]
    lowest_units: dict[str, int]
    frozen: dict[str, Freeze]  # set → epoch, batch, λ and why it froze
    final_cut: dict[str, int]  # units zeroed by the cut at the end of the pruning phase
    lambda_per_epoch: dict[str, list[float]]
    units_per_epoch: dict[str, list[int]]
    epochs: list[int]
    backoffs: list[JSONObject]  # the log records of the back-offs

    def to_json(self) -> JSONObject:
        return {**asdict(self), "origin": origin_json(self.origin), "frozen": freezes_json(self.frozen)}
