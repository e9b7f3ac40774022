"""Forecast a noisy multi-channel signal with a 2-layer LSTM, shrink it to set sizes in your own loop, compact it.

The model is plain PyTorch — ``nn.LSTM(8, H, 2, batch_first=True)``, read at its last step by ``nn.Linear(H, 1)`` —
and so is the loop (Adam, MSE). ISS adds three calls to the loop (:class:`isscli.IssTraining`): no λ is given,
only the units each layer keeps (``target_hidden``); the controller steers the group Lasso so that each layer
ends with exactly that many units, then recovers with λ = 0. :func:`isscli.compact_module` then removes the
dead units: the result is a ``Forecaster`` again, physically smaller, whose outputs equal the pruned model's.

A dense ``Forecaster`` trained as many epochs on the same data from the same seed is the baseline.

Run it::

    python examples/forecaster.py            # H = 64 -> [24, 16] units (about 15 s on one CPU core)
    python examples/forecaster.py --tiny     # H = 24 -> [10, 6], a few seconds (what the tests run)
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

CHANNELS, STEPS = 8, 24


class Forecaster(nn.Module):
    """The user's model: a 2-layer LSTM over the channels, its last step read by a linear head."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.lstm = nn.LSTM(CHANNELS, hidden, 2, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)  # [B, T, H]
        return self.head(output[:, -1])  # [B, 1]: the next value of the sum


def make_data(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` windows of 8 noisy sinusoids (each channel its own frequency band, random phase and amplitude);
    the target is the next value of their clean sum, plus a little noise (an MSE floor of 0.0025)."""
    bands = torch.linspace(0.15, 0.9, CHANNELS)
    frequency = bands * (0.8 + 0.4 * torch.rand(count, CHANNELS, generator=generator))
    phase = 2 * math.pi * torch.rand(count, CHANNELS, generator=generator)
    amplitude = 0.2 + 0.3 * torch.rand(count, CHANNELS, generator=generator)
    time = torch.arange(STEPS + 1.0).view(1, -1, 1)
    clean = amplitude.unsqueeze(1) * torch.sin(frequency.unsqueeze(1) * time + phase.unsqueeze(1))  # [N, T+1, C]
    inputs = clean[:, :STEPS] + 0.1 * torch.randn(count, STEPS, CHANNELS, generator=generator)
    target = clean[:, STEPS].sum(1, keepdim=True) + 0.05 * torch.randn(count, 1, generator=generator)
    return inputs, target


def batches(inputs: torch.Tensor, target: torch.Tensor, size: int, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))
    for index in order.split(size):
        yield inputs[index], target[index]


@torch.no_grad()
def mse(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> float:
    model.eval()
    return float(nn.functional.mse_loss(model(inputs), target))


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, data: dict[str, tuple[torch.Tensor, torch.Tensor]],
        epochs: int, batch_size: int, iss: isscli.IssTraining | None = None) -> float:
    """The user's own loop; with ``iss`` it makes IssTraining's three calls. Returns the last validation MSE."""
    valid = math.nan
    for epoch in range(epochs):
        model.train()
        for x, y in batches(*data["train"], batch_size, seed=epoch):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            if iss is not None:
                iss.after_backward(loss)  # adds λ·∂R/∂w into .grad (before any clipping)
            optimizer.step()
            if iss is not None:
                iss.after_step()  # zeroes |w| < τ, counts units, steers λ
        valid = mse(model, *data["valid"])
        if iss is not None:
            iss.end_epoch(valid)  # back-off test; the exact cut at the end of pruning; then recovery
    return valid


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-sized run (H = 24, fewer samples and epochs)")
    parser.add_argument("--epochs", type=int, help="epochs in all: pruning, then a third recovery (default 12; tiny 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="a directory to write the figures to, as forecaster.json")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 2:
        parser.error("--epochs must be at least 2: pruning, then recovery")
    # 64 batches an epoch either way: with Adam a weight moves about lr per step, so the pruning phase needs a few
    # hundred steps for the controller to walk the units down its schedule (see examples/README.md)
    hidden, targets, samples, batch_size = (24, [10, 6], 1024, 16) if args.tiny else (64, [24, 16], 4096, 64)
    epochs = args.epochs or (6 if args.tiny else 12)
    recover = max(1, epochs // 3)

    generator = torch.Generator().manual_seed(args.seed)
    data = {"train": make_data(samples, generator), "valid": make_data(512, generator)}

    torch.manual_seed(args.seed)
    dense = Forecaster(hidden)
    dense_mse = fit(dense, torch.optim.Adam(dense.parameters(), lr=5e-3), data, epochs, batch_size)

    torch.manual_seed(args.seed)  # the same initial weights as the dense model
    model = Forecaster(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    example = data["valid"][0][:8]
    iss = isscli.IssTraining(model, optimizer, batches_per_epoch=math.ceil(samples / batch_size),
                             example_input=example, target_hidden=targets, prune_epochs=epochs - recover,
                             recover_epochs=recover)
    iss_mse = fit(model, optimizer, data, iss.epochs, batch_size, iss)

    result = isscli.compact_module(model, example, spec=iss.spec)
    small = result.model
    assert type(small) is Forecaster, type(small)
    assert result.max_difference <= 1e-5, result.max_difference
    assert list(result.units.values()) == targets, (result.units, targets)
    small_mse = mse(small, *data["valid"])

    figures = {
        "hidden": hidden, "targets": targets, "epochs": iss.epochs, "units": result.units,
        "dense_valid_mse": dense_mse, "iss_valid_mse": iss_mse, "compact_valid_mse": small_mse,
        "mse_ratio": iss_mse / dense_mse, "parameters_dense": result.parameters_before,
        "parameters_compact": result.parameters_after, "max_difference": result.max_difference,
        "compact_class": type(small).__name__, "lstm_sizes": small.lstm.hidden_sizes,
        "controller": iss.summary().to_json(),  # λ and units per epoch, when each layer froze, back-offs
    }
    if args.out is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "forecaster.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"Forecaster, LSTM {hidden} x 2 -> units {result.units} after {iss.epochs} epochs "
          f"({epochs - recover} pruning, {recover} recovery)")
    print(f"validation MSE: dense {dense_mse:.4f}, ISS {iss_mse:.4f} (x{iss_mse / dense_mse:.2f}), "
          f"compact {small_mse:.4f}")
    print(f"parameters: {result.parameters_before:,} -> {result.parameters_after:,}; compact model is a "
          f"{type(small).__name__}, max output difference {result.max_difference:.1e}")
    return figures


if __name__ == "__main__":
    main()
