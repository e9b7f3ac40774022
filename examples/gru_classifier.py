"""Classify token sequences with an Embedding -> GRU -> masked mean -> Linear model, learn ISS, compact it.

A plain PyTorch classifier over padded token sequences of different lengths: the GRU's outputs are averaged over
each sequence's real steps (a length mask), then a linear layer gives the class. The synthetic task: a
sequence's class says which of two marker tokens it holds (neither, the first, the second, both), hidden among
random filler tokens. :class:`isscli.IssTraining` takes the GRU to ``target_hidden`` units inside the loop;
:func:`isscli.compact_module` removes the dead units from the user's own ``Classifier`` — the mask and the
mean need no change, since only the GRU's width changes.

Run it::

    python examples/gru_classifier.py          # GRU 96 -> 24 units
    python examples/gru_classifier.py --tiny   # GRU 32 -> 8 units, a few seconds (what the tests run)
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

import isscli

VOCABULARY, CLASSES, MARKERS = 40, 4, (1, 2)  # token 0 is padding; tokens 1 and 2 are the markers


class Classifier(nn.Module):
    """The user's model: embedding, GRU, mean over each sequence's real steps, linear classes."""

    def __init__(self, hidden: int = 96, embedding: int = 32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, embedding, padding_idx=0)
        self.gru = nn.GRU(embedding, hidden, batch_first=True)
        self.classes = nn.Linear(hidden, CLASSES)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        output, _ = self.gru(self.embedding(tokens))  # [B, T, H]
        mask = (torch.arange(tokens.shape[1]) < lengths.unsqueeze(1)).unsqueeze(-1)  # [B, T, 1]
        pooled = (output * mask).sum(1) / lengths.unsqueeze(1)
        return self.classes(pooled)  # [B, classes]


def make_data(count: int, steps: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Padded sequences of 6 to ``steps`` filler tokens; class = 1·(holds marker 1) + 2·(holds marker 2)."""
    lengths = torch.randint(6, steps + 1, (count,), generator=generator)
    tokens = torch.randint(len(MARKERS) + 1, VOCABULARY, (count, steps), generator=generator)
    label = torch.randint(0, CLASSES, (count,), generator=generator)
    for bit, marker in enumerate(MARKERS):
        holds = (label >> bit & 1).bool()
        where = (torch.rand(count, generator=generator) * lengths).long()  # a random real step
        tokens[holds, where[holds]] = marker
    tokens[torch.arange(steps) >= lengths.unsqueeze(1)] = 0
    return tokens, lengths, label


def batches(data: tuple[torch.Tensor, ...], size: int, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    order = torch.randperm(len(data[0]), generator=torch.Generator().manual_seed(seed))
    for index in order.split(size):
        yield tuple(part[index] for part in data)


@torch.no_grad()
def evaluate(model: nn.Module, data: tuple[torch.Tensor, ...]) -> tuple[float, float]:
    """Cross-entropy and accuracy."""
    model.eval()
    tokens, lengths, label = data
    logits = model(tokens, lengths)
    return float(nn.functional.cross_entropy(logits, label)), float((logits.argmax(1) == label).float().mean())


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train: tuple[torch.Tensor, ...],
        valid: tuple[torch.Tensor, ...], epochs: int, batch_size: int, iss: isscli.IssTraining | None = None,
        ) -> None:
    """The user's own loop; with ``iss`` it makes IssTraining's three calls."""
    for epoch in range(epochs):
        model.train()
        for tokens, lengths, label in batches(train, batch_size, seed=epoch):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(tokens, lengths), label)
            loss.backward()
            if iss is not None:
                iss.after_backward(loss)
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # after after_backward: the whole gradient is clipped
            optimizer.step()
            if iss is not None:
                iss.after_step()
        if iss is not None:
            valid_loss, _ = evaluate(model, valid)
            iss.end_epoch(valid_loss)  # a cross-entropy: with log_loss=True a rise of log 2 backs off


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-sized run (GRU 32 -> 8 units)")
    parser.add_argument("--epochs", type=int, help="epochs in all: pruning, then a third recovery (default 9; tiny 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="a directory to write the figures to, as gru_classifier.json")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 2:
        parser.error("--epochs must be at least 2: pruning, then recovery")
    hidden, target, samples, steps = (32, 8, 1024, 16) if args.tiny else (96, 24, 4096, 30)
    epochs = args.epochs or (6 if args.tiny else 9)
    recover, batch_size = max(1, epochs // 3), 16 if args.tiny else 32

    generator = torch.Generator().manual_seed(args.seed)
    train, valid = make_data(samples, steps, generator), make_data(512, steps, generator)

    torch.manual_seed(args.seed)
    dense = Classifier(hidden)
    fit(dense, torch.optim.Adam(dense.parameters(), lr=3e-3), train, valid, epochs, batch_size)
    dense_loss, dense_accuracy = evaluate(dense, valid)

    torch.manual_seed(args.seed)  # the same initial weights as the dense model
    model = Classifier(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    example = (valid[0][:8], valid[1][:8])  # what forward takes: (tokens, lengths)
    iss = isscli.IssTraining(model, optimizer, batches_per_epoch=math.ceil(samples / batch_size),
                             example_input=example, target_hidden=target, prune_epochs=epochs - recover,
                             recover_epochs=recover, log_loss=True)
    fit(model, optimizer, train, valid, iss.epochs, batch_size, iss)
    iss_loss, iss_accuracy = evaluate(model, valid)

    result = iss.compact(example)  # compact_module(model, example, spec=iss.spec)
    small = result.model
    assert type(small) is Classifier, type(small)
    assert result.max_difference <= 1e-5, result.max_difference
    assert result.units == {"gru.l0": target}, result.units
    small_loss, small_accuracy = evaluate(small, valid)

    figures = {
        "hidden": hidden, "target": target, "epochs": iss.epochs, "units": result.units,
        "dense_accuracy": dense_accuracy, "iss_accuracy": iss_accuracy, "compact_accuracy": small_accuracy,
        "dense_valid_loss": dense_loss, "iss_valid_loss": iss_loss, "compact_valid_loss": small_loss,
        "parameters_dense": result.parameters_before, "parameters_compact": result.parameters_after,
        "max_difference": result.max_difference, "compact_class": type(small).__name__,
        "gru_sizes": small.gru.hidden_sizes, "head_in_features": small.classes.in_features,
    }
    if args.out is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gru_classifier.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"Classifier, GRU {hidden} -> {result.units['gru.l0']} units after {iss.epochs} epochs "
          f"({epochs - recover} pruning, {recover} recovery)")
    print(f"validation accuracy: dense {dense_accuracy:.3f}, ISS {iss_accuracy:.3f}, compact {small_accuracy:.3f} "
          f"(chance {1 / CLASSES:.2f})")
    print(f"parameters: {result.parameters_before:,} -> {result.parameters_after:,}; compact model is a "
          f"{type(small).__name__}, max output difference {result.max_difference:.1e}")
    return figures


if __name__ == "__main__":
    main()
