"""Where an :class:`~isscli.learn.your_loop.loop.IssTraining` stands, as its ``summary()`` reports it.

With a target, the controller's record (:class:`~isscli.learn.controller.ControllerSummary`: where the targets came
from, when each set froze, the back-offs, λ and units per epoch) is part of it, as the command line reports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from isscli.io.jsonfile import JSONObject
from isscli.learn.controller import ControllerSummary
from isscli.learn.controller.state import Freeze, freezes_json, json_round_trip
from isscli.learn.controller.targets import TargetOrigin, origin_json


@dataclass
class IssSummary:
    """Where an :class:`~isscli.learn.your_loop.loop.IssTraining` stands: sizes, λ, what was assumed, and the
    controller's record."""

    phase: str  # "prune" | "recover" (with a target) | "fixed" (a fixed λ)
    epochs: int  # epochs ended (end_epoch calls)
    components: dict[str, int]  # units per set in the model as built
    units: dict[str, int]  # units per set now (components whose receivers are not all zero)
    targets: dict[str, int] | None
    lambdas: dict[str, float]  # λ in force per set
    group_lasso: float | None  # the fixed λ, or with a target the cap on λ (None: no cap)
    l1: float
    tau: float
    optimizer: str  # "adam" | "sgd": the step lengths the controller assumed
    optimizer_class: str  # the optimizer it was told
    log_loss: bool  # whether losses were compared as log-likelihoods (else as ratios)
    parameters: int  # of the model now
    compacted_parameters: int  # after compaction at the current units
    losses_skipped: int  # batch and validation losses ≤ 0, left out of the back-off test
    optimizer_reset_at_epoch: int | None = None  # the optimizer's state cleared as recovery started
    origin: TargetOrigin | None = None  # the parameter the targets came from
    lowest_units: dict[str, int] = field(default_factory=dict)  # the fewest units each set ever had
    frozen: dict[str, Freeze] = field(default_factory=dict)  # set → when and why it reached its target
    final_cut: dict[str, int] = field(default_factory=dict)  # units zeroed at the end of the pruning phase
    backoffs: list[JSONObject] = field(default_factory=list)  # the controller's log records of its back-offs
    lambda_per_epoch: dict[str, list[float]] = field(default_factory=dict)
    units_per_epoch: dict[str, list[int]] = field(default_factory=dict)

    def with_record(self, record: ControllerSummary) -> IssSummary:
        """This summary with the controller's record of the run."""
        return dataclasses.replace(
            self, origin=record.origin, lowest_units=record.lowest_units, frozen=record.frozen,
            final_cut=record.final_cut, backoffs=record.backoffs, lambda_per_epoch=record.lambda_per_epoch,
            units_per_epoch=record.units_per_epoch)

    def to_json(self) -> JSONObject:
        """Every field as plain JSON values."""
        result: JSONObject = json_round_trip({**asdict(self), "origin": origin_json(self.origin),
                                                  "frozen": freezes_json(self.frozen)})
        return result
