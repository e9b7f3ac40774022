"""What a model learns from: batches, the data loss and the evaluation of each model family.

Language models read Zaremba-style streams with the hidden state carried across chunks;
their data loss is the cross-entropy **summed over the unrolled steps and averaged over the
batch** (the paper's and the authors' convention, so the paper's λ applies unchanged).
Classifiers read padded sentence batches; their data loss is the mean cross-entropy per
sentence. Any other recurrent model reads tensor data (:class:`TensorTask`); its data loss is
that of its objective (see there).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from isscli.data.corpus import Corpus, batchify, bptt_chunks, count_chunks
from isscli.data.sentences import EncodedSplit, SentenceCorpus, count_batches, sentence_batches
from isscli.data.tensors import IGNORE, TensorData, TensorSplit
from isscli.io.errors import IsscliError
from isscli.learn.distributed import check_divides, current, gather_columns


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

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"split": self.split, "loss": self.loss, "perplexity": self.perplexity,
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


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout) meanwhile, its own mode back after, an error or not."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class IndependentBatches:
    """Tasks whose batches are independent (sentences, samples): nothing is carried from one batch to the next, so
    a mid-epoch resume has no state to restore."""

    def carried(self) -> dict[str, torch.Tensor]:
        return {}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        pass


def detached(state: Any) -> Any:
    """Cut the graph between chunks (truncated BPTT), whatever the family's state is made of."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detached(part) for part in state)


class LanguageModelTask:
    """Truncated BPTT over ``batch_size`` contiguous streams; state carried, detached per chunk.

    With several ranks, each reads its own contiguous block of the streams.
    """

    def __init__(self, corpus: Corpus, batch_size: int, bptt: int, eval_batch_size: int, device: torch.device) -> None:
        check_divides(batch_size, "each rank reads its share of the streams", "batch_size")
        self.corpus = corpus
        self.batch_size = batch_size
        self.bptt = bptt
        self.eval_batch_size = eval_batch_size
        self.device = device
        self.state: Any = None

    @cached_property
    def train_stream(self) -> torch.Tensor:
        """Built on first use: evaluating needs no training batches. This rank's streams only."""
        streams = batchify(self.corpus.splits["train"], self.batch_size)
        return streams[:, current().share(self.batch_size)].contiguous().to(self.device)

    def num_batches(self, limit: int | None) -> int:
        total = count_chunks(self.train_stream, self.bptt)
        return min(total, limit) if limit else total

    def batches(self, epoch: int, limit: int | None, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Each epoch starts from a zero state (Zaremba et al.); ``start`` > 0 continues one (its state restored).

        An epoch cut short to ``limit`` chunks reads the next ``limit`` chunks after the previous
        epoch's (wrapping around), so that short epochs go through the corpus instead of reading
        its beginning again and again.
        """
        if start == 0:
            self.state = None
        chunks = list(bptt_chunks(self.train_stream, self.bptt))
        if limit:
            first = (epoch - 1) * limit % len(chunks)
            chunks = (chunks[first:] + chunks[:first])[:limit]
        return islice(iter(chunks), start, None)

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepLoss:
        inputs, targets = batch
        if self.state is not None:
            self.state = detached(self.state)
        logits, self.state = model(inputs, self.state)
        summed = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
        return StepLoss(summed * current().world / self.batch_size, float(summed.detach()), targets.numel())

    def carried(self) -> dict[str, torch.Tensor]:
        """The state carried into the next chunk, of every stream (all ranks' joined): for a mid-epoch resume."""
        tensors = {}
        for layer, directions in enumerate(self.state or []):
            for direction, entry in enumerate(directions):
                parts = entry if isinstance(entry, tuple) else (entry,)
                for name, part in zip(("h", "c"), parts):
                    tensors[f"l{layer}.d{direction}.{name}"] = gather_columns(part.detach(), dim=1).cpu()
        return tensors

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        """Carry :meth:`carried`'s state on (this rank's streams of it)."""
        layers: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
        share = current().share(self.batch_size)
        for key, tensor in tensors.items():
            layer, direction, name = key.split(".")
            part = tensor[:, share].contiguous().to(self.device)
            layers.setdefault(int(layer[1:]), {}).setdefault(int(direction[1:]), {})[name] = part
        self.state = [[(parts["h"], parts["c"]) if "c" in parts else parts["h"]
                       for _, parts in sorted(layers[layer].items())] for layer in sorted(layers)] or None

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, limit: int | None = None) -> Evaluation:
        """The whole split, or its first ``limit`` chunks (quick checks)."""
        return evaluate_stream(model, self.corpus.splits[split], split, self.eval_batch_size, self.bptt, self.device,
                               limit)


@torch.no_grad()
def evaluate_stream(
    model: nn.Module, ids: torch.Tensor, split: str, batch_size: int, bptt: int, device: torch.device,
    limit: int | None = None,
) -> Evaluation:
    """Perplexity of an LM over a whole split, state carried across chunks."""
    stream = batchify(ids, batch_size).to(device)
    state, total, count = None, 0.0, 0
    with evaluating(model):
        for inputs, targets in islice(bptt_chunks(stream, bptt), limit):
            logits, state = model(inputs, state)
            total += float(F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum"))
            count += targets.numel()
    return Evaluation(split, total / count, count)


class ClassifierTask(IndependentBatches):
    """Shuffled padded batches; the shuffle depends on (seed, epoch) only, so resuming is exact.

    With several ranks, each reads its share of the sentences of every batch.
    """

    def __init__(self, corpus: SentenceCorpus, batch_size: int, eval_batch_size: int, seed: int,
                 device: torch.device) -> None:
        self.corpus = corpus
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.device = device

    def num_batches(self, limit: int | None) -> int:
        total = count_batches(self.corpus.splits["train"], self.batch_size)
        return min(total, limit) if limit else total

    def batches(self, epoch: int, limit: int | None, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return islice(sentence_batches(self.corpus.splits["train"], self.batch_size, generator), start, limit)

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepLoss:
        tokens, lengths, labels = batch
        ranks, size = current(), labels.numel()
        rows = torch.tensor_split(torch.arange(size), ranks.world)[ranks.rank]
        weight = 1.0 if rows.numel() else 0.0  # a batch smaller than the ranks: an idle rank still steps, at 0
        rows = rows if rows.numel() else torch.zeros(1, dtype=torch.long)
        tokens, lengths, labels = tokens[:, rows].to(self.device), lengths[rows].to(self.device), labels[rows]
        summed = F.cross_entropy(model(tokens, lengths), labels.to(self.device), reduction="sum") * weight
        return StepLoss(summed * ranks.world / size, float(summed.detach()), int(weight * rows.numel()))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, limit: int | None = None) -> Evaluation:
        """The whole split, or its first ``limit`` batches (quick checks)."""
        return evaluate_sentences(model, self.corpus.splits[split], split, self.eval_batch_size, self.device, limit)


@torch.no_grad()
def evaluate_sentences(
    model: nn.Module, data: EncodedSplit, split: str, batch_size: int, device: torch.device, limit: int | None = None
) -> Evaluation:
    """Mean cross-entropy and accuracy of a classifier over a split (its first ``limit`` batches)."""
    total, correct, count = 0.0, 0, 0
    with evaluating(model):
        for tokens, lengths, labels in islice(sentence_batches(data, batch_size), limit):
            labels = labels.to(device)
            logits = model(tokens.to(device), lengths.to(device)).float()  # a bf16 model's losses summed in fp32
            total += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(dim=1) == labels).sum())
            count += labels.numel()
    return Evaluation(split, total / count, count, correct / count)


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
