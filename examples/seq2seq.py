"""An LSTM encoder–decoder whose decoder starts from the encoder's final (h, c): one ISS set per layer pair.

A plain PyTorch sequence-to-sequence model: ``encoder = nn.LSTM(...)`` reads a sequence of one-hot symbols,
its final ``(h, c)`` is handed unchanged to ``decoder = nn.LSTM(...)`` as its initial state, and a linear head
reads the decoder's outputs; the task is to output the input sequence reversed, trained with teacher forcing.
Since unit k of the encoder's layer l *is* unit k of the decoder's layer l (the decoder starts from it), isscli
puts both in one ISS set, named ``encoder.l0+decoder.l0``: one target per layer pair, and after compaction
the encoder and decoder layers have the same sizes, so the handoff still fits. Greedy decoding — the user's
own ``generate``, feeding the decoder's state back to itself — runs unchanged on the compacted model.

Run it::

    python examples/seq2seq.py          # 2 layers of 64 units -> [24, 16]
    python examples/seq2seq.py --tiny   # 2 layers of 32 -> [12, 8], a few seconds (what the tests run)
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

SYMBOLS, LENGTH = 8, 6
START = SYMBOLS  # the decoder's first input: one more one-hot position


class Seq2Seq(nn.Module):
    """The user's model: LSTM encoder, LSTM decoder started from the encoder's final state, linear head."""

    def __init__(self, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.encoder = nn.LSTM(SYMBOLS, hidden, layers, batch_first=True)
        self.decoder = nn.LSTM(SYMBOLS + 1, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, SYMBOLS)

    def forward(self, source: torch.Tensor, decoder_input: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(source)  # (h_n, c_n)
        output, _ = self.decoder(decoder_input, state)  # passed on unchanged
        return self.head(output)  # [B, T, symbols]

    @torch.no_grad()
    def generate(self, source: torch.Tensor, steps: int) -> torch.Tensor:
        """Greedy decoding: each predicted symbol is the next step's input, the decoder's state carried along."""
        _, state = self.encoder(source)
        symbol = torch.full((len(source),), START)
        predicted = []
        for _ in range(steps):
            output, state = self.decoder(one_hot(symbol).unsqueeze(1), state)
            symbol = self.head(output[:, -1]).argmax(-1)
            predicted.append(symbol)
        return torch.stack(predicted, 1)


def one_hot(symbols: torch.Tensor) -> torch.Tensor:
    return nn.functional.one_hot(symbols, SYMBOLS + 1).float()


def make_data(count: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random symbol sequences and their reversal; the decoder's input is START and the reversal shifted right."""
    symbols = torch.randint(0, SYMBOLS, (count, LENGTH), generator=generator)
    target = symbols.flip(1)
    shifted = torch.cat([torch.full((count, 1), START), target[:, :-1]], 1)
    return {"source": one_hot(symbols)[..., :SYMBOLS], "decoder_input": one_hot(shifted), "target": target}


def batches(data: dict[str, torch.Tensor], size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    order = torch.randperm(len(data["target"]), generator=torch.Generator().manual_seed(seed))
    for index in order.split(size):
        yield {key: value[index] for key, value in data.items()}


@torch.no_grad()
def evaluate(model: Seq2Seq, data: dict[str, torch.Tensor]) -> dict[str, float]:
    """Teacher-forced cross-entropy and symbol accuracy; the share of sequences greedy decoding gets all right."""
    model.eval()
    logits = model(data["source"], data["decoder_input"])
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), data["target"].flatten())
    decoded = model.generate(data["source"], LENGTH)
    return {"loss": float(loss), "accuracy": float((logits.argmax(-1) == data["target"]).float().mean()),
            "sequences": float((decoded == data["target"]).all(1).float().mean())}


def fit(model: Seq2Seq, optimizer: torch.optim.Optimizer, train: dict[str, torch.Tensor],
        valid: dict[str, torch.Tensor], epochs: int, batch_size: int, iss: isscli.IssTraining | None = None) -> None:
    """The user's own loop (teacher forcing); with ``iss`` it makes IssTraining's three calls."""
    for epoch in range(epochs):
        model.train()
        for batch in batches(train, batch_size, seed=epoch):
            optimizer.zero_grad()
            logits = model(batch["source"], batch["decoder_input"])
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch["target"].flatten())
            loss.backward()
            if iss is not None:
                iss.after_backward(loss)
            optimizer.step()
            if iss is not None:
                iss.after_step()
        if iss is not None:
            iss.end_epoch(evaluate(model, valid)["loss"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-sized run (2 layers of 32 -> [12, 8])")
    parser.add_argument("--epochs", type=int,
                        help="epochs in all: pruning, then a quarter recovery (default 12; tiny 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="a directory to write the figures to, as seq2seq.json")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 2:
        parser.error("--epochs must be at least 2: pruning, then recovery")
    hidden, targets, samples, batch_size = (32, [12, 8], 1024, 16) if args.tiny else (64, [24, 16], 4096, 32)
    epochs = args.epochs or (8 if args.tiny else 12)
    recover = max(1, epochs // 4)
    prune = epochs - recover

    generator = torch.Generator().manual_seed(args.seed)
    train, valid = make_data(samples, generator), make_data(512, generator)

    torch.manual_seed(args.seed)
    dense = Seq2Seq(hidden)
    fit(dense, torch.optim.Adam(dense.parameters(), lr=5e-3), train, valid, epochs, batch_size)
    dense_scores = evaluate(dense, valid)

    torch.manual_seed(args.seed)  # the same initial weights as the dense model
    model = Seq2Seq(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    example = (valid["source"][:8], valid["decoder_input"][:8])
    iss = isscli.IssTraining(model, optimizer, batches_per_epoch=math.ceil(samples / batch_size),
                             example_input=example, target_hidden=targets, prune_epochs=prune,
                             recover_epochs=recover, log_loss=True)
    sets = [s.name for s in iss.spec.sets]
    assert sets == ["encoder.l0+decoder.l0", "encoder.l1+decoder.l1"], sets
    fit(model, optimizer, train, valid, iss.epochs, batch_size, iss)
    iss_scores = evaluate(model, valid)

    result = isscli.compact_module(model, example, spec=iss.spec)
    small = result.model
    assert type(small) is Seq2Seq, type(small)
    assert result.max_difference <= 1e-5, result.max_difference
    assert list(result.units.values()) == targets, (result.units, targets)
    assert small.encoder.hidden_sizes == small.decoder.hidden_sizes == [[t] for t in targets]
    small_scores = evaluate(small, valid)
    same_decoding = bool(torch.equal(small.generate(valid["source"], LENGTH), model.generate(valid["source"], LENGTH)))

    figures = {
        "hidden": hidden, "targets": targets, "epochs": iss.epochs, "sets": sets, "units": result.units,
        "encoder_sizes": small.encoder.hidden_sizes, "decoder_sizes": small.decoder.hidden_sizes,
        **{f"dense_{key}": value for key, value in dense_scores.items()},
        **{f"iss_{key}": value for key, value in iss_scores.items()},
        **{f"compact_{key}": value for key, value in small_scores.items()},
        "same_greedy_decoding": same_decoding, "parameters_dense": result.parameters_before,
        "parameters_compact": result.parameters_after, "max_difference": result.max_difference,
        "compact_class": type(small).__name__,
    }
    if args.out is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "seq2seq.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"Seq2Seq, LSTM {hidden} x 2 -> sets {result.units} after {prune} pruning and {recover} recovery epochs")
    print(f"encoder sizes {small.encoder.hidden_sizes}, decoder sizes {small.decoder.hidden_sizes}")
    print(f"symbol accuracy (teacher forcing): dense {dense_scores['accuracy']:.3f}, ISS {iss_scores['accuracy']:.3f}, "
          f"compact {small_scores['accuracy']:.3f}; whole sequences by greedy decoding: dense "
          f"{dense_scores['sequences']:.3f}, compact {small_scores['sequences']:.3f} (same as pruned: {same_decoding})")
    print(f"parameters: {result.parameters_before:,} -> {result.parameters_after:,}; compact model is a "
          f"{type(small).__name__}, max output difference {result.max_difference:.1e}")
    return figures


if __name__ == "__main__":
    main()
