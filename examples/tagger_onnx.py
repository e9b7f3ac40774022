"""Tag every token with a 2-layer bidirectional LSTM, give each direction its own size, compact, export to ONNX.

A plain PyTorch tagger — ``nn.Embedding`` → ``nn.LSTM(bidirectional=True, num_layers=2, batch_first=True)`` →
``nn.Linear`` on every step — whose tag for a token depends on the tokens on both sides of it. ISS sets are per
layer *and direction*, so :class:`isscli.IssTraining` takes a ``target_hidden`` per direction (here the reverse
direction keeps fewer units than the forward one). :func:`isscli.compact_module` gives a ``Tagger`` again whose
LSTM is an :class:`isscli.nn.LSTM` with sizes ``[(forward, reverse), …]``; the user's ``forward`` still reads
``[B, T, forward + reverse]`` features. Then ``torch.onnx.export`` writes it with dynamic batch and time axes,
and onnxruntime's outputs are checked against the compacted and the pruned PyTorch models.

``dynamo=False``: the TorchScript-based exporter. The default (dynamo) exporter of recent torch needs the
``onnxscript`` package; the TorchScript one needs only ``onnx``, and exports isscli.nn modules as ONNX LSTM ops.

Run it::

    python examples/tagger_onnx.py                       # 48 units per direction -> (20, 12), (16, 8)
    python examples/tagger_onnx.py --tiny --out /tmp/tag # 24 -> (10, 6), (8, 4); writes /tmp/tag/tagger.onnx
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

import isscli

VOCABULARY, MARKERS, TAGS = 32, 4, 4  # tokens 0..3 are markers


class Tagger(nn.Module):
    """The user's model: a tag for every token, from a 2-layer bidirectional LSTM."""

    def __init__(self, hidden: int = 48, embedding: int = 24) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.tags = nn.Linear(2 * hidden, TAGS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.embedding(tokens))  # [B, T, forward + reverse]
        return self.tags(output)  # [B, T, tags]


def make_data(count: int, steps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens (a marker a fifth of the time); a token's tag says whether a marker was among the 3 tokens
    before it (bit 0) and among the 3 after it (bit 1): the forward direction sees one, the reverse the other."""
    tokens = torch.randint(MARKERS, VOCABULARY, (count, steps), generator=generator)
    marked = torch.rand(count, steps, generator=generator) < 0.2
    tokens[marked] = torch.randint(0, MARKERS, (int(marked.sum()),), generator=generator)
    marker = (tokens < MARKERS).float().unsqueeze(1)  # [N, 1, T]
    window = torch.ones(1, 1, 3)
    before = nn.functional.conv1d(nn.functional.pad(marker, (3, 0))[..., :-1], window)  # tokens t-3 .. t-1
    after = nn.functional.conv1d(nn.functional.pad(marker, (0, 3))[..., 1:], window)  # tokens t+1 .. t+3
    return tokens, ((before > 0).long() + 2 * (after > 0).long()).squeeze(1)


def batches(data: tuple[torch.Tensor, torch.Tensor], size: int, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    order = torch.randperm(len(data[0]), generator=torch.Generator().manual_seed(seed))
    for index in order.split(size):
        yield data[0][index], data[1][index]


@torch.no_grad()
def evaluate(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """Cross-entropy per token and token accuracy."""
    model.eval()
    logits = model(data[0])
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), data[1].flatten())
    return float(loss), float((logits.argmax(-1) == data[1]).float().mean())


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train: tuple[torch.Tensor, torch.Tensor],
        valid: tuple[torch.Tensor, torch.Tensor], epochs: int, batch_size: int,
        iss: isscli.IssTraining | None = None) -> None:
    """The user's own loop; with ``iss`` it makes IssTraining's three calls."""
    for epoch in range(epochs):
        model.train()
        for tokens, tags in batches(train, batch_size, seed=epoch):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(tokens).flatten(0, 1), tags.flatten())
            loss.backward()
            if iss is not None:
                iss.after_backward(loss)
            optimizer.step()
            if iss is not None:
                iss.after_step()
        if iss is not None:
            iss.end_epoch(evaluate(model, valid)[0])


def relative_difference(got: np.ndarray | torch.Tensor, expected: torch.Tensor) -> float:
    """max |got - expected| over max |expected|."""
    expected = expected.detach().double()
    return float((torch.as_tensor(got).double() - expected).abs().max() / expected.abs().max())


def export_and_check(small: nn.Module, pruned: nn.Module, path: Path, check: torch.Tensor) -> dict[str, float]:
    """Export ``small`` with dynamic batch and time axes; onnxruntime against both PyTorch models on ``check``
    (another batch size and length than the export's example)."""
    small.eval()
    pruned.eval()
    example = check[:2, :5]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # "legacy TorchScript-based export": chosen
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shape checks, constant for a trace
        # "… a batch_size other than 1 … LSTM …": the check below runs another batch size and length
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(small, (example,), str(path), dynamo=False,  # see the module docstring
                          input_names=["tokens"], output_names=["tags"],
                          dynamic_axes={"tokens": {0: "batch", 1: "time"}, "tags": {0: "batch", 1: "time"}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"tokens": check.numpy()})
    with torch.no_grad():
        return {"onnx_vs_compact": relative_difference(got, small(check)),
                "onnx_vs_pruned": relative_difference(got, pruned(check))}


@contextmanager
def output_directory(path: str | None) -> Iterator[Path]:
    """``--out`` (created), or a temporary directory removed afterwards."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory() as temporary:
        yield Path(temporary)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-sized run (24 units per direction)")
    parser.add_argument("--epochs", type=int, help="epochs in all: pruning, then a third recovery (default 9; tiny 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="where to write tagger.onnx and tagger_onnx.json "
                        "(default: a temporary directory, removed at the end)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 2:
        parser.error("--epochs must be at least 2: pruning, then recovery")
    if args.tiny:
        hidden, samples, steps, batch_size = 24, 768, 20, 16
        targets = {"lstm.l0": 10, "lstm.l0_reverse": 6, "lstm.l1": 8, "lstm.l1_reverse": 4}
    else:
        hidden, samples, steps, batch_size = 48, 4096, 32, 32
        targets = {"lstm.l0": 20, "lstm.l0_reverse": 12, "lstm.l1": 16, "lstm.l1_reverse": 8}
    epochs = args.epochs or (6 if args.tiny else 9)
    recover = max(1, epochs // 3)

    generator = torch.Generator().manual_seed(args.seed)
    train, valid = make_data(samples, steps, generator), make_data(256, steps, generator)

    torch.manual_seed(args.seed)
    dense = Tagger(hidden)
    fit(dense, torch.optim.Adam(dense.parameters(), lr=5e-3), train, valid, epochs, batch_size)
    dense_loss, dense_accuracy = evaluate(dense, valid)

    torch.manual_seed(args.seed)  # the same initial weights as the dense model
    model = Tagger(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    example = valid[0][:8]
    iss = isscli.IssTraining(model, optimizer, batches_per_epoch=math.ceil(samples / batch_size),
                             example_input=example, target_hidden=targets, prune_epochs=epochs - recover,
                             recover_epochs=recover, log_loss=True)
    fit(model, optimizer, train, valid, iss.epochs, batch_size, iss)
    iss_loss, iss_accuracy = evaluate(model, valid)

    result = isscli.compact_module(model, example, spec=iss.spec)
    small = result.model
    assert type(small) is Tagger, type(small)
    assert result.max_difference <= 1e-5, result.max_difference
    assert result.units == targets, (result.units, targets)
    small_loss, small_accuracy = evaluate(small, valid)

    figures = {
        "hidden": hidden, "targets": targets, "epochs": iss.epochs, "units": result.units,
        "dense_accuracy": dense_accuracy, "iss_accuracy": iss_accuracy, "compact_accuracy": small_accuracy,
        "dense_valid_loss": dense_loss, "iss_valid_loss": iss_loss, "compact_valid_loss": small_loss,
        "parameters_dense": result.parameters_before, "parameters_compact": result.parameters_after,
        "max_difference": result.max_difference, "compact_class": type(small).__name__,
        "lstm_sizes": small.lstm.hidden_sizes, "head_in_features": small.tags.in_features,
    }
    with output_directory(args.out) as out:
        path = out / "tagger.onnx"
        figures.update(export_and_check(small, model, path, valid[0][:7]))
        figures["onnx_bytes"] = path.stat().st_size
        figures["onnx_file"] = str(path) if args.out is not None else None
        (out / "tagger_onnx.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert figures["onnx_vs_compact"] <= 1e-5 and figures["onnx_vs_pruned"] <= 1e-5, figures
    print(f"Tagger, BiLSTM {hidden} per direction x 2 -> units {result.units} after {iss.epochs} epochs")
    print(f"token accuracy: dense {dense_accuracy:.3f}, ISS {iss_accuracy:.3f}, compact {small_accuracy:.3f}")
    print(f"parameters: {result.parameters_before:,} -> {result.parameters_after:,}; compact model is a "
          f"{type(small).__name__}, max output difference {result.max_difference:.1e}")
    print(f"ONNX ({figures['onnx_bytes']:,} bytes): onnxruntime vs compact {figures['onnx_vs_compact']:.1e}, "
          f"vs pruned {figures['onnx_vs_pruned']:.1e}" + (f"; written to {path}" if args.out else ""))
    return figures


if __name__ == "__main__":
    main()
