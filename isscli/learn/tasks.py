"""What a model learns from: batches, the data loss and the evaluation of each model family.

Language models read Zaremba-style streams with the hidden state carried across chunks;
their data loss is the cross-entropy **summed over the unrolled steps and averaged over the
batch** (the paper's and the authors' convention, so the paper's λ applies unchanged).
Classifiers read padded sentence batches; their data loss is the mean cross-entropy per
sentence. Any other recurrent model reads tensor data (:class:`~isscli.learn.tensor_task.TensorTask`); its data
loss is that of its objective (see there). What every task returns, and the protocol, are in
:mod:`isscli.learn.evaluation`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isscli.data.corpus import Corpus, batchify, bptt_chunks, count_chunks
from isscli.data.sentences import EncodedSplit, SentenceCorpus, count_batches, sentence_batches
from isscli.learn.distributed import check_divides, current, gather_columns
from isscli.learn.evaluation import Evaluation, IndependentBatches, StepLoss, Task
from isscli.learn.tensor_task import TensorTask
from isscli.live.model import evaluating

#: The tasks of isscli's families, and (importable from here as before the split) the scores and protocol of
#: :mod:`isscli.learn.evaluation` and the tensor task of :mod:`isscli.learn.tensor_task`.
__all__ = ["ClassifierTask", "Evaluation", "IndependentBatches", "LanguageModelTask", "StepLoss", "Task", "TensorTask",
           "detached", "evaluate_sentences", "evaluate_stream", "evaluating"]


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
