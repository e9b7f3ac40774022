"""What the λ controller is asked (:class:`ControllerSettings`) and where it stands (:class:`ControllerState`).

The state is everything that changes during a run, in one dataclass: :meth:`ControllerState.saved`
splits it into tensors and JSON for the resume file, :meth:`ControllerState.restored` puts it
back, so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from isscli.io.errors import IsscliError

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
    origin: dict[str, Any] = field(default_factory=dict)  # the parameter the targets came from, for reports

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def json_round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value))


@dataclass
class ControllerState:
    """The controller's resumable state; lists hold one entry per ISS set, in spec order."""

    phase: str = "prune"  # prune | recover
    lambdas: list[float] = field(default_factory=list)  # λ in force per set (0: not started, or frozen)
    starts: list[float] = field(default_factory=list)  # the first λ of each set (the floor is a share of it)
    caps: list[float] = field(default_factory=list)  # the most λ each set may get (lowered by back-offs)
    initial: list[int] = field(default_factory=list)  # units per set when the run started
    frozen: dict[str, dict[str, Any]] = field(default_factory=dict)  # set → when and why it froze
    dead: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))  # [Σ K] held at zero
    grad_sum: torch.Tensor | None = None  # Σ over measured batches of each component's data-gradient length
    grad_batches: int = 0
    loss_total: float = 0.0  # the training-loss window of the back-off test
    loss_count: int = 0
    window_batches: int = 0
    best_window: float | None = None
    best_valid: float | None = None
    cooldown: int = 0  # checks left without a raise of λ after a back-off
    history: dict[str, Any] = field(default_factory=lambda: {"epoch": [], "lambda": {}, "units": {}})
    events: list[dict[str, Any]] = field(default_factory=list)  # freezes, back-offs, the end of pruning
    trajectory: dict[str, Any] = field(default_factory=dict)  # this epoch's checks (logged, then cleared)
    final_cut: dict[str, int] = field(default_factory=dict)  # units zeroed by the cut at the end of pruning
    lowest_units: dict[str, int] = field(default_factory=dict)  # the fewest units each set ever had
    overridden: bool = False  # a protection once kept weights of held-dead lines: only the exact path is exact

    def saved(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and JSON-able values for the resume file."""
        tensors = {"dead": self.dead.cpu()}
        if self.grad_sum is not None:
            tensors["grad_sum"] = self.grad_sum.cpu()
        info = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("dead", "grad_sum")}
        info["caps"] = [cap if math.isfinite(cap) else None for cap in self.caps]
        return tensors, json_round_trip(info)

    @classmethod
    def restored(cls, tensors: dict[str, torch.Tensor], info: dict[str, Any], device: torch.device) -> ControllerState:
        values = dict(info)
        values["caps"] = [math.inf if cap is None else cap for cap in values["caps"]]
        grad_sum = tensors.get("grad_sum")
        return cls(**values, dead=tensors["dead"].to(device),
                   grad_sum=None if grad_sum is None else grad_sum.to(device))
