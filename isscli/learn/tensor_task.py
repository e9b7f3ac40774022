"""Any recurrent model on tensor data (:mod:`isscli.data.tensors`): :class:`TensorTask`, and the checks of what the
model returns (its prediction's shape against the objective's)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isscli.data.tensors import IGNORE, TensorData, TensorSplit
from isscli.io.errors import IsscliError
from isscli.learn.distributed import current
from isscli.learn.evaluation import Evaluation, IndependentBatches, StepLoss
from isscli.live.model import evaluating


class TensorTask(IndependentBatches):
    """Any recurrent model on tensor data (:mod:`isscli.data.tensors`): shuffled rows, the shuffle a function of
    (seed, epoch) only, so resuming is exact.

    The model is called as ``model(x)`` or ``model(x, lengths)`` (where the data has lengths) and returns its
    prediction: a tensor, or a tuple/list whose **first** element is the prediction (the rest, e.g. a state, is
    ignored). Regression: exactly ``y``'s shape per batch (never broadcast); classification: ``[B, C]`` logits;
    tagging: ``[B, T, C]`` logits (or ``[B, T', C]`` with T' at least the batch's longest ``lengths``, as
    ``pad_packed_sequence`` returns), C ≥ ``num_classes``.

    The data loss, the unit of the user's λ: regression, the mean squared error averaged over all elements of the
    batch (padded steps included: there is no mask for real-valued targets); classification, cross-entropy averaged
    over the sequences; tagging, cross-entropy averaged over the counted steps (not -100, not beyond ``lengths``).
    ``StepLoss.total`` sums it over ``count`` items: samples (each one's mean squared error), sequences or counted
    steps. With several ranks, each reads its share of the rows of every batch.
    """

    def __init__(self, data: TensorData, batch_size: int, eval_batch_size: int, seed: int,
                 device: torch.device) -> None:
        for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if size < 1:
                raise IsscliError(f"`{name}` {size} is below 1", f"give `{name}` a positive number of rows")
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.device = device

    def num_batches(self, limit: int | None) -> int:
        total = math.ceil(len(self.data.splits["train"]) / self.batch_size)
        return min(total, limit) if limit else total

    def batches(self, epoch: int, limit: int | None, start: int = 0) -> Iterator[torch.Tensor]:
        """The training rows of each batch, shuffled; the last batch may be smaller."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.data.splits["train"]), generator=generator)
        return islice(iter(order.split(self.batch_size)), start, limit)

    def step(self, model: nn.Module, batch: torch.Tensor) -> StepLoss:
        train = self.data.splits["train"]
        ranks, size = current(), batch.numel()
        rows = torch.tensor_split(batch, ranks.world)[ranks.rank]
        weight = 1.0 if rows.numel() else 0.0  # a batch smaller than the ranks: an idle rank still steps, at 0
        rows = rows if rows.numel() else batch[:1]
        summed, count, _ = self.scored(model, train, rows)
        if self.data.objective == "tagging":  # the mean over the whole batch's counted steps, not over its rows
            size = max(int((train.y[batch] != IGNORE).sum()), 1)
        summed = summed * weight
        return StepLoss(summed * ranks.world / size, float(summed.detach()), int(weight * count))

    def scored(self, model: nn.Module, split: TensorSplit, rows: torch.Tensor | slice,
               judged: bool = False) -> tuple[torch.Tensor, int, int]:
        """The loss summed over a batch's items, their count, and (if ``judged``) how many the model got right."""
        objective, target = self.data.objective, split.y[rows]
        output = checked_output(prediction(model(*split.model_input(rows, self.device))), target, self.data)
        if objective == "tagging":
            target = target[:, : output.shape[1]]  # a shorter output (pad_packed_sequence) leaves only ignored steps
        counted = target != IGNORE
        target = target.to(self.device)
        if objective == "regression":
            squared = (output.float() - target) ** 2
            return squared.reshape(target.shape[0], -1).mean(dim=1).sum(), target.shape[0], 0
        if objective == "classification":
            right = int((output.argmax(dim=1) == target).sum()) if judged else 0
            return F.cross_entropy(output, target, reduction="sum"), target.shape[0], right
        right = int(((output.argmax(dim=2) == target) & counted.to(self.device)).sum()) if judged else 0
        summed = F.cross_entropy(output.flatten(0, 1), target.flatten(), ignore_index=IGNORE, reduction="sum")
        return summed, int(counted.sum()), right

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, limit: int | None = None) -> Evaluation:
        """The whole split in file order, or its first ``limit`` batches (quick checks)."""
        data = self.data.split(split)
        total, count, correct = 0.0, 0, 0
        with evaluating(model):
            for start in islice(range(0, len(data), self.eval_batch_size), limit):
                summed, items, right = self.scored(model, data, slice(start, start + self.eval_batch_size), True)
                total, count, correct = total + float(summed), count + items, correct + right
        if count == 0:
            raise IsscliError(f"the first {limit} batch(es) of {split} hold no counted steps (all -100 or padding)",
                              "raise `max_eval_batches`, or leave it out")
        if self.data.objective == "regression":
            return Evaluation(split, total / count, count, None, "regression", self.trivial_loss(data))
        return Evaluation(split, total / count, count, correct / count, self.data.objective)

    def trivial_loss(self, data: TensorSplit) -> float:
        """The mean squared error of always predicting the training targets' mean: the scale of a regression's loss."""
        mean = self.data.split("train").y.double().mean(dim=0)
        return float(((data.y.double() - mean) ** 2).mean())


def prediction(output: Any) -> torch.Tensor:
    """The model's prediction: its output, or the first element of a tuple/list (the contract the CLI states)."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise IsscliError(f"the model returned {type(output).__name__}, not a tensor",
                          "return the prediction from forward, or a tuple whose first element is the prediction")
    return output


def shape_text(first: str, shape: tuple[int, ...] | torch.Size) -> str:
    return "[" + ", ".join([first, *(str(size) for size in shape)]) + "]"


def regression_hint(output: torch.Tensor, target: torch.Tensor) -> str:
    """Either side may be the one to change; y only where the output already has a row per sample."""
    fix = f"return shape {shape_text('B', target.shape[1:])} from forward"
    if output.dim() and output.shape[0] == target.shape[0]:
        return f"{fix}, or store y as {shape_text('N', output.shape[1:])}"
    return f"{fix}: one row per sample"


def checked_output(output: torch.Tensor, target: torch.Tensor, data: TensorData) -> torch.Tensor:
    """The prediction, if its shape is what the objective scores; never broadcast (``[B, 1]`` against ``[B]`` would
    silently score ``[B, B]`` pairs)."""
    got, batch = list(output.shape), target.shape[0]
    if data.objective == "regression":
        if output.shape != target.shape:
            raise IsscliError(f"the model's output has shape {got} but y has shape {list(target.shape)}; regression "
                              "needs them equal (isscli does not broadcast)", regression_hint(output, target))
        return output
    classes = data.num_classes or 0
    if data.objective == "classification":
        if output.dim() != 2 or output.shape[0] != batch or output.shape[1] < classes:
            raise IsscliError(f"the model's output has shape {got}; classification of {batch} sequences needs "
                              f"[{batch}, C] with C ≥ {classes} (`num_classes`)",
                              "return one logit per class and sequence from forward, [batch, classes]")
        return output
    steps = target.shape[1]
    longest = int((target != IGNORE).nonzero()[:, 1].max()) + 1 if bool((target != IGNORE).any()) else 1
    if output.dim() != 3 or output.shape[0] != batch or not longest <= output.shape[1] <= steps \
            or output.shape[2] < classes:
        raise IsscliError(f"the model's output has shape {got}; tagging needs [{batch}, {steps}, C] with "
                          f"C ≥ {classes} (`num_classes`)", "return one logit per class and step from forward, "
                          "[batch, steps, classes] (pad_packed_sequence(…, total_length=x.shape[1]))")
    return output
