"""A user's own models through the library: dense vs ISS-compact forecaster and tagger — parameters, speed, quality.

    python benchmarks/own_models.py [--epochs 12] [--threads 2] [--json out.json]

Both models are written in plain PyTorch (nothing of isscli inside) and trained by a plain Adam loop on
synthetic data made here (seeded). The dense model trains ``epochs`` epochs; the ISS model is the same
architecture trained from the same initial weights for the same epochs with :class:`isscli.IssTraining`
(a unit target, no λ), then :func:`isscli.compact_module`. Quality is the validation loss (forecaster,
MSE) or tagging accuracy (tagger); speed is an interleaved timing (``isscli.runtime.timing``) of inference at
batch 10 × 30 steps, the paper's Table-1 shape, medians over ``repeats`` rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import isscli
from isscli.runtime.timing import cpu_model, time_interleaved


class Forecaster(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, 2, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).squeeze(-1)


class Tagger(nn.Module):
    def __init__(self, hidden: int, vocab: int = 100, tags: int = 12) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.lstm = nn.LSTM(64, hidden, 2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(2 * hidden, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.out(out)


def forecasting_data(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of noisy sinusoids on 8 channels; the target is the next step's sum."""
    time = torch.arange(31).float() / 30
    frequency = torch.rand(count, 8, 1, generator=generator) * 5 + 1
    phase = torch.rand(count, 8, 1, generator=generator) * 6.283
    series = torch.sin(6.283 * frequency * time + phase).transpose(1, 2)
    series = series + 0.05 * torch.randn(series.shape, generator=generator)
    return series[:, :30], series[:, 30].sum(-1)


def tagging_data(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Tag = 4·(previous token mod 3) + (next token mod 4): both directions are needed."""
    tokens = torch.randint(0, 100, (count, 30), generator=generator)
    tags = 4 * (tokens.roll(1, 1) % 3) + tokens.roll(-1, 1) % 4
    return tokens, tags


def tag_loss(logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tags.reshape(-1))


def quality(name: str, model: nn.Module, valid: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Validation MSE (forecaster) or tag accuracy (tagger)."""
    model.eval()
    with torch.no_grad():
        out = model(valid[0])
        if name == "forecaster":
            return float(nn.functional.mse_loss(out, valid[1]))
        return float((out.argmax(-1) == valid[1]).float().mean())


def train(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor],
          loss_fn: Callable[..., torch.Tensor], epochs: int, targets: Any = None) -> isscli.IssTraining | None:
    """The user's loop: Adam, batches of 32; with ``targets`` ISS to those units (last quarter: recovery)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches = [(data[0][i:i + 32], data[1][i:i + 32]) for i in range(0, len(data[0]), 32)]
    iss = None
    if targets is not None:
        recover = max(1, epochs // 4)
        iss = isscli.IssTraining(model, optimizer, batches_per_epoch=len(batches), example_input=valid[0][:10],
                                 target_hidden=targets, prune_epochs=epochs - recover, recover_epochs=recover)
    for _ in range(epochs):
        model.train()
        for x, y in batches:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            if iss:
                iss.after_backward(loss)
            optimizer.step()
            if iss:
                iss.after_step()
        if iss:
            model.eval()
            with torch.no_grad():
                iss.end_epoch(float(loss_fn(model(valid[0]), valid[1])))
    return iss


def run_case(name: str, epochs: int, repeats: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    if name == "forecaster":
        build, make, loss_fn, targets = (lambda: Forecaster(128)), forecasting_data, nn.functional.mse_loss, [48, 32]
    else:
        build, make, loss_fn, targets = (lambda: Tagger(128)), tagging_data, tag_loss, [[64, 48], [48, 32]]
        targets = [size for layer in targets for size in layer]
    data, valid = make(4096, generator), make(512, generator)
    torch.manual_seed(1)
    dense = build()
    sparse = build()
    sparse.load_state_dict(dense.state_dict())
    train(dense, data, valid, loss_fn, epochs)
    iss = train(sparse, data, valid, loss_fn, epochs, targets)
    assert iss is not None
    compacted = iss.compact(valid[0][:10])
    small = compacted.model.eval()
    dense.eval()
    example = valid[0][:10]
    with torch.no_grad():
        timings = time_interleaved({"dense": lambda: dense(example), "compact": lambda: small(example)},
                                   repeats=repeats, warmup=3)
    return {
        "model": name, "epochs": epochs, "units": compacted.units, "targets": targets,
        "parameters_dense": compacted.parameters_before, "parameters_compact": compacted.parameters_after,
        "quality_dense": quality(name, dense, valid), "quality_compact": quality(name, small, valid),
        "quality_metric": "valid MSE" if name == "forecaster" else "tag accuracy",
        "dense_ms": timings["dense"].median_ms, "compact_ms": timings["compact"].median_ms,
        "speedup": timings["dense"].median_ms / timings["compact"].median_ms,
        "verified_max_difference": compacted.max_difference,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [run_case(name, args.epochs, args.repeats) for name in ("forecaster", "tagger")]
    print(f"machine: {cpu_model()}, {args.threads} threads, torch {torch.__version__}, {platform.python_version()}")
    for row in rows:
        print(f"{row['model']}: units {row['units']}; parameters {row['parameters_dense']:,} → "
              f"{row['parameters_compact']:,}; {row['quality_metric']} {row['quality_dense']:.4f} → "
              f"{row['quality_compact']:.4f}; batch 10×30 {row['dense_ms']:.2f} ms → {row['compact_ms']:.2f} ms "
              f"({row['speedup']:.2f}×); verified {row['verified_max_difference']:.1e}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
