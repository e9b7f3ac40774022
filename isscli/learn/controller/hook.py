"""The λ controller as a training hook: binds the schedule and the unit guard to a run.

:class:`IssController` does the bookkeeping only — when to check, freeze and cut, what to log —
and leaves the arithmetic to :class:`~isscli.learn.controller.schedule.LambdaSchedule` (λ per set)
and :class:`~isscli.learn.controller.units.UnitGuard` (counting and zeroing); everything that
changes lives in one :class:`~isscli.learn.controller.state.ControllerState`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.learn.controller.schedule import LambdaSchedule
from isscli.learn.controller.state import (
    ControllerSettings,
    ControllerState,
    ControllerSummary,
    Freeze,
    Trace,
    json_round_trip,
)
from isscli.learn.controller.units import SetLayout, UnitGuard
from isscli.learn.run import JsonLog, TrainingHook

if TYPE_CHECKING:
    from isscli.learn.loop import Trainer
    from isscli.learn.run import EpochReport

#: Most batches between two checks (the default is a tenth of an epoch, at most this).
MAX_CHECK_EVERY = 20


class IssController(TrainingHook):
    """Prunes every ISS set to its target (see :mod:`isscli.learn.controller`); add it to ``TrainingRun.hooks``."""

    name = "controller"

    def __init__(self, settings: ControllerSettings, announce: Callable[[str, bool], None] | None = None) -> None:
        self.settings = settings.validate()
        self.announce = announce or (lambda message, warning: None)
        self.state = ControllerState()
        self.saved: tuple[dict[str, torch.Tensor], JSONObject] | None = None  # a resume file's state, until bind
        self.trainer: Trainer | None = None

    # -- set-up -------------------------------------------------------------------------

    def bind(self, trainer: Trainer) -> None:
        """Build the schedule and the guard on the trainer's live parameters (first call only)."""
        if self.trainer is trainer:
            return
        self.trainer = trainer
        spec = trainer.run.spec
        names = [iss.name for iss in spec.sets]
        missing = sorted(set(self.settings.targets) ^ set(names))
        if missing:
            raise IsscliError(f"the controller's targets do not match the spec's sets ({', '.join(missing)})",
                              "give one target per ISS set")
        shapes = {name: tuple(parameter.shape) for name, parameter in trainer.parameters.items()}
        self.layout = SetLayout.of(spec, self.settings.targets, shapes)
        batches = trainer.run.task.num_batches(trainer.settings.max_batches)
        check_every = self.settings.check_every or max(1, min(MAX_CHECK_EVERY, batches // 10))
        device = trainer.regularizer.multipliers.device
        if self.saved is not None:
            self.state = ControllerState.restored(*self.saved, device)
        self.guard = UnitGuard(trainer.regularizer, self.layout, self.state)
        self.schedule = LambdaSchedule(self.settings, self.layout, self.state, batches, check_every)
        self.log = JsonLog(trainer.run.paths.log, append=True)
        if self.saved is None:
            self.start(trainer.regularizer.total, device)

    def start(self, components: int, device: torch.device) -> None:
        state, layout = self.state, self.layout
        units = self.guard.units()
        state.initial = [units[name] for name in layout.names]
        for name, target, now in zip(layout.names, layout.targets, state.initial, strict=True):
            if target > now:
                raise IsscliError(f"set {name} has {now} units in use, fewer than its target {target}",
                                  f"give a target ≤ {now}")
        count = len(layout.names)
        state.lambdas, state.starts = [0.0] * count, [0.0] * count
        state.caps = [self.settings.cap or math.inf] * count
        state.dead = torch.zeros(components, dtype=torch.bool, device=device)
        state.lowest_units = dict(units)
        self.record("start", targets=dict(self.settings.targets), units=units, check_every=self.schedule.check_every,
                    settings=self.settings.to_dict())
        for index, name in enumerate(layout.names):
            if units[name] <= layout.targets[index]:
                self.freeze(index, 0, 0, "already at its target")

    # -- the hook -------------------------------------------------------------------------

    def add_group_lasso_(self, trainer: Trainer) -> bool:
        self.bind(trainer)
        state = self.state
        if state.phase != "prune":
            return True
        if any(value == 0 for i, value in enumerate(state.lambdas) if self.schedule.pruning(i)):
            self.measure_gradients()
        if any(state.lambdas):
            trainer.regularizer.add_gradient_(1.0, state.lambdas)
        return True

    @torch.no_grad()
    def measure_gradients(self) -> None:
        main = self.guard.main
        grads = {name: (p.grad if p.grad is not None else torch.zeros_like(p))
                 for name, p in self.guard.parameters.items() if name in main.tensor_names}
        self.schedule.measure_gradients(main.component_sums(grads, "square").sqrt())

    def after_backward(self, trainer: Trainer) -> None:
        self.guard.zero_dead_gradients()

    def threshold_(self, trainer: Trainer, tau: float) -> bool:
        self.bind(trainer)
        self.guard.enforce(tau)
        return True

    def after_step(self, trainer: Trainer, epoch: int, index: int) -> None:
        step = trainer.last_step
        if step is not None and step.count:
            self.schedule.add_loss(step.total, step.count)
        if self.state.phase == "prune" and index % self.schedule.check_every == 0:
            self.check(epoch, index)

    def after_epoch(self, trainer: Trainer, report: EpochReport) -> None:
        self.bind(trainer)
        state = self.state
        if state.phase == "prune":
            reason = self.schedule.validation_blow_up(report.valid.perplexity)
            if reason is not None:
                self.back_off(report.epoch, 0, reason)
        units = self.guard.units()
        state.history.add(report.epoch, self.lambdas(), units)
        self.record("epoch", epoch=report.epoch, phase=state.phase, units=units, targets=dict(self.settings.targets),
                    **{"lambda": self.lambdas()}, frozen=sorted(state.frozen), trajectory=state.trajectory_record())
        state.trajectory = Trace()
        self.announce("controller: " + "  ".join(self.describe(i, units) for i in range(len(self.layout.names))),
                      False)
        if state.phase == "prune" and report.epoch >= self.settings.prune_epochs:
            self.finish_pruning(report.epoch)

    def keeps(self, epoch: int) -> bool:
        """OUT holds a recovery epoch only: a model at exactly the target sizes."""
        return epoch > self.settings.prune_epochs

    def lambdas(self) -> dict[str, float]:
        """λ in force per set, by name."""
        return dict(zip(self.layout.names, self.state.lambdas, strict=True))

    def describe(self, index: int, units: dict[str, int]) -> str:
        name = self.layout.names[index]
        what = "frozen" if name in self.state.frozen else f"λ {self.state.lambdas[index]:.3g}"
        return f"{name} {units[name]}→{self.layout.targets[index]} ({what})"

    # -- the pruning phase ------------------------------------------------------------------

    @torch.no_grad()
    def check(self, epoch: int, index: int) -> None:
        """Zero what sits within a step of zero, count, freeze what reached its target, steer λ."""
        assert self.trainer is not None
        state, layout, schedule = self.state, self.layout, self.schedule
        batch = (epoch - 1) * schedule.batches_per_epoch + index
        lr = float(self.trainer.optimizer.param_groups[0]["lr"])
        adam = self.trainer.settings.optimizer == "adam"
        lengths = self.guard.main.squared_norms().sqrt()
        steps = [schedule.step_length(i, lr, adam) for i in range(len(layout.names))]
        skip = [not schedule.pruning(i) or state.lambdas[i] == 0 for i in range(len(layout.names))]
        self.guard.zero_near_zero(lengths, steps, skip)
        units = self.guard.units()
        self.guard.note_lowest(units)
        for i, name in enumerate(layout.names):
            if schedule.pruning(i) and units[name] <= layout.targets[i]:
                self.freeze(i, epoch, index, "reached its target")
        schedule.steer(batch, units)
        reason = schedule.training_blow_up()
        if reason is not None:
            self.back_off(epoch, index, reason)
        state.trajectory.add(index, self.lambdas(), units)

    def back_off(self, epoch: int, index: int, reason: str) -> None:
        changed = self.schedule.back_off()
        self.record("backoff", epoch=epoch, batch=index, reason=reason, **{"lambda": changed})
        halved = ", ".join(f"{name} {value:.3g}" for name, value in changed.items())
        self.announce(f"controller: {reason}; λ halved ({halved})", True)

    def freeze(self, index: int, epoch: int, batch: int, why: str, cut: int = 0) -> None:
        """λ = 0 for this set, its dead units held at zero from now on, its survivors protected."""
        state, name, last = self.state, self.layout.names[index], self.state.lambdas[index]
        state.frozen[name] = Freeze(epoch, batch, last, why)
        units = self.guard.hold_dead(index)
        state.lambdas[index] = 0.0
        self.record("freeze", set=name, epoch=epoch, batch=batch, units=units, why=why, cut=cut, **{"lambda": last})

    @torch.no_grad()
    def finish_pruning(self, epoch: int) -> None:
        """Cut every set still above its target to exactly the target (weakest groups first); then λ = 0.

        Sets are cut from the last to the first: removing a unit of layer l + 1 also removes
        the receivers that layer-l units have in its row, so layer l is counted after it.
        The weakest groups are ranked by their norms before any cut.
        """
        state, layout = self.state, self.layout
        norms = self.guard.main.norms()
        for index in reversed(range(len(layout.names))):
            name = layout.names[index]
            if name in state.frozen:
                continue
            cut = self.guard.cut_to_target(index, norms)
            state.final_cut[name] = cut
            self.freeze(index, epoch, self.schedule.batches_per_epoch, "end of the pruning phase", cut=cut)
        state.phase = "recover"
        state.lambdas = [0.0] * len(layout.names)
        units = self.guard.units()
        self.record("recover", epoch=epoch, units=units, final_cut=dict(state.final_cut))
        cuts = ", ".join(f"{name} {count}" for name, count in state.final_cut.items() if count)
        left = ", ".join(f"{name} {count}" for name, count in units.items())
        self.announce(f"controller: pruning done at epoch {epoch}; units {left}"
                      + (f" (weakest groups zeroed: {cuts})" if cuts else "") + "; recovering with λ = 0", False)

    # -- records, state -------------------------------------------------------------------

    def record(self, kind: str, **fields: Any) -> None:
        event = {"event": "controller", "kind": kind, **fields}
        if kind not in ("epoch", "start"):
            self.state.events.append(event)
        self.log.write(event)

    def summary(self) -> ControllerSummary:
        """For the final report: targets, units now, λ per set per epoch, when each set froze, back-offs."""
        state, settings = self.state, self.settings
        return ControllerSummary(
            targets=dict(settings.targets), origin=settings.origin, prune_epochs=settings.prune_epochs,
            recover_epochs=settings.recover_epochs, cap=settings.cap, phase=state.phase,
            units=self.guard.units() if self.trainer is not None else {}, lowest_units=dict(state.lowest_units),
            frozen=state.frozen, final_cut=state.final_cut, lambda_per_epoch=state.history.lambdas,
            units_per_epoch=state.history.units, epochs=state.history.points,
            backoffs=[event for event in state.events if event["kind"] == "backoff"],
        )

    def provenance(self) -> JSONObject:
        return self.settings.to_dict()

    def state_dict(self) -> tuple[dict[str, torch.Tensor], JSONObject]:
        tensors, info = self.state.saved()
        return tensors, {"settings": json_round_trip(self.settings.to_dict()), "state": info}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], info: JSONObject) -> None:
        if info.get("settings") != json_round_trip(self.settings.to_dict()):
            raise IsscliError("`resume` needs the target and controller settings the run started with",
                              "repeat the original `target_hidden`/`target_params`/`target_speedup`, "
                              "`prune_epochs`, `recover_epochs` and `group_lasso`")
        self.saved = (tensors, info["state"])
