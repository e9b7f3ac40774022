"""What every task gives the training loop: a batch's loss (:class:`StepLoss`), a split's score (:class:`Evaluation`),
and the :class:`Task` protocol that :mod:`isscli.learn.tasks` (isscli's language models and classifiers) and
:mod:`isscli.learn.tensor_task` (any recurrent model on tensor data) implement.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from isscli.io.jsonfile import JSONObject


@dataclass
class StepLoss:
    """One batch: the loss to back-propagate, and the summed cross-entropy over ``count`` items."""

    objective: torch.Tensor
    total: float
    count: int


@dataclass
class Evaluation:
    """A model's score on one split; perplexity is exp(mean cross-entropy) for both families.

    ``objective`` is that of tensor data (:mod:`isscli.data.tensors`), None for isscli's own LM and
    classifier families; a regression's score is its mean squared error, with no perplexity.
    """

    split: str
    loss: float
    count: int
    accuracy: float | None = None
    objective: str | None = None
    trivial_loss: float | None = None  # regression: the loss of predicting the training targets' mean

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < 700 else math.inf

    @property
    def guard_value(self) -> float:
        """What the divergence guard watches: the perplexity, or for a regression its loss plus the loss of predicting
        the mean (so that a near-perfect model whose tiny loss doubles is not called diverged: a blow-up is a loss
        that grows against the targets' own spread)."""
        if self.objective != "regression":
            return self.perplexity
        return self.loss + (self.trivial_loss or 0.0)

    @property
    def metric(self) -> str:
        """The name of the score reported: accuracy, loss (regression) or perplexity."""
        if self.accuracy is not None:
            return "accuracy"
        return "loss" if self.objective == "regression" else "perplexity"

    def rank(self) -> tuple[float, ...]:
        """Smaller is better: perplexity for LMs; accuracy, then loss, for classifiers; the loss for regression."""
        if self.objective == "regression":
            return (self.loss,)
        return (self.perplexity,) if self.accuracy is None else (-self.accuracy, self.loss)

    def to_dict(self) -> JSONObject:
        record: JSONObject = {"split": self.split, "loss": self.loss, "perplexity": self.perplexity,
                                  "count": self.count}
        if self.objective == "regression":
            del record["perplexity"]
        if self.accuracy is not None:
            record["accuracy"] = self.accuracy
        if self.objective is not None:
            record["objective"] = self.objective
        return record


class Task(Protocol):
    """The family-specific half of training and evaluation.

    With several ranks (:mod:`isscli.learn.distributed`) every rank reads its share of each global
    batch, and ``step``'s objective is scaled so that the ranks' average gradient (what
    ``DistributedDataParallel`` computes) is the whole batch's; ``StepLoss.total``/``count``
    are this rank's share.
    """

    def batches(self, epoch: int, limit: int | None, start: int = 0) -> Iterator[Any]: ...
    def num_batches(self, limit: int | None) -> int: ...
    def step(self, model: nn.Module, batch: Any) -> StepLoss: ...
    def evaluate(self, model: nn.Module, split: str, limit: int | None = None) -> Evaluation: ...
    def carried(self) -> dict[str, torch.Tensor]: ...
    def restore(self, tensors: dict[str, torch.Tensor]) -> None: ...


class IndependentBatches:
    """Tasks whose batches are independent (sentences, samples): nothing is carried from one batch to the next, so
    a mid-epoch resume has no state to restore."""

    def carried(self) -> dict[str, torch.Tensor]:
        return {}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        pass
