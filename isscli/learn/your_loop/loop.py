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
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from isscli.io.jsonfile import JSONObject
from isscli.iss.regularizer import GroupLasso
from isscli.iss.spec import GroupSpec
from isscli.learn.controller import ControllerSettings, IssController
from isscli.learn.controller.state import json_round_trip
from isscli.learn.controller.targets import receiver_units
from isscli.learn.recipes import PAPER_THRESHOLD
from isscli.learn.your_loop.adapter import (
    LoopPaths,
    LoopReport,
    LoopRun,
    LoopSettings,
    LoopStep,
    LoopTask,
    LoopTrainer,
    LoopValid,
)
from isscli.learn.your_loop.arguments import (
    TargetHidden,
    check_arguments,
    check_optimizer,
    optimizer_kind,
    resolve_spec,
    resolve_targets,
)
from isscli.learn.your_loop.budget import compacted_parameters, sizes_for_budget
from isscli.learn.your_loop.losses import BackoffLosses, divergence_advice
from isscli.learn.your_loop.resume import STATE_FORMAT, ControllerSaved, LoopState, SavedState
from isscli.learn.your_loop.summary import IssSummary
from isscli.live.compact import ModuleCompaction, compact_module

if TYPE_CHECKING:
    from isscli.learn.loop import Trainer
    from isscli.learn.run import EpochReport

__all__ = ["STATE_FORMAT", "IssSummary", "IssTraining", "compacted_parameters", "optimizer_kind", "sizes_for_budget"]

logger = logging.getLogger(__name__)


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
        target_hidden: TargetHidden | None = None, target_params: int | None = None,
        group_lasso: float | None = None, tau: float | None = None, l1: float = 0.0,
        prune_epochs: int | None = None, recover_epochs: int | None = None, check_every: int | None = None,
        log_loss: bool = False, log: str | os.PathLike[str] | None = None, reset_optimizer: bool = True,
    ) -> None:
        targeted = check_arguments(batches_per_epoch, target_hidden, target_params, group_lasso, tau, l1,
                                   prune_epochs, recover_epochs, check_every)
        self.model, self.optimizer, self.log_loss = model, optimizer, bool(log_loss)
        self.spec = resolve_spec(model, spec, example_input)
        self.parameters: dict[str, torch.Tensor] = dict(model.named_parameters())
        check_optimizer(optimizer, self.parameters, self.spec)
        lam = float(group_lasso or 0.0)
        self.group_lasso = (lam or None) if targeted else lam
        self.l1 = float(l1)
        self.tau = float(tau) if tau is not None else (PAPER_THRESHOLD if targeted or lam or l1 else 0.0)
        self.optimizer_kind = optimizer_kind(optimizer)
        if self.optimizer_kind == "sgd" and type(optimizer) is not torch.optim.SGD:
            logger.info("IssTraining: the λ controller assumes SGD step lengths for %s", type(optimizer).__name__)
        self.regularizer = GroupLasso(self.spec, self.parameters)
        self.epoch, self.batch = 1, 0
        self.losses = BackoffLosses(self.log_loss, divergence_advice(targeted, bool(lam or l1)))
        self.reset_optimizer = bool(reset_optimizer)
        self.optimizer_reset_at_epoch: int | None = None
        self._step: LoopStep | None = None
        self.controller: IssController | None = None
        self.targets: dict[str, int] | None = None
        self.prune_epochs = self.recover_epochs = 0
        if targeted:
            targets, origin = resolve_targets(self.spec, self.parameters, target_hidden, target_params)
            prune = int(prune_epochs or 0)
            recover = int(recover_epochs) if recover_epochs is not None else max(1, prune // 4)
            settings = ControllerSettings(targets, prune, recover, cap=self.group_lasso, check_every=check_every,
                                          origin=origin)
            self._start_controller(settings, int(batches_per_epoch or 0), log)

    def _start_controller(self, settings: ControllerSettings, batches: int,
                          log: str | os.PathLike[str] | None) -> None:
        """The command line's controller, bound to this loop through :class:`LoopTrainer`."""
        self.controller = IssController(settings, announce=self._announce)
        self.targets = dict(settings.targets)
        self.prune_epochs, self.recover_epochs = settings.prune_epochs, settings.recover_epochs
        path = Path(os.devnull) if log is None else Path(log)
        run = LoopRun(self.spec, LoopTask(batches), LoopPaths(path))
        self._view = LoopTrainer(run, LoopSettings(self.optimizer_kind), self.parameters, self.regularizer,
                                 self.optimizer)
        self.controller.bind(self._trainer)

    def _announce(self, message: str, warning: bool) -> None:
        """The controller's notes, to this module's logger. It speaks of perplexity (the command line's
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
            valid = self.losses.validation(valid_loss, self.epoch, controller.state.best_valid)
            pruning = self.phase == "prune"
            controller.after_epoch(self._trainer, cast("EpochReport", LoopReport(self.epoch, LoopValid(valid))))
            if pruning and self.phase == "recover" and self.reset_optimizer:
                self.optimizer.state.clear()
                self.optimizer_reset_at_epoch = self.epoch
        self.epoch, self.batch = self.epoch + 1, 0

    def _loss_step(self, loss: torch.Tensor | float | None) -> LoopStep | None:
        """The batch's loss for the back-off test (None: no test, or a loss that cannot take part)."""
        if loss is None:
            return None
        value = self.losses.scalar(loss, self.epoch, self.batch + 1)
        return self.losses.training(value) if self.controller is not None else None  # a fixed λ: no test

    # -- where it stands --------------------------------------------------------------------------

    @property
    def epochs(self) -> int | None:
        """Epochs of a target run: ``prune_epochs + recover_epochs`` (None without a target)."""
        return self.prune_epochs + self.recover_epochs if self.controller is not None else None

    @property
    def losses_skipped(self) -> int:
        """Batch and validation losses ≤ 0 so far, left out of the back-off test."""
        return self.losses.skipped

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
        summary = IssSummary(
            phase=self.phase, epochs=self.epoch - 1, components={iss.name: iss.components for iss in self.spec.sets},
            units=units, targets=self.targets, lambdas=self.lambdas, group_lasso=self.group_lasso, l1=self.l1,
            tau=self.tau, optimizer=self.optimizer_kind, optimizer_class=type(self.optimizer).__name__,
            log_loss=self.log_loss, parameters=sum(p.numel() for p in self.parameters.values()),
            compacted_parameters=compacted_parameters(self.spec, shapes, units), losses_skipped=self.losses_skipped,
            optimizer_reset_at_epoch=self.optimizer_reset_at_epoch,
        )
        return summary if self.controller is None else summary.with_record(self.controller.summary())

    # -- resuming ---------------------------------------------------------------------------------

    def _identity(self) -> JSONObject:
        """What must not change between an interrupted run and its continuation."""
        settings = self.controller.settings.to_dict() if self.controller is not None else None
        identity: JSONObject = json_round_trip({
            "spec": self.spec.to_json(), "controller": settings, "group_lasso": self.group_lasso, "l1": self.l1,
            "tau": self.tau, "optimizer": self.optimizer_kind, "log_loss": self.log_loss,
            "reset_optimizer": self.reset_optimizer})
        return identity

    def state_dict(self) -> SavedState:
        """Everything needed to continue exactly (tensors and plain values; ``torch.save`` it with the model's
        and the optimizer's state).

        Returns:
            a dict for :meth:`load_state_dict` (its format: :mod:`isscli.learn.your_loop.resume`).

        Example::

            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iss": iss.state_dict()},
                       "checkpoint.pt")
        """
        controller = None
        if self.controller is not None:
            controller = ControllerSaved(*self.controller.state_dict())
        return LoopState(self._identity(), self.epoch, self.batch, self.losses_skipped,
                         self.optimizer_reset_at_epoch, controller).saved()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue where :meth:`state_dict` was taken, in an object built with the same arguments.

        Build this object as the interrupted run did, before loading the model's saved weights (its targets are
        checked against the units the model has when it is built), then load the model's and the optimizer's
        state too; the loop goes on in epoch ``self.epoch``, after ``self.batch`` of its batches.

        Args:
            state: what :meth:`state_dict` returned (e.g. through ``torch.save``/``torch.load``).
        """
        saved = LoopState.read(state, self._identity())
        self.epoch, self.batch, self.losses.skipped = saved.epoch, saved.batch, saved.losses_skipped
        self.optimizer_reset_at_epoch = saved.optimizer_reset_at_epoch
        if self.controller is not None and saved.controller is not None:
            self.controller.load_state_dict(saved.controller.tensors, saved.controller.info)
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
