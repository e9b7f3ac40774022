"""What every task gives the training loop: a batch's loss (:class:`StepLoss`), a split's score (:class:`Evaluation`),
and the :class:`Task` protocol that :mod:`isscli.learn.tasks` (isscli's language models and classifiers) and
:mod:`isscli.learn.tensor_task` (any recurrent model on tensor data) implement.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn

from isscli.io.jsonfile import JSONObject


@dataclass
class StepLoss:
    """One batch: the loss to back-propagate, and the summed cross-entropy over ``count`` items."""

    objective: torch.Tensor
    total: float
    count: int


#: The scores a model may be judged by (:class:`Metric`).
MetricName = Literal["accuracy", "perplexity", "loss"]


class Scored(Protocol):
    """A model's score as the results hold it: an evaluation, a sweep point, the sweep's dense baseline."""

    @property
    def accuracy(self) -> float | None: ...

    @property
    def perplexity(self) -> float | None: ...

    @property
    def loss(self) -> float | None: ...


@dataclass(frozen=True)
class Metric:
    """What a model is judged by: the accuracy of a classifier, the perplexity of a language model, the loss of a
    regression. Chosen in one place (:meth:`of`) for the gates, shrink, the sweep and their reports."""

    name: MetricName

    @classmethod
    def of(cls, classifier: bool, objective: str | None) -> Metric:
        """Accuracy where the model has one (classifiers, the classification and tagging objectives), else the loss
        of a regression on tensor data, else the perplexity (language models)."""
        if classifier:
            return cls("accuracy")
        return cls("loss" if objective == "regression" else "perplexity")

    @property
    def higher_is_better(self) -> bool:
        return self.name == "accuracy"

    @property
    def short(self) -> str:
        """Its name in a table's narrow column."""
        return {"accuracy": "acc", "loss": "loss", "perplexity": "ppl"}[self.name]

    def value(self, score: Scored) -> float | None:
        if self.name == "accuracy":
            return score.accuracy
        return score.loss if self.name == "loss" else score.perplexity

    def tolerated(self, reference: float, loss: float) -> float:
        """The worst score within ``loss`` of ``reference``: an accuracy ``loss`` lower, a perplexity (a loss)
        ``loss`` × higher."""
        return reference - loss if self.higher_is_better else reference * (1 + loss)

    def meets(self, value: float, limit: float) -> bool:
        """``value`` is at least as good as ``limit``."""
        return value >= limit if self.higher_is_better else value <= limit

    def text(self, value: float) -> str:
        """The score as people read it: an accuracy in percent, a perplexity or a loss."""
        if self.name == "accuracy":
            return f"{value:.2%}"
        return f"{value:.4g}" if self.name == "loss" else f"{value:.2f}"


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
    def metric(self) -> Metric:
        """What the score is judged by: accuracy, loss (regression) or perplexity (:meth:`Metric.of`)."""
        return Metric.of(self.accuracy is not None, self.objective)

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
