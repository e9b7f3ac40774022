"""ISS inside your own training loop: group Lasso, τ-zeroing and the size-target λ controller as one object.

:class:`IssTraining` is called at three fixed points of any loop — the user's model, optimizer, loss and
data loader stay as they are::

    for epoch in range(iss.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            iss.after_backward(loss)   # 1
            optimizer.step()
            iss.after_step()           # 2
        iss.end_epoch(valid_loss)      # 3

1. **after the backward pass, before clipping and the step.** The gradient of the data loss is complete, so
   ``λ·∂R/∂w`` (paper Eq. 3, one λ per ISS set) and L1's ``D·sign(w)`` (Appendix A) are added into ``.grad``
   in place, exactly as isscli's own :class:`~isscli.learn.loop.Trainer` adds them
   (:class:`~isscli.iss.regularizer.GroupLasso`: no autograd graph for R). Then the gradients of units the
   controller holds dead are zeroed, so they weigh nothing in the clipping and the step. The loss itself
   feeds the controller's back-off test. Clip (if you do) after this call, so the whole gradient is clipped,
   as the paper's code does; with an AMP ``GradScaler``, call ``scaler.unscale_(optimizer)`` first.
2. **after the optimizer's step.** The step is what carries weights to (or past) zero, so this is where
   every regularized weight with ``|w| < τ`` is zeroed (paper, after Eq. 4) — through the controller's
   guard, which never takes a set below its target — and where, every ``check_every`` batches, the
   controller counts units, freezes the sets that reached their targets and steers λ.
3. **at the end of each epoch.** The validation back-off test; after ``prune_epochs`` epochs every set
   still above its target loses its weakest groups (exactly the target sizes), and recovery (λ = 0, dead
   units held at zero) follows for ``recover_epochs``.

With a target (``target_hidden`` units per set, or a ``target_params`` budget) no λ is guessed: the controller
is the one the command line uses (:class:`~isscli.learn.controller.IssController` with its ``LambdaSchedule`` and
``UnitGuard``), bound to this loop by :class:`LoopTrainer`, the part of a trainer it reads. Its first λ of a set
is a tenth of the data-gradient lengths it measures, so it is free of the loss's scale. Without a target,
``group_lasso`` is a fixed λ.

**What λ means.** λ multiplies R(w) = Σ_k ‖w_k‖, whose gradient is added to the gradient of the loss *as you
computed it*: with a mean-reduced loss (PyTorch's default) λ is per example; a loss summed over B examples
needs B× the λ for the same effect. ``l1`` (D) is on the same footing.

**The back-off test.** The controller halves every pruning set's λ when "the loss doubled over its best". For a
training loss it compares windows of ``log(loss)`` additively (log 2 apart is a doubling), so any positive loss
(MSE, MAE, cross-entropy) is compared as a ratio; a batch loss ≤ 0 cannot double and is left out of the test
(counted in :attr:`IssSummary.losses_skipped`). A loss that is already a log-likelihood (cross-entropy,
Gaussian NLL, possibly negative) can be compared as the command line compares perplexity — a rise of log 2 —
with ``log_loss=True``. ``end_epoch(valid_loss)`` takes a lower-is-better validation loss on the same footing
(2× its best backs off); for an accuracy pass the error rate ``1 - accuracy``. A non-finite loss stops
training with :class:`~isscli.learn.run.TrainingDiverged` before the step could write it into the weights.

**Accumulation, several processes, resuming.** Call the three points once per optimizer step (with gradient
accumulation: after the last backward). Under DistributedDataParallel every process holds its own
:class:`IssTraining`; give each the loss averaged over all processes (or None), so that all take the same
back-off decisions. To resume, build the :class:`IssTraining` as at the start of the run — before loading the
model's saved weights — then load the model's, the optimizer's and its own :meth:`~IssTraining.state_dict`;
``iss.epoch`` and ``iss.batch`` say where the loop goes on.
"""

from __future__ import annotations

import logging
import math
import operator
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from isscli.io.errors import IsscliError
from isscli.iss.regularizer import GroupLasso
from isscli.iss.spec import GroupSpec, check_spec
from isscli.learn.controller import ControllerSettings, IssController
from isscli.learn.controller.state import json_round_trip
from isscli.learn.controller.targets import check_targets, receiver_units, targets_from_sizes
from isscli.learn.recipes import PAPER_THRESHOLD
from isscli.learn.run import TrainingDiverged
from isscli.live.adapter import (
    LoopPaths,
    LoopReport,
    LoopRun,
    LoopSettings,
    LoopStep,
    LoopTask,
    LoopTrainer,
    LoopValid,
)
from isscli.live.budget import compacted_parameters, sizes_for_budget
from isscli.live.compact import ModuleCompaction, compact_module
from isscli.live.model import parameter_tensors
from isscli.live.trace import derive_module_spec

if TYPE_CHECKING:
    from isscli.learn.loop import EpochReport, Trainer

logger = logging.getLogger(__name__)
#: The ``format`` entry of :meth:`IssTraining.state_dict`.
STATE_FORMAT = "isscli.live.loop/1"


# -- the summary -----------------------------------------------------------------------------------


@dataclass
class IssSummary:
    """Where an :class:`IssTraining` stands: sizes, λ, what was assumed, and the controller's record."""

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
    origin: dict[str, Any] = field(default_factory=dict)  # the parameter the targets came from
    lowest_units: dict[str, int] = field(default_factory=dict)  # the fewest units each set ever had
    frozen: dict[str, dict[str, Any]] = field(default_factory=dict)  # set → when and why it reached its target
    final_cut: dict[str, int] = field(default_factory=dict)  # units zeroed at the end of the pruning phase
    backoffs: list[dict[str, Any]] = field(default_factory=list)
    lambda_per_epoch: dict[str, list[float]] = field(default_factory=dict)
    units_per_epoch: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return json_round_trip(asdict(self))


# -- the object ------------------------------------------------------------------------------------


def optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    """The step lengths the controller assumes: "adam" for Adam and AdamW, "sgd" for every other optimizer
    (the cautious choice: it only decides which groups are within one step of zero)."""
    return "adam" if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) else "sgd"


class IssTraining:
    """Learns ISS in the user's own training loop: group Lasso, τ-zeroing, L1 and the size-target controller.

    Args:
        model: the model; its ``named_parameters()`` names are the spec's tensor names.
        optimizer: the optimizer that updates ``model`` (the controller reads the lr of its first param group).
        batches_per_epoch: batches between two :meth:`end_epoch` calls (``len(loader)``); needed with a target.
        spec: the ISS sets (a :class:`~isscli.iss.spec.GroupSpec` over ``model.named_parameters()`` names).
            None: derived from ``example_input`` by :func:`isscli.live.trace.derive_module_spec`.
        example_input: one batch of model input, to derive the spec (and to :meth:`compact` later).
        target_hidden: units to keep per set: one int for every set, a list in spec order, or
            ``{set name: units}`` (a set left out keeps the units it has).
        target_params: a budget: parameters of the whole model after compaction; every set keeps the same
            fraction of its units, the largest that fits (one more unit would exceed it).
        group_lasso: λ. Without a target, the fixed λ of every set; with one, the most λ the controller may
            use (None or 0: no cap).
        tau: τ: after every step, zero regularized weights with ``|w| < τ``. Default: 1e-4 (the command
            line's) when a target, λ or L1 is on, else 0.
        l1: the fixed L1 strength D over the regularized tensors (Appendix A).
        prune_epochs: epochs of the pruning phase (needed with a target).
        recover_epochs: epochs with λ = 0 after it (default: a quarter of ``prune_epochs``, at least 1).
        check_every: batches between the controller's checks (default: a tenth of an epoch, at most 20).
        log_loss: the losses are log-likelihoods: back off on a rise of log 2, not a doubling.
        log: a JSON-lines file the controller appends its records to (start, freezes, back-offs, epochs).
        reset_optimizer: clear the optimizer's state (Adam's moments, momentum) when recovery starts: built
            up under λ's gradients, Adam's second moments would keep the recovery's steps many times too
            small. Recorded in :attr:`IssSummary.optimizer_reset_at_epoch`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from isscli.iss.spec import derive_spec
        >>> class Forecaster(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lstm, self.head = nn.LSTM(3, 8, 2, batch_first=True), nn.Linear(8, 1)
        ...     def forward(self, x):
        ...         return self.head(self.lstm(x)[0][:, -1])
        >>> _ = torch.manual_seed(0)
        >>> model = Forecaster()
        >>> optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        >>> x, y = torch.randn(40, 6, 3), torch.randn(40, 1)
        >>> spec = derive_spec({name: p.detach() for name, p in model.named_parameters()})
        >>> iss = IssTraining(model, optimizer, batches_per_epoch=4, spec=spec, target_hidden=[5, 3],
        ...                   prune_epochs=2)
        >>> for epoch in range(iss.epochs):
        ...     for inputs, wanted in zip(x.split(10), y.split(10)):
        ...         optimizer.zero_grad()
        ...         loss = nn.functional.mse_loss(model(inputs), wanted)
        ...         loss.backward()
        ...         iss.after_backward(loss)
        ...         optimizer.step()
        ...         iss.after_step()
        ...     iss.end_epoch()
        >>> iss.units, iss.phase
        ({'lstm.l0': 5, 'lstm.l1': 3}, 'recover')
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, batches_per_epoch: int | None = None, *,
        spec: GroupSpec | None = None, example_input: Any = None,
        target_hidden: int | Sequence[int] | Mapping[str, int] | None = None, target_params: int | None = None,
        group_lasso: float | None = None, tau: float | None = None, l1: float = 0.0,
        prune_epochs: int | None = None, recover_epochs: int | None = None, check_every: int | None = None,
        log_loss: bool = False, log: str | os.PathLike[str] | None = None, reset_optimizer: bool = True,
    ) -> None:
        targeted = _check_arguments(batches_per_epoch, target_hidden, target_params, group_lasso, tau, l1,
                                    prune_epochs, recover_epochs, check_every)
        self.model, self.optimizer, self.log_loss = model, optimizer, bool(log_loss)
        self.spec = _resolve_spec(model, spec, example_input)
        self.parameters = dict(model.named_parameters())
        _check_optimizer(optimizer, self.parameters, self.spec)
        lam = float(group_lasso or 0.0)
        self.group_lasso = (lam or None) if targeted else lam
        self.l1 = float(l1)
        self.tau = float(tau) if tau is not None else (PAPER_THRESHOLD if targeted or lam or l1 else 0.0)
        self.optimizer_kind = optimizer_kind(optimizer)
        if self.optimizer_kind == "sgd" and type(optimizer) is not torch.optim.SGD:
            logger.info("IssTraining: the λ controller assumes SGD step lengths for %s", type(optimizer).__name__)
        self.regularizer = GroupLasso(self.spec, self.parameters)
        self.epoch, self.batch, self.losses_skipped = 1, 0, 0
        self.reset_optimizer, self.optimizer_reset_at_epoch = bool(reset_optimizer), None
        self._step: LoopStep | None = None
        self.controller: IssController | None = None
        self.targets: dict[str, int] | None = None
        self.prune_epochs = self.recover_epochs = 0
        if targeted:
            self._start_controller(int(batches_per_epoch or 0), target_hidden, target_params, prune_epochs,
                                   recover_epochs, check_every, log)

    def _start_controller(self, batches: int, target_hidden: Any, target_params: Any, prune_epochs: Any,
                          recover_epochs: Any, check_every: int | None, log: Any) -> None:
        with torch.no_grad():
            units = receiver_units(self.spec, self.parameters)
        if target_params is not None:
            shapes = {name: tuple(p.shape) for name, p in self.parameters.items()}
            limit = _whole(target_params, "target_params")
            targets, count = sizes_for_budget(self.spec, shapes, units, limit)
            origin = {"parameter": "target_params", "value": limit, "limit": limit, "parameters": count}
            check_targets(self.spec, targets, units, "target_params")
        else:
            targets = _targets_of(self.spec, target_hidden, units)
            origin = {"parameter": "target_hidden", "value": [targets[iss.name] for iss in self.spec.sets]}
            check_targets(self.spec, targets, units, "target_hidden")
        prune = int(prune_epochs)
        recover = int(recover_epochs) if recover_epochs is not None else max(1, prune // 4)
        settings = ControllerSettings(targets, prune, recover, cap=self.group_lasso, check_every=check_every,
                                      origin=origin)
        self.controller = IssController(settings, announce=self._announce)
        self.targets, self.prune_epochs, self.recover_epochs = dict(targets), prune, recover
        path = Path(os.devnull) if log is None else Path(log)
        run = LoopRun(self.spec, LoopTask(batches), LoopPaths(path))
        self._view = LoopTrainer(run, LoopSettings(self.optimizer_kind), self.parameters, self.regularizer,
                                 self.optimizer)
        self.controller.bind(self._trainer)

    def _announce(self, message: str, warning: bool) -> None:
        """The controller's notes, to the ``isscli.live.loop`` logger. It speaks of perplexity (the command line's
        score); with ``log_loss`` off what it compares is the ratio of your losses, so it says "loss"."""
        text = message if self.log_loss else message.replace("perplexity", "loss")
        (logger.warning if warning else logger.info)("IssTraining %s", text)

    @property
    def _trainer(self) -> Trainer:
        return cast("Trainer", self._view)  # the controller reads only what LoopTrainer holds

    # -- the three call points --------------------------------------------------------------------

    def after_backward(self, loss: torch.Tensor | float | None = None) -> None:
        """Add λ·∂R/∂w (the controller's λ per set, or the fixed λ) and L1 into ``.grad``; zero dead units' grads.

        Call it after ``loss.backward()``, before clipping and ``optimizer.step()``.

        Args:
            loss: the scalar loss of this batch (what ``backward`` was called on), for the back-off test; None
                leaves this batch out of it. A NaN or infinite loss raises
                :class:`~isscli.learn.run.TrainingDiverged` before any weight changes.
        """
        self._step = self._loss_step(loss)
        controller = self.controller
        if controller is not None:
            controller.add_group_lasso_(self._trainer)
        elif self.group_lasso:
            self.regularizer.add_gradient_(self.group_lasso)
        if self.l1 > 0:
            self.regularizer.add_l1_gradient_(self.l1)
        if controller is not None:
            controller.after_backward(self._trainer)

    def after_step(self) -> None:
        """Zero weights with ``|w| < τ`` (never a set below its target) and run the controller's periodic check.

        Call it after ``optimizer.step()``, once per batch.
        """
        self.batch += 1
        controller = self.controller
        if controller is None:
            if self.tau > 0:
                self.regularizer.threshold_(self.tau)
            return
        self._view.last_step, self._step = self._step, None
        controller.threshold_(self._trainer, self.tau)
        controller.after_step(self._trainer, self.epoch, self.batch)

    def end_epoch(self, valid_loss: float | None = None) -> None:
        """End an epoch: the validation back-off test, the end of the pruning phase (exact targets), recovery.

        Args:
            valid_loss: the epoch's validation loss, lower is better (for accuracy, pass ``1 - accuracy``);
                2× its best (a rise of log 2 with ``log_loss``) halves λ. None: no validation test.
        """
        controller = self.controller
        if controller is not None:
            valid = self._valid_value(valid_loss)
            pruning = self.phase == "prune"
            controller.after_epoch(self._trainer, cast("EpochReport", LoopReport(self.epoch, LoopValid(valid))))
            if pruning and self.phase == "recover" and self.reset_optimizer:
                self.optimizer.state.clear()
                self.optimizer_reset_at_epoch = self.epoch
        self.epoch, self.batch = self.epoch + 1, 0

    # -- losses -----------------------------------------------------------------------------------

    def _loss_step(self, loss: torch.Tensor | float | None) -> LoopStep | None:
        if loss is None:
            return None
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise IsscliError(f"`loss` has shape {tuple(loss.shape)}, not one number",
                                  "pass the scalar loss that `backward()` was called on")
            loss = loss.detach()
        value = float(loss)
        self._check_finite(value, f"the loss became {value} at batch {self.batch + 1}")
        if self.controller is None:  # a fixed λ: no back-off test
            return None
        if self.log_loss:
            return LoopStep(value, 1)
        if value > 0:
            return LoopStep(math.log(value), 1)
        self._skipped("training loss", value)
        return None

    def _valid_value(self, valid_loss: float | None) -> float:
        """The validation loss as the controller's ratio test reads it; the best so far (no test) when None."""
        assert self.controller is not None
        best = self.controller.state.best_valid
        skip = best if best is not None else math.nan  # neither a back-off nor a new best
        if valid_loss is None:
            return skip
        value = float(valid_loss)
        self._check_finite(value, f"the validation loss is {value}")
        if self.log_loss:
            return math.exp(min(value, 700.0))
        if value > 0:
            return value
        self._skipped("validation loss", value)
        return skip

    def _check_finite(self, value: float, what: str) -> None:
        if math.isfinite(value):
            return
        if self.controller is not None:
            advice = "lower the learning rate, or cap λ with `group_lasso`"
        elif self.group_lasso or self.l1:
            advice = "lower `group_lasso` or `l1`, or the learning rate"
        else:
            advice = "lower the learning rate"
        raise TrainingDiverged(f"training diverged in epoch {self.epoch}: {what}", advice)

    def _skipped(self, what: str, value: float) -> None:
        if self.losses_skipped == 0:
            logger.warning("IssTraining: a %s of %g cannot double, so it is left out of the back-off test "
                           "(pass `log_loss=True` if it is a log-likelihood)", what, value)
        self.losses_skipped += 1

    # -- where it stands --------------------------------------------------------------------------

    @property
    def epochs(self) -> int | None:
        """Epochs of a target run: ``prune_epochs + recover_epochs`` (None without a target)."""
        return self.prune_epochs + self.recover_epochs if self.controller is not None else None

    @property
    def phase(self) -> str:
        """"prune" or "recover" with a target; "fixed" with a fixed λ."""
        return self.controller.state.phase if self.controller is not None else "fixed"

    @property
    def units(self) -> dict[str, int]:
        """Units per set now: components whose receivers are not all zero (what compaction keeps)."""
        if self.controller is not None:
            return self.controller.guard.units()
        with torch.no_grad():
            return receiver_units(self.spec, self.parameters)

    @property
    def lambdas(self) -> dict[str, float]:
        """λ in force per set (0 for a set that reached its target, and in recovery)."""
        names = [iss.name for iss in self.spec.sets]
        if self.controller is not None:
            return dict(zip(names, self.controller.state.lambdas))
        return dict.fromkeys(names, float(self.group_lasso or 0.0))

    def summary(self) -> IssSummary:
        """Sizes, λ, assumptions and the controller's record (freezes, final cut, back-offs, λ per epoch).

        Returns:
            an :class:`IssSummary`; ``to_json()`` gives it as plain JSON values.
        """
        units = self.units
        shapes = {name: tuple(p.shape) for name, p in self.parameters.items()}
        record = self.controller.summary() if self.controller is not None else {}
        return IssSummary(
            phase=self.phase, epochs=self.epoch - 1, components={iss.name: iss.components for iss in self.spec.sets},
            units=units, targets=self.targets, lambdas=self.lambdas, group_lasso=self.group_lasso, l1=self.l1,
            tau=self.tau, optimizer=self.optimizer_kind, optimizer_class=type(self.optimizer).__name__,
            log_loss=self.log_loss, parameters=sum(p.numel() for p in self.parameters.values()),
            compacted_parameters=compacted_parameters(self.spec, shapes, units), losses_skipped=self.losses_skipped,
            optimizer_reset_at_epoch=self.optimizer_reset_at_epoch,
            **{key: record[key] for key in ("origin", "lowest_units", "frozen", "final_cut", "backoffs",
                                             "lambda_per_epoch", "units_per_epoch") if key in record},
        )

    # -- resuming ---------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        """What must not change between an interrupted run and its continuation."""
        settings = self.controller.settings.to_dict() if self.controller is not None else None
        return json_round_trip({"spec": self.spec.to_json(), "controller": settings, "group_lasso": self.group_lasso,
                                "l1": self.l1, "tau": self.tau, "optimizer": self.optimizer_kind,
                                "log_loss": self.log_loss, "reset_optimizer": self.reset_optimizer})

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (tensors and plain values; ``torch.save`` it with the model's
        and the optimizer's state).

        Returns:
            a dict for :meth:`load_state_dict`.

        Examples:
            >>> checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            ...               "iss": iss.state_dict()}  # doctest: +SKIP
        """
        state: dict[str, Any] = {"format": STATE_FORMAT, "identity": self._identity(), "epoch": self.epoch,
                                 "batch": self.batch, "losses_skipped": self.losses_skipped, "controller": None,
                                 "optimizer_reset_at_epoch": self.optimizer_reset_at_epoch}
        if self.controller is not None:
            tensors, info = self.controller.state_dict()
            state["controller"] = {"tensors": tensors, "info": info}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue where :meth:`state_dict` was taken, in an object built with the same arguments.

        Build this object as the interrupted run did, before loading the model's saved weights (its targets are
        checked against the units the model has when it is built), then load the model's and the optimizer's
        state too; the loop goes on in epoch ``self.epoch``, after ``self.batch`` of its batches.

        Args:
            state: what :meth:`state_dict` returned (e.g. through ``torch.save``/``torch.load``).
        """
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise IsscliError("`load_state_dict` was given something other than an IssTraining state",
                              "pass what `IssTraining.state_dict()` returned")
        saved, now = state["identity"], self._identity()
        changed = sorted(key for key in now if saved.get(key) != now[key])
        if changed:
            raise IsscliError(f"`load_state_dict`: the state was saved with other settings ({', '.join(changed)})",
                              "build IssTraining with the arguments of the interrupted run, before loading "
                              "the model's saved weights")
        self.epoch, self.batch, self.losses_skipped = state["epoch"], state["batch"], state["losses_skipped"]
        self.optimizer_reset_at_epoch = state.get("optimizer_reset_at_epoch")
        if self.controller is not None:
            self.controller.load_state_dict(state["controller"]["tensors"], state["controller"]["info"])
            self.controller.trainer = None  # bind again, now from the saved state
            self.controller.bind(self._trainer)

    # -- after training ---------------------------------------------------------------------------

    def compact(self, example_input: Any) -> ModuleCompaction:
        """Remove the dead units from the model: :func:`isscli.compact_module` with this spec.

        Args:
            example_input: one batch of model input (to check the compacted model against the original).

        Returns:
            A :class:`~isscli.live.compact.ModuleCompaction`: ``.model`` the smaller copy of your model, ``.units``.
        """
        return compact_module(self.model, example_input, spec=self.spec)


# -- arguments -------------------------------------------------------------------------------------


def _whole(value: Any, name: str) -> int:
    """A whole number (not a bool), or a one-line error naming the parameter."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise IsscliError(f"`{name}` must be a whole number (got {value!r})", f"give e.g. `{name}`=10")


def _number(value: Any, name: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise IsscliError(f"`{name}` must be a finite number ≥ 0 (got {value!r})", f"fix `{name}`")


def _check_arguments(batches: Any, target_hidden: Any, target_params: Any, group_lasso: Any, tau: Any, l1: Any,
                     prune_epochs: Any, recover_epochs: Any, check_every: Any) -> bool:
    """Everything checkable before the model is looked at; whether a target is given."""
    for name, value in (("group_lasso", group_lasso), ("tau", tau), ("l1", l1)):
        if value is not None:
            _number(value, name)
    fixes = {"batches_per_epoch": "give `batches_per_epoch`=len(loader)", "check_every": "give e.g. `check_every`=10",
             "prune_epochs": "give e.g. `prune_epochs`=4", "recover_epochs": "the survivors need an epoch with λ = 0"}
    counts = {"batches_per_epoch": batches, "check_every": check_every, "prune_epochs": prune_epochs,
              "recover_epochs": recover_epochs}
    for name, value in counts.items():
        if value is not None and _whole(value, name) < 1:
            raise IsscliError(f"`{name}` must be ≥ 1 (got {value})", fixes[name])
    if target_hidden is not None and target_params is not None:
        raise IsscliError("give one target, not `target_hidden` and `target_params`",
                          "choose `target_hidden` or `target_params`")
    if target_hidden is None and target_params is None:
        if prune_epochs is not None or recover_epochs is not None:
            raise IsscliError("`prune_epochs` and `recover_epochs` belong to a target",
                              "add `target_hidden` or `target_params`, or drop them")
        return False
    if batches is None:
        raise IsscliError("a target needs `batches_per_epoch` (the λ schedule runs over the pruning phase's batches)",
                          "pass `batches_per_epoch`=len(loader)")
    if prune_epochs is None:
        raise IsscliError("a target needs `prune_epochs` (the epochs over which the sets shrink)",
                          "give e.g. `prune_epochs`=4")
    return True


def _resolve_spec(model: nn.Module, spec: GroupSpec | None, example_input: Any) -> GroupSpec:
    """The given spec, or one derived from ``example_input``; checked against ``model.named_parameters()``."""
    if not isinstance(model, nn.Module):
        raise IsscliError(f"`model` must be an nn.Module (got {type(model).__name__})", "pass the model itself")
    if spec is None:
        if example_input is None:
            raise IsscliError("IssTraining needs `spec` or `example_input`: parameter names alone do not say which "
                              "weights receive each unit", "pass `example_input` (one batch of model input)")

        spec = derive_module_spec(model, example_input)
    tensors = parameter_tensors(model)
    missing = [name for name in spec.tensor_names() if name not in tensors]
    if missing:
        raise IsscliError(f"`spec` names tensor {missing[0]!r}, which `model.named_parameters()` does not have",
                          f"name tensors as the model does (e.g. {next(iter(tensors), 'lstm.weight_ih_l0')!r})")
    check_spec(spec, tensors)
    return spec


def _check_optimizer(optimizer: torch.optim.Optimizer, parameters: dict[str, torch.Tensor], spec: GroupSpec) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise IsscliError(f"`optimizer` must be a torch.optim.Optimizer (got {type(optimizer).__name__})",
                          "pass the optimizer that updates the model, e.g. torch.optim.Adam(model.parameters())")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    left = [name for name in spec.tensor_names() if id(parameters[name]) not in held]
    if left:
        raise IsscliError(f"`optimizer` does not update {left[0]!r}, which the spec regularizes",
                          "build the optimizer over `model.parameters()`")


def _targets_of(spec: GroupSpec, target_hidden: Any, units: dict[str, int]) -> dict[str, int]:
    """Units per set from an int (every set), a list (spec order) or a dict (a set left out keeps its units)."""
    names = [iss.name for iss in spec.sets]
    if isinstance(target_hidden, Mapping):
        unknown = sorted(set(target_hidden) - set(names))
        if unknown:
            raise IsscliError(f"`target_hidden` names set {unknown[0]!r}, which the spec does not have",
                              f"use the spec's set names: {', '.join(names)}")
        return {name: _whole(target_hidden[name], "target_hidden") if name in target_hidden else units[name]
                for name in names}
    if isinstance(target_hidden, Sequence) and not isinstance(target_hidden, str):
        sizes = [_whole(size, "target_hidden") for size in target_hidden]
        return targets_from_sizes(spec, sizes, "target_hidden")
    return dict.fromkeys(names, _whole(target_hidden, "target_hidden"))
