"""The training loop: SGD with the lr schedule, group Lasso / L1, thresholding, the divergence
guard, best-valid checkpoints, resumable state and a JSON-lines log.

One mini-batch (paper Eq. 3, authors' code):

    gradient of  data loss + λ·R(w) + D·Σ|w|        (data loss: see isscli.learn.tasks; the
                                                     regularizers' gradients are added in place)
    clip that whole gradient to a global norm of max_grad_norm
    w ← w − lr·grad
    zero every regularized weight with |w| < τ

Each epoch ends with a validation pass. The best one (lowest perplexity, or highest accuracy
for classifiers) is written to OUT; the resumable state goes to ``OUT.resume.safetensors``
and a record to ``OUT.log.jsonl``. A NaN/inf loss, a validation perplexity above
``divergence_factor`` × the best, or a set with no component left stops the run: OUT keeps
the last good model and :class:`TrainingDiverged` says what to change.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from isscli.io.errors import IsscliError
from isscli.io.provenance import operation_record
from isscli.iss.regularizer import GroupLasso
from isscli.iss.surgery import weight_sparsity
from isscli.learn.distributed import all_sum, current, on_main
from isscli.learn.evaluation import Evaluation, StepLoss
from isscli.learn.recipes import TrainSettings
from isscli.learn.run import (  # noqa: F401 - what a run is made of, importable from here too
    EpochReport,
    JsonLog,
    RunPaths,
    TrainingDiverged,
    TrainingHook,
    TrainingResult,
    TrainingRun,
    identity_changes,
    prepare_outputs,
)
from isscli.learn.state import (
    FOREIGN,
    BestEpoch,
    Position,
    RunInfo,
    RunState,
    capture_rng,
    load_run_state,
    restore_rng,
    save_run_state,
)
from isscli.models import model_tensors
from isscli.models.checkpoint import load_checkpoint, save_checkpoint
from isscli.observer import Observer, SilentObserver

#: Settings that may change when a run is resumed: a longer schedule is a continuation; how often state is saved.
RESUMABLE_CHANGES = ("epochs", "save_every")


MISSING = object()  # a key a saved optimizer group does not have


def same_kind(saved: Any, current: Any) -> bool:
    """Whether a saved optimizer setting can stand for the optimizer's own: numbers for numbers (bools apart),
    a list for a tuple (JSON has no tuples), the same kind otherwise."""
    if isinstance(current, bool) or current is None:
        return type(saved) is type(current)
    if isinstance(current, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool)
    if isinstance(current, (tuple, list)):
        return isinstance(saved, (tuple, list)) and len(saved) == len(current) and all(
            same_kind(a, b) for a, b in zip(saved, current))
    return isinstance(saved, type(current))


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    parameters = list(model.parameters())
    if settings.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=settings.lr)
    return torch.optim.SGD(parameters, lr=settings.lr)


def alive_every(batches: int) -> int:
    """How often the progress bar recounts components (it costs a pass over the weights)."""
    return max(1, batches // 20)


class Trainer:
    """Runs the epochs of one :class:`TrainingRun`."""

    def __init__(self, run: TrainingRun, observer: Observer | None = None) -> None:
        self.run = run
        self.settings = run.settings
        self.observer = observer or SilentObserver()
        self.model = run.model
        self.ranks = current()
        self.forward_module = self.model if not self.ranks.active else DistributedDataParallel(
            self.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
        self.parameters: dict[str, torch.Tensor] = dict(self.model.named_parameters())
        self.regularizer = GroupLasso(run.spec, self.parameters, self.settings.epsilon)
        self.optimizer = make_optimizer(self.model, self.settings)
        self.best_rank: list[float] | None = None
        self.best_epoch: int | None = None
        self.best: Evaluation | None = None
        self.lowest_perplexity: float | None = None  # the guard's reference, whatever --keep says
        self.last_step: StepLoss | None = None  # the latest batch's loss (all ranks'), for hooks
        self.start_epoch = 0
        self.start_batch, self.start_totals = 0, (0.0, 0)  # a resume in the middle of an epoch

    # -- resuming ---------------------------------------------------------------------------

    def resume(self) -> None:
        """Continue from ``OUT.resume.safetensors``: weights, optimizer, RNG, best so far."""
        state = load_run_state(self.run.paths.resume)
        saved = RunInfo.read(state.info, self.run.paths.resume)  # what a training run saved: each of its fields
        changed = identity_changes(saved.identity, json.loads(json.dumps(self.run.identity())))
        if changed:
            raise IsscliError(
                f"{self.run.paths.resume} belongs to another run; changed: {', '.join(changed)}",
                "rerun the original command (same checkpoint, --data, --spec and model) with --resume, or start "
                "afresh with --force",
            )
        current = self.settings.to_dict()
        changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.settings.get(k) != current[k])
        if changed:
            raise IsscliError(
                f"--resume needs the settings the run started with; changed: {', '.join(changed)}",
                "repeat the original flags (only --epochs may change), or start afresh with --force",
            )
        self.check_optimizer_groups(state.optimizer.get("param_groups"))
        try:  # the file's tensors against this run's model and optimizer: a damaged file is one line
            self.model.load_state_dict(state.model, strict=False)
            self.optimizer.load_state_dict(state.optimizer)
            restore_rng(state.rng)
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise IsscliError(f"{self.run.paths.resume} does not fit this run ({str(error).splitlines()[0][:160]})",
                              FOREIGN) from None
        self.start_epoch = state.epoch
        position = saved.position
        if position is not None:  # saved in the middle of epoch start_epoch + 1
            self.start_batch, self.start_totals = position.batch, (position.total, position.count)
            self.run.task.restore(state.carried)
        if saved.best is not None:
            self.best_rank, self.best_epoch, self.best = saved.best.rank, saved.best.epoch, saved.best.valid
        self.lowest_perplexity = saved.lowest_perplexity
        hook_info = saved.hooks
        if set(hook_info) != {hook.name for hook in self.run.hooks}:
            now = ", ".join(hook.name for hook in self.run.hooks) or "none"
            raise IsscliError(
                f"{self.run.paths.resume} was written by a run with other training hooks "
                f"({', '.join(sorted(hook_info)) or 'none'}; now {now})",
                "repeat the original flags (e.g. --method, --magnitude-sparsity), or start afresh with --force",
            )
        for hook in self.run.hooks:
            prefix = f"{hook.name}."
            tensors = {key.removeprefix(prefix): t for key, t in state.hooks.items() if key.startswith(prefix)}
            try:
                hook.load_state_dict(tensors, hook_info.get(hook.name, {}))
            except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as error:
                raise IsscliError(f"{self.run.paths.resume}: the state of its {hook.name} does not fit this run "
                                  f"({str(error).splitlines()[0][:160] if str(error) else type(error).__name__})",
                                  FOREIGN) from None

    def check_optimizer_groups(self, groups: Any) -> None:
        """The saved optimizer's settings have this run's optimizer's keys and kinds (a missing ``momentum`` would
        only fail at the next step, deep inside torch)."""
        path = self.run.paths.resume
        if not isinstance(groups, list) or len(groups) != len(self.optimizer.param_groups):
            raise IsscliError(f"{path}: its optimizer has other parameter groups than this run's", FOREIGN)
        for index, (saved, own) in enumerate(zip(groups, self.optimizer.param_groups)):
            if not isinstance(saved, dict):
                raise IsscliError(f'{path}: field "optimizer.param_groups.{index}" is not an object', FOREIGN)
            for key, value in own.items():
                if key != "params" and not same_kind(saved.get(key, MISSING), value):
                    raise IsscliError(f'{path}: field "optimizer.param_groups.{index}.{key}" is missing or of '
                                      "another kind than the optimizer's", FOREIGN)

    def save_state(self, epoch: int, position: Position | None = None) -> None:
        """The resumable state after ``epoch`` epochs (and, with ``position``, batches of the next one): written by
        rank 0; every rank takes part (the carried LM state is gathered from all)."""
        carried = self.run.task.carried() if position is not None else {}
        if not self.ranks.main:
            return
        best = None
        if self.best is not None and self.best_rank is not None and self.best_epoch is not None:
            best = BestEpoch(self.best_rank, self.best_epoch, self.best)
        hook_tensors, hook_info = {}, {}
        for hook in self.run.hooks:
            tensors, hook_info[hook.name] = hook.state_dict()
            hook_tensors.update({f"{hook.name}.{key}": t for key, t in tensors.items()})
        info = RunInfo(self.run.identity(), self.settings.to_dict(), best, self.lowest_perplexity, hook_info, position)
        save_run_state(self.run.paths.resume, RunState(
            epoch, model_tensors(self.model), self.optimizer.state_dict(), capture_rng(), info.to_json(), hook_tensors,
            carried,
        ))

    # -- the loop -------------------------------------------------------------------------

    def train(self, resume: bool = False, stop_after: int | None = None) -> TrainingResult:
        if stop_after is not None and stop_after < 1:
            raise IsscliError(f"`stop_after` {stop_after} is not an epoch", "give an epoch number ≥ 1")
        if resume:
            self.resume()
        self.observer.run_started({iss.name: iss.components for iss in self.run.spec.sets}, self.run.scores_loss)
        log = JsonLog(self.run.paths.log, append=resume)
        log.write({"event": "resume" if resume else "start", "operation": self.run.operation,
                   "from_epoch": self.start_epoch, "settings": self.settings.to_dict(),
                   "model": self.run.model_record(),
                   **{k: v for k, v in self.run.parameters.items() if k not in ("spec", "settings")}})
        reports: list[EpochReport] = []
        for epoch in range(self.start_epoch + 1, self.settings.epochs + 1):
            try:
                report = self.run_epoch(epoch)
            except TrainingDiverged as error:
                log.write({"event": "diverged", "epoch": epoch, "reason": error.message})
                raise
            except KeyboardInterrupt:
                log.write({"event": "interrupted", "epoch": epoch, "resume_from_epoch": epoch - 1})
                raise
            reports.append(report)
            log.write(report.to_record())
            self.observer.epoch_done(report)
            for hook in self.run.hooks:
                hook.after_epoch(self, report)
            self.save_state(epoch)
            if stop_after is not None and epoch >= stop_after and epoch < self.settings.epochs:
                log.write({"event": "stopped", "epoch": epoch, "resume": str(self.run.paths.resume)})
                return TrainingResult(reports, self.best_epoch, self.best, None, True, self.start_epoch)
        test = self.evaluate_best("test")
        log.write({"event": "end", "best_epoch": self.best_epoch,
                   "best_valid": self.best.to_dict() if self.best else None,
                   "test": test.to_dict() if test else None})
        self.run.paths.resume.unlink(missing_ok=True)
        return TrainingResult(reports, self.best_epoch, self.best, test, False, self.start_epoch)

    def run_epoch(self, epoch: int) -> EpochReport:
        settings, task = self.settings, self.run.task
        lr = settings.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = task.num_batches(settings.max_batches)
        self.observer.epoch_started(epoch, settings.epochs, batches, lr)
        recount = alive_every(batches)
        self.model.train()
        first, (total, count) = self.start_batch, self.start_totals
        self.start_batch, self.start_totals = 0, (0.0, 0)
        started = time.perf_counter()
        for index, batch in enumerate(task.batches(epoch, settings.max_batches, first), start=first + 1):
            step = self.train_step(batch, epoch, index)
            total, count = total + step.total, count + step.count
            show_alive = settings.tau > 0 and (index % recount == 0 or index == batches)
            self.observer.batch_done(total / count, self.regularizer.alive() if show_alive else None)
            if settings.save_every and index % settings.save_every == 0 and index < batches:
                self.save_state(epoch - 1, Position(epoch, index, total, count))
        valid = on_main(lambda: task.evaluate(self.model, "valid", settings.max_eval_batches))
        report = self.epoch_report(epoch, lr, total / max(count, 1), valid, time.perf_counter() - started)
        self.check(report)
        self.lowest_perplexity = min(self.lowest_perplexity or math.inf, valid.guard_value)
        eligible = all(hook.keeps(epoch) for hook in self.run.hooks)
        report.best = eligible and (self.best_rank is None or list(valid.rank()) < self.best_rank)
        if eligible and (report.best or settings.keep == "last"):
            self.best_rank, self.best_epoch, self.best = list(valid.rank()), epoch, valid
            self.save_best(epoch, valid)
        return report

    def train_step(self, batch: Any, epoch: int, index: int) -> StepLoss:
        """One mini-batch: objective, backward, clip, SGD step, thresholding (module docstring)."""
        settings = self.settings
        with torch.autocast(self.run.device.type, torch.bfloat16, enabled=settings.precision == "bf16"):
            local = self.run.task.step(self.forward_module, batch)
        total, count = all_sum([local.total, local.count])  # every rank decides on the whole batch's loss
        step = self.last_step = StepLoss(local.objective, total, int(count))
        if not math.isfinite(step.total):
            self.diverged(epoch, f"the loss became {step.total} at batch {index}")
        self.optimizer.zero_grad(set_to_none=True)
        step.objective.backward()
        taken = any(hook.add_group_lasso_(self) for hook in self.run.hooks)
        if settings.group_lasso > 0 and not taken:
            self.regularizer.add_gradient_(settings.group_lasso)
        if settings.l1 > 0:
            self.regularizer.add_l1_gradient_(settings.l1)
        for hook in self.run.hooks:
            hook.after_backward(self)
        nn.utils.clip_grad_norm_(self.model.parameters(), settings.max_grad_norm)
        self.optimizer.step()
        taken = any(hook.threshold_(self, settings.tau) for hook in self.run.hooks)
        if settings.tau > 0 and not taken:
            self.regularizer.threshold_(settings.tau)
        for hook in self.run.hooks:
            hook.after_step(self, epoch, index)
        return step

    @torch.no_grad()
    def epoch_report(self, epoch: int, lr: float, train_loss: float, valid: Evaluation, seconds: float) -> EpochReport:
        names = self.regularizer.tensor_names
        weights = {name: self.parameters[name].detach() for name in names}
        norms = self.regularizer.split(self.regularizer.squared_norms().sqrt())
        smallest = {name: float(values[values > 0].min()) if bool((values > 0).any()) else 0.0
                    for name, values in norms.items()}
        return EpochReport(
            epoch=epoch, lr=lr, train_loss=train_loss, valid=valid,
            penalty=self.regularizer.penalty(),
            alive=self.regularizer.alive(),
            components={iss.name: iss.components for iss in self.run.spec.sets},
            sparsity=weight_sparsity(weights, names), seconds=seconds, smallest_norm=smallest,
        )

    # -- the guard ------------------------------------------------------------------------

    def check(self, report: EpochReport) -> None:
        """Stop on a non-finite or exploding validation loss, or a set with no unit left."""
        dead = [name for name, alive in report.alive.items() if alive == 0]
        if dead:
            self.diverged(report.epoch, f"set {dead[0]} has no ISS component left (a dead model)")
        value, what = report.valid.guard_value, "loss" if report.valid.objective == "regression" else "perplexity"
        if not math.isfinite(value):
            self.diverged(report.epoch, f"validation {what} is {value}")
        lowest = self.lowest_perplexity
        if lowest is not None and value > self.settings.divergence_factor * lowest:
            self.diverged(report.epoch, f"validation {what} {value:.4g} is over "
                                        f"{self.settings.divergence_factor:g}× the best ({lowest:.4g})")

    def diverged(self, epoch: int, reason: str) -> None:
        settings = self.settings
        if settings.group_lasso > 0:
            advice = f"lower λ (e.g. --lambda {settings.group_lasso / 2:g})"
        elif settings.l1 > 0:
            advice = f"lower the L1 strength (e.g. --l1 {settings.l1 / 2:g})"
        else:
            advice = f"lower the learning rate (e.g. --lr {settings.lr / 2:g}) or --max-grad-norm"
        if self.best_epoch is None:
            kept = "nothing was written"
        else:
            kept = f"{self.run.paths.output} keeps the model of epoch {self.best_epoch}"
        raise TrainingDiverged(f"training diverged in epoch {epoch}: {reason}; {kept}", advice)

    # -- outputs --------------------------------------------------------------------------

    def save_best(self, epoch: int, valid: Evaluation) -> None:
        if not self.ranks.main:
            return
        hooks = {hook.name: hook.provenance() for hook in self.run.hooks}
        provenance = operation_record(self.run.operation, self.run.parameters, self.run.parent,
                                      best_epoch=epoch, valid=valid.to_dict(), **hooks)
        inputs = (self.run.parent.path,) if self.run.parent and self.run.parent.path else ()
        masks: dict[str, torch.Tensor] = {}
        mask_info = None
        for hook in self.run.hooks:
            masks, mask_info = hook.checkpoint_masks() or (masks, mask_info)
        save_checkpoint(self.run.paths.output, model_tensors(self.model), self.run.config,
                        provenance, inputs=inputs, overwrite=True, masks=masks, mask_info=mask_info,
                        vocabulary=self.run.vocabulary)

    def evaluate_best(self, split: str) -> Evaluation | None:
        """The written checkpoint's score: reloading it also proves the file is sound."""
        if self.best_epoch is None:
            return None

        def score() -> Evaluation:
            best = self.run.reload(load_checkpoint(self.run.paths.output)).to(self.run.device)
            return self.run.task.evaluate(best, split)

        return on_main(score)
