"""The user's losses as the controller's back-off test reads them (see "The back-off test" in
:mod:`isscli.learn.your_loop.loop`).

A training loss is compared as ``log(loss)`` (so any positive loss is compared as a ratio), a validation loss as
itself (2× its best backs off); with ``log_loss`` both are log-likelihoods, compared as the command line compares
perplexity. A loss ≤ 0 cannot double and is left out (counted); a non-finite one stops training.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from isscli.io.errors import IsscliError
from isscli.learn.run import TrainingDiverged
from isscli.learn.your_loop.adapter import LoopStep

#: IssTraining's logger: one name to configure for everything it says.
logger = logging.getLogger("isscli.learn.your_loop.loop")


@dataclass
class BackoffLosses:
    """Turns each loss into what the back-off test compares; counts the losses it leaves out."""

    log_loss: bool  # the losses are log-likelihoods (else compared as ratios)
    advice: str  # what to change when training diverges
    skipped: int = 0  # losses ≤ 0, left out of the test

    def scalar(self, loss: torch.Tensor | float, epoch: int, batch: int) -> float:
        """A batch's loss as one finite number (``batch``: its 1-based index, for the message)."""
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise IsscliError(f"`loss` has shape {tuple(loss.shape)}, not one number",
                                  "pass the scalar loss that `backward()` was called on")
            loss = loss.detach()
        value = float(loss)
        self.check_finite(value, epoch, f"the loss became {value} at batch {batch}")
        return value

    def training(self, value: float) -> LoopStep | None:
        """A finite batch loss as the test's window adds it up; None when it cannot take part."""
        if self.log_loss:
            return LoopStep(value, 1)
        if value > 0:
            return LoopStep(math.log(value), 1)
        self._skip("training loss", value)
        return None

    def validation(self, valid_loss: float | None, epoch: int, best: float | None) -> float:
        """The validation loss as the ratio test reads it; the best so far (no test) when None or ≤ 0."""
        skip = best if best is not None else math.nan  # neither a back-off nor a new best
        if valid_loss is None:
            return skip
        value = float(valid_loss)
        self.check_finite(value, epoch, f"the validation loss is {value}")
        if self.log_loss:
            return math.exp(min(value, 700.0))
        if value > 0:
            return value
        self._skip("validation loss", value)
        return skip

    def check_finite(self, value: float, epoch: int, what: str) -> None:
        """Stop training on a NaN or infinite loss, before the step could write it into the weights."""
        if not math.isfinite(value):
            raise TrainingDiverged(f"training diverged in epoch {epoch}: {what}", self.advice)

    def _skip(self, what: str, value: float) -> None:
        if self.skipped == 0:
            logger.warning("IssTraining: a %s of %g cannot double, so it is left out of the back-off test "
                           "(pass `log_loss=True` if it is a log-likelihood)", what, value)
        self.skipped += 1


def divergence_advice(targeted: bool, regularized: bool) -> str:
    """What to change when training diverges: with a target, with a fixed λ or L1, or with neither."""
    if targeted:
        return "lower the learning rate, or cap λ with `group_lasso`"
    if regularized:
        return "lower `group_lasso` or `l1`, or the learning rate"
    return "lower the learning rate"
